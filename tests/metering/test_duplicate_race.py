"""Two identical requests racing: one row, both answered, the second as a duplicate."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from metering.models import UsageEvent
from metering.services import events_ingest
from tests.metering.conftest import NOW


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batch_size", [1, 200])  # the INSERT path and the COPY path
def test_two_threads_one_key_one_row(merchant, input_tokens, customer, batch_size):
    events = [
        {
            "type": "llm.completion",
            "source": "app",
            "subject": customer.pk,
            "data": {"input_tokens": 1},
            "idempotencyKey": f"race-{i}",
            "timestamp": "2026-01-10T00:00:00Z",
        }
        for i in range(batch_size)
    ]
    barrier = threading.Barrier(2)
    outcomes, failures = [], []

    def ingest():
        try:
            barrier.wait(timeout=10)
            outcomes.append(events_ingest(merchant=merchant, raw_events=events, now=NOW))
        except Exception as error:  # surfaced below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert UsageEvent.objects.count() == batch_size
    counts = sorted((o.counts["accepted"], o.counts["duplicate"]) for o in outcomes)
    assert sum(a for a, _ in counts) == batch_size
    assert sum(d for _, d in counts) == batch_size
    ids = [{r.idempotency_key: r.id for r in o.results} for o in outcomes]
    assert ids[0] == ids[1]

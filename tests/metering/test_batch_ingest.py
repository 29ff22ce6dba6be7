"""POST /v0/events/batch: per-item results, good items kept, constant query count, bulk insert."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from metering.models import UsageEvent
from metering.selectors import usage_aggregate
from tests.metering.conftest import FEB, JAN

pytestmark = pytest.mark.django_db


def _events(customer, count, *, prefix="k"):
    return [
        {
            "type": "llm.completion",
            "source": "app",
            "subject": customer.pk,
            "data": {"input_tokens": i, "model": "nle-1"},
            "timestamp": "2026-01-05T00:00:00Z",
            "idempotencyKey": f"{prefix}{i}",
        }
        for i in range(count)
    ]


def test_mixed_batch_keeps_the_good_items(api_client, input_tokens, customer):
    events = _events(customer, 3)
    events[1]["data"] = {"input_tokens": "lots"}
    events.append({"type": "nope", "source": "app", "subject": customer.pk, "data": {}})
    events.append(dict(events[0]))  # same key again within the batch
    events.append("not an object")

    response = api_client.post("/v0/events/batch", {"events": events}, format="json")

    assert response.status_code == 200
    body = response.json()
    ids = {e.idempotency_key: f"evt_{e.pk}" for e in UsageEvent.objects.all()}
    assert body["counts"] == {"accepted": 2, "duplicate": 1, "rejected": 3}
    assert body["results"] == [
        {"index": 0, "status": "accepted", "id": ids["k0"], "idempotencyKey": "k0"},
        {
            "index": 1,
            "status": "rejected",
            "errors": [
                {
                    "field": "data.input_tokens",
                    "message": 'data.input_tokens must be a number (or a numeric string such as "12.5").',
                }
            ],
        },
        {"index": 2, "status": "accepted", "id": ids["k2"], "idempotencyKey": "k2"},
        {
            "index": 3,
            "status": "rejected",
            "errors": [{"field": "type", "message": "No billable metric has the event type “nope”; create one first."}],
        },
        {"index": 4, "status": "duplicate", "id": ids["k0"], "idempotencyKey": "k0"},
        {"index": 5, "status": "rejected", "errors": [{"field": "body", "message": "An event must be a JSON object."}]},
    ]
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal("2")


def test_bare_list_is_accepted(api_client, input_tokens, customer):
    response = api_client.post("/v0/events/batch", _events(customer, 2), format="json")

    assert response.json()["counts"] == {"accepted": 2, "duplicate": 0, "rejected": 0}


def test_resent_batch_is_all_duplicates(api_client, input_tokens, customer):
    events = _events(customer, 120)
    first = api_client.post("/v0/events/batch", {"events": events}, format="json").json()

    again = api_client.post("/v0/events/batch", {"events": events}, format="json").json()

    assert again["counts"] == {"accepted": 0, "duplicate": 120, "rejected": 0}
    assert [r["id"] for r in again["results"]] == [r["id"] for r in first["results"]]
    assert UsageEvent.objects.count() == 120
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal(sum(range(120)))


def test_more_than_5000_events_is_a_400(api_client, input_tokens, customer):
    event = _events(customer, 1)[0]

    response = api_client.post("/v0/events/batch", {"events": [event] * 5001}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "events"
    assert UsageEvent.objects.count() == 0


def test_body_without_events_is_a_400(api_client, input_tokens):
    response = api_client.post("/v0/events/batch", {"event": []}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "events", "message": 'Send {"events": [...]} (or a JSON list of events).'}
    ]


@pytest.mark.parametrize("size", [1, 10, 51, 2000])
def test_query_count_is_constant(api_client, input_tokens, customer, size, django_assert_num_queries):
    events = _events(customer, size)

    # the key, the routing, then one insert joined to the customers (one statement on both databases), in a
    # savepoint once there is more than one event. Exact: a ceiling of 12 let a statement per 500 events pass.
    with django_assert_num_queries(3 if size == 1 else 5):
        response = api_client.post("/v0/events/batch", {"events": events}, format="json")

    assert response.json()["counts"]["accepted"] == size


def test_query_count_with_duplicates_and_linking_is_constant(
    api_client, input_tokens, customer, django_assert_num_queries
):
    api_client.post("/v0/events/batch", {"events": _events(customer, 300)}, format="json")
    events = _events(customer, 600)
    for event in events:
        del event["subject"]
        event["externalSubject"] = "acme-001"

    # the key and the routing are cached by the first request. Then invoicing's look-up of real-time
    # subscriptions (the endpoint ingests through invoicing.realtime.events_ingest_and_debit,
    # invoicing/REALTIME.md), two reads of the customers by external id, the insert (two chunks of 500 on
    # SQLite, one statement on PostgreSQL), the duplicates' ids, then the link (savepoint, update, release).
    # Exact: a ceiling of 15 let six statements more pass.
    with django_assert_num_queries(8 if connection.vendor == "postgresql" else 9):
        response = api_client.post("/v0/events/batch", {"events": events}, format="json")

    assert response.json()["counts"] == {"accepted": 300, "duplicate": 300, "rejected": 0}


def test_known_customers_are_not_looked_up_and_the_others_still_are(merchant, input_tokens, customer):
    # given a batch naming a customer the caller already read, another by external id, and a stranger
    from datetime import UTC, datetime

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from metering.services import events_ingest
    from tests.factories import CustomerFactory

    other = CustomerFactory(merchant=merchant, name="Other", external_id="other-7")
    events = _events(customer, 2)
    events.append({**_events(customer, 1, prefix="x")[0], "subject": None, "externalSubject": "other-7"})
    events.append({**_events(customer, 1, prefix="s")[0], "subject": "cus_nobody"})
    now = datetime(2026, 1, 10, tzinfo=UTC)
    known = {customer.pk: customer.external_id}

    def customer_look_ups(captured) -> list[str]:
        return [q["sql"] for q in captured if q["sql"].startswith("SELECT") and "catalog_customer" in q["sql"]]

    # when only the first customer is known: the other two are looked up
    with CaptureQueriesContext(connection) as captured:
        outcome = events_ingest(merchant=merchant, raw_events=events, now=now, known_customers=known)

    # then the known and the looked-up customers' events are stored, the stranger's refused
    assert [r.status for r in outcome.results] == ["accepted", "accepted", "accepted", "rejected"]
    assert sorted(e.customer_id for e in outcome.accepted) == sorted([customer.pk, customer.pk, other.pk])
    [look_up] = customer_look_ups(captured)

    # and when every customer named is known, there is no look-up at all
    with CaptureQueriesContext(connection) as captured:
        outcome = events_ingest(
            merchant=merchant, raw_events=_events(customer, 2, prefix="m"), now=now, known_customers=known
        )
    assert outcome.counts == {"accepted": 2, "duplicate": 0, "rejected": 0}
    assert customer_look_ups(captured) == []

"""The post-paid hot path of the event endpoints (``metering.services.events_ingest_guarded`` with invoicing's
``NO_REALTIME_SUBSCRIPTION`` guard): a batch naming its customers by subject is one set-based statement,
per-item results stay exact, and a batch that names a real-time customer is declined whole (nothing
stored) and taken by the debit path."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.realtime import events_ingest_and_debit, lookup
from metering.models import UsageEvent
from tests.factories import CustomerFactory

from .conftest import NOW, balance, event, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def post_paid(merchant, tokens):
    return CustomerFactory(merchant=merchant, name="Post-paid Co", currency="USD", time_zone="UTC")


def test_a_post_paid_batch_is_one_statement(post_paid, django_assert_num_queries):
    events = [event(post_paid, n, key=f"pp-{n}") for n in range(5)]
    events_ingest_and_debit(merchant=post_paid.merchant, raw_events=events[:1], now=NOW)  # warm the routing

    # savepoint (the test's transaction stands for BEGIN), the insert, release (COMMIT)
    with django_assert_num_queries(3):
        outcome = events_ingest_and_debit(merchant=post_paid.merchant, raw_events=events[1:], now=NOW)

    assert [r.status for r in outcome.results] == ["accepted"] * 4
    assert UsageEvent.objects.filter(customer=post_paid).count() == 5


def test_per_item_results_stay_exact(post_paid):
    stored = events_ingest_and_debit(merchant=post_paid.merchant, raw_events=[event(post_paid, 1, key="a")], now=NOW)

    outcome = events_ingest_and_debit(
        merchant=post_paid.merchant,
        raw_events=[
            event(post_paid, 2, key="b"),
            event(post_paid, 3, key="a"),  # a resend of a stored key
            {**event(post_paid, 4, key="c"), "subject": "cus_nobody"},
            {**event(post_paid, 5, key="d"), "data": "not an object"},
            event(post_paid, 6, key="e"),
        ],
        now=NOW,
    )

    statuses = [(r.index, r.status) for r in outcome.results]
    assert statuses == [(0, "accepted"), (1, "duplicate"), (2, "rejected"), (3, "rejected"), (4, "accepted")]
    assert outcome.results[1].id == stored.results[0].id
    assert outcome.results[2].errors == [
        {"field": "subject", "message": "No customer cus_nobody in your organization."}
    ]
    assert outcome.results[3].errors[0]["field"] == "data"
    assert sorted(UsageEvent.objects.values_list("idempotency_key", flat=True)) == ["a", "b", "e"]
    assert [a.idempotency_key for a in outcome.accepted] == ["b", "e"]


def test_a_batch_naming_a_real_time_customer_is_debited(post_paid, customer, subscription):
    fund(customer, "100")
    lookup.SEEN_REAL_TIME.discard(customer.pk)  # a process that has not seen the customer yet

    outcome = events_ingest_and_debit(
        merchant=customer.merchant,
        raw_events=[event(post_paid, 100, key="p-1"), event(customer, 200, key="r-1"), event(post_paid, 1, key="p-2")],
        now=NOW,
    )

    assert [r.status for r in outcome.results] == ["accepted"] * 3
    assert [debit.amount for debit in outcome.debits] == [Decimal(2)]  # 200 tokens at 0.01
    assert balance(customer) == Decimal(98)
    assert UsageEvent.objects.count() == 3  # the declined set insert left nothing behind

"""Spend caps for post-paid usage: a $100 cap at $0.01 a call is reached at 10,000 calls; from the evaluation
that sees it, the customer's events answer 402 SPEND_CAP_REACHED (single and per batch item, other customers'
events kept), or are accepted and flagged, per the cap; finance lifts it for the rest of the period; the next
period starts afresh. A customer without a reached cap costs ingestion no statement more."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Customer
from invoicing.models import SpendCap, SpendCapMode
from invoicing.realtime import SPEND_CAP_REACHED, events_ingest_and_debit
from invoicing.services import subscription_start
from invoicing.spend.selectors import spend_cap_flagged_events
from invoicing.spend.services import (
    SpendError,
    spend_cap_delete,
    spend_cap_lift,
    spend_cap_set,
    spend_evaluate_customer,
    spend_evaluate_due,
)
from metering.models import UsageEvent
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price

pytestmark = pytest.mark.django_db

_keys = itertools.count(1)


@pytest.fixture
def plan(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pay as you go", currency="USD")
    metered_price(plan, "0.01", name="Calls", unit="calls", event_type="api.calls")
    return plan


def subscribed(merchant, plan, name):
    """A post-paid customer subscribed since the start of the current (real) month."""
    customer = CustomerFactory(merchant=merchant, name=name)
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    subscription_start(customer=customer, plan=plan, started_at=start, now=start)
    return customer


@pytest.fixture
def acme(merchant, plan):
    return subscribed(merchant, plan, "Acme")


@pytest.fixture
def globex(merchant, plan):
    return subscribed(merchant, plan, "Globex")


def call(customer, calls: int, key: str | None = None) -> dict:
    return {
        "type": "api.calls",
        "source": "https://api.example/test",
        "subject": customer.pk,
        "timestamp": (timezone.now() - timedelta(seconds=1)).isoformat(),
        "idempotencyKey": key or f"cap-{next(_keys)}",
        "data": {"tokens": calls},
    }


def ingest(merchant, *events):
    return events_ingest_and_debit(merchant=merchant, raw_events=list(events), now=timezone.now())


def reach_cap(merchant, customer, *, on_reach=SpendCapMode.BLOCK) -> SpendCap:
    """A $100 cap, then 10,000 calls ($100.00) and the evaluation that sees them."""
    spend_cap_set(customer=customer, currency="USD", amount="100", on_reach=on_reach, now=timezone.now())
    ingest(merchant, call(customer, 6_000))
    spend_evaluate_due(now=timezone.now())
    assert SpendCap.objects.get(customer=customer).reached_at is None  # $60: below the cap
    ingest(merchant, call(customer, 4_000))
    spend_evaluate_due(now=timezone.now())
    return SpendCap.objects.get(customer=customer)


def test_at_the_cap_a_single_event_answers_402_spend_cap_reached(merchant, acme, api_client):
    cap = reach_cap(merchant, acme)
    assert (cap.accrued, cap.reached_at is not None) == (Decimal("100"), True)
    blocked_since = Customer.objects.get(pk=acme.pk).spend_blocked_since
    assert blocked_since == cap.reached_at

    response = api_client.post("/v0/events", call(acme, 1, key="over-the-cap"), format="json")

    assert response.status_code == 402
    body = response.json()
    assert (body["error"], body["code"]) == ("payment_required", SPEND_CAP_REACHED)
    assert body["details"] == {"customerId": acme.pk, "blockedSince": blocked_since.isoformat().replace("+00:00", "Z")}
    assert "spend cap" in body["message"]
    assert not UsageEvent.objects.filter(idempotency_key="over-the-cap").exists()


def test_in_a_batch_the_capped_customers_items_are_rejected_and_the_others_kept(merchant, acme, globex, api_client):
    reach_cap(merchant, acme)

    response = api_client.post("/v0/events/batch", {"events": [call(acme, 5), call(globex, 7)]}, format="json")

    assert response.status_code == 200
    items = response.json()["results"]
    assert [item["status"] for item in items] == ["rejected", "accepted"]
    assert items[0]["code"] == SPEND_CAP_REACHED
    assert UsageEvent.objects.filter(customer=globex).count() == 1


def test_below_the_cap_and_without_a_cap_events_are_accepted(merchant, acme, globex):
    spend_cap_set(customer=acme, currency="USD", amount="100", on_reach=SpendCapMode.BLOCK, now=timezone.now())
    ingest(merchant, call(acme, 9_999))
    spend_evaluate_due(now=timezone.now())

    outcome = ingest(merchant, call(acme, 1), call(globex, 1_000_000))

    assert outcome.counts["accepted"] == 2 and not outcome.refusals


def test_flag_mode_accepts_and_counts_the_events_over_the_cap(merchant, acme):
    cap = reach_cap(merchant, acme, on_reach=SpendCapMode.FLAG)
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None

    outcome = ingest(merchant, call(acme, 5), call(acme, 5))

    assert outcome.counts["accepted"] == 2
    assert spend_cap_flagged_events(cap=SpendCap.objects.get(pk=cap.pk)) == 2


def test_lifted_for_the_rest_of_the_period_then_enforced_again_next_period(merchant, acme):
    reach_cap(merchant, acme)

    cap = spend_cap_lift(customer=acme, now=timezone.now(), lifted_by="finance@neural.example")
    accepted = ingest(merchant, call(acme, 50_000))
    spend_evaluate_due(now=timezone.now())

    assert accepted.counts["accepted"] == 1
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None
    assert SpendCap.objects.get(pk=cap.pk).lifted_by == "finance@neural.example"

    # the next period starts afresh: nothing accrued, the lift forgotten, the cap armed again
    next_month = (timezone.now().replace(day=1) + timedelta(days=32)).replace(day=2)
    spend_evaluate_customer(customer_id=acme.pk, now=next_month)
    cap = SpendCap.objects.get(pk=cap.pk)
    assert (cap.accrued, cap.reached_at, cap.lifted_at) == (Decimal("0"), None, None)
    assert cap.period_start.month == next_month.month


def test_a_refusal_ends_with_its_period_even_without_new_events(merchant, acme):
    cap = reach_cap(merchant, acme)

    spend_evaluate_due(now=cap.period_end + timedelta(hours=1))

    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None


def test_raising_or_removing_the_cap_lets_usage_through(merchant, acme):
    reach_cap(merchant, acme)

    spend_cap_set(customer=acme, currency="USD", amount="150", on_reach=SpendCapMode.BLOCK, now=timezone.now())
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None
    spend_evaluate_due(now=timezone.now())
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None  # $100 < $150

    spend_cap_set(customer=acme, currency="USD", amount="100", on_reach=SpendCapMode.BLOCK, now=timezone.now())
    spend_evaluate_due(now=timezone.now())
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is not None
    assert spend_cap_delete(customer=acme)
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None


@pytest.mark.parametrize(
    ("amount", "on_reach", "field"),
    [("0", "block", "amount"), ("1000000000.01", "block", "amount"), ("abc", "block", "amount"), ("5", "x", "onReach")],
)
def test_cap_bounds_are_refused(acme, amount, on_reach, field):
    with pytest.raises(SpendError) as error:
        spend_cap_set(customer=acme, currency="USD", amount=amount, on_reach=on_reach, now=timezone.now())
    assert error.value.field == field


def test_a_customer_without_a_reached_cap_costs_ingestion_no_statement_more(
    merchant, acme, globex, django_assert_num_queries
):
    # given Acme with a cap it has not reached and Globex with none; the routes cache warmed by a first event
    spend_cap_set(customer=acme, currency="USD", amount="100", on_reach=SpendCapMode.BLOCK, now=timezone.now())
    ingest(merchant, call(globex, 1))

    # then one event is still the one guarded insert, and a batch of both customers its one statement too
    with django_assert_num_queries(1):
        ingest(merchant, call(acme, 1))
    with django_assert_num_queries(1):
        ingest(merchant, call(globex, 1))
    with django_assert_num_queries(3):  # savepoint, the joined insert, release (SQLite's batch path)
        ingest(merchant, call(acme, 1), call(globex, 1))

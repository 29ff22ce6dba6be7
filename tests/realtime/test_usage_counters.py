"""Running usage counters: "usage before" of SUM/COUNT metrics comes from a counter kept under the
wallet lock; it must always equal the SQL aggregate over the events (the invoice's source of truth)."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Aggregation, MetricFilter, MetricFilterOperator
from invoicing.models import RealtimeUsageCounter
from invoicing.realtime import events_ingest_and_debit
from metering.selectors import usage_aggregate
from metering.services import events_ingest
from tests.factories import BillableMetricFactory, MeteredPriceFactory

from .conftest import APRIL, EVENT_TYPE, MARCH, NOW, fund, send

pytestmark = pytest.mark.django_db


def _metric(plan, name, aggregation, value_property, filters=()):
    metric = BillableMetricFactory(
        product=plan.product,
        merchant=plan.merchant,
        name=name,
        event_type=EVENT_TYPE,
        aggregation=aggregation,
        value_property=value_property,
    )
    for path, operator, values in filters:
        MetricFilter.objects.create(metric=metric, property_path=path, operator=operator, values=values)
    MeteredPriceFactory(plan=plan, billable_metric=metric, unit_price=Decimal("0.01"))
    return metric


def _assert_counters_exact(customer, metrics):
    counters = {c.metric_id: c for c in RealtimeUsageCounter.objects.filter(customer=customer)}
    for metric in metrics:
        counter = counters[metric.pk]
        assert (counter.window_start, counter.window_end) == (MARCH, APRIL)
        expected = usage_aggregate(metric=metric, customer=customer, start=MARCH, end=APRIL)
        assert counter.usage == expected, metric.name


def test_counters_equal_the_sql_aggregate_after_random_batches(customer, subscription, real_time_plan, tokens):
    # given SUM and COUNT metrics, with and without filters, a MAX metric (aggregated, never counted),
    # a tight block-policy balance, and events stored before any counter existed
    ok_tokens = _metric(
        real_time_plan, "OK tokens", Aggregation.SUM, "$.tokens", [("$.status", MetricFilterOperator.EQUALS, ["ok"])]
    )
    calls = _metric(
        real_time_plan, "Calls", Aggregation.COUNT, "", [("$.region", MetricFilterOperator.NOT_IN, ["eu", "7"])]
    )
    peak = _metric(real_time_plan, "Peak", Aggregation.MAX, "$.tokens")
    counted = [tokens, ok_tokens, calls]
    fund(customer, "8", policy="block")
    events_ingest(
        merchant=customer.merchant,
        raw_events=[_random_event(random.Random(0), customer, f"early-{i}") for i in range(5)],
        now=NOW,
    )
    rng = random.Random(20261125)
    keys: list[str] = []
    refused = duplicates = 0

    # when many random batches arrive (duplicates, refusals, filter values of every JSON type)
    for batch in range(60):
        raw = []
        for i in range(rng.randint(1, 6)):
            reuse = keys and rng.random() < 0.2
            key = rng.choice(keys) if reuse else f"b{batch}-{i}"
            keys.append(key)
            raw.append(_random_event(rng, customer, key))
        outcome = events_ingest_and_debit(merchant=customer.merchant, raw_events=raw, now=NOW)
        refused += len(outcome.refusals)
        duplicates += outcome.counts["duplicate"]

        # then every counter equals the aggregate over the stored events, after every request
        _assert_counters_exact(customer, counted)

    assert refused > 0 and duplicates > 0  # the loop did exercise both
    assert not RealtimeUsageCounter.objects.filter(metric=peak).exists()


def _random_event(rng: random.Random, customer, key: str) -> dict:
    data: dict = {}
    tokens = rng.choice([1, 2, 5, 40, "3", "0.5", 2.25, None, "missing"])
    if tokens != "missing":
        data["tokens"] = tokens
    status = rng.choice(["ok", "ok", "error", True, 7, 1.5, None, "missing", {"nested": "ok"}])
    if status != "missing":
        data["status"] = status
    region = rng.choice(["eu", "us", 7, ["eu"], "missing"])
    if region != "missing":
        data["region"] = region
    at = NOW - timedelta(hours=rng.randint(0, 200), seconds=rng.randint(0, 59))
    return {
        "type": EVENT_TYPE,
        "source": "https://api.example/test",
        "subject": customer.pk,
        "timestamp": at.isoformat(),
        "idempotencyKey": key,
        "data": data,
    }


def test_a_customer_with_a_counter_is_priced_without_reading_events(customer, subscription):
    # given a counter (created by the first request)
    fund(customer, "100")
    send(customer, 700)
    assert RealtimeUsageCounter.objects.get(customer=customer).usage == 700

    # when more events arrive
    with CaptureQueriesContext(connection) as queries:
        outcome = send(customer, 200, 200)

    # then no query aggregates events (only the insert touches them) and the debit crosses the tier exactly
    event_reads = [q["sql"] for q in queries.captured_queries if "metering_usageevent" in q["sql"].lower()]
    assert len(event_reads) == 1 and event_reads[0].lstrip().upper().startswith("INSERT")
    [debit] = outcome.debits
    assert (debit.usage_before, debit.usage_after) == (700, 1100)
    assert debit.amount == Decimal("3.5")  # 300 × 0.01 + 100 × 0.005
    assert RealtimeUsageCounter.objects.get(customer=customer).usage == 1100


def test_an_edited_metric_definition_recomputes_its_counter(customer, subscription, tokens):
    # given a counter of all tokens
    fund(customer, "100")
    send(customer, 100)
    events_ingest_and_debit(
        merchant=customer.merchant,
        raw_events=[{**_plain(customer, 50, "tagged"), "data": {"tokens": 50, "status": "ok"}}],
        now=NOW,
    )
    assert RealtimeUsageCounter.objects.get(customer=customer).usage == 150

    # when finance adds a filter (only status = ok) and another event arrives
    MetricFilter.objects.create(metric=tokens, property_path="$.status", operator="eq", values=["ok"])
    outcome = events_ingest_and_debit(
        merchant=customer.merchant,
        raw_events=[{**_plain(customer, 10, "after-edit"), "data": {"tokens": 10, "status": "ok"}}],
        now=NOW,
    )

    # then the counter was rebuilt from the events under the new definition
    [debit] = outcome.debits
    assert (debit.usage_before, debit.usage_after) == (50, 60)
    assert RealtimeUsageCounter.objects.get(customer=customer).usage == 60


def _plain(customer, tokens_used, key):
    return {
        "type": EVENT_TYPE,
        "source": "https://api.example/test",
        "subject": customer.pk,
        "timestamp": NOW.isoformat(),
        "idempotencyKey": key,
        "data": {"tokens": tokens_used},
    }


def test_usage_cost_read_is_a_fixed_number_of_queries(customer, subscription, django_assert_num_queries):
    # given a customer with many debited events
    fund(customer, "100")
    for _ in range(5):
        send(customer, *[10] * 20)

    # when its current period's cost is read: the subscriptions, then their running debit totals
    from invoicing.selectors import customer_usage_cost

    with django_assert_num_queries(2):
        [cost] = customer_usage_cost(customer=customer, now=NOW)

    # then it is the price of the 1,000 tokens debited so far
    assert cost.debited == Decimal(10)


def test_usage_cost_of_several_subscriptions_is_still_two_queries(
    customer, subscription, real_time_plan, django_assert_num_queries
):
    # given a second real-time subscription of the same customer, both debited
    from invoicing.selectors import customer_usage_cost
    from tests.factories import SubscriptionFactory

    from .conftest import MARCH

    SubscriptionFactory(
        plan=real_time_plan, merchant=customer.merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH
    )
    fund(customer, "100")
    send(customer, 10, 20)

    # when the cost is read
    with django_assert_num_queries(2):
        costs = customer_usage_cost(customer=customer, now=NOW)

    # then both subscriptions are answered, with what the ledger says was debited under each
    from wallets.models import EntryKind, LedgerEntry

    assert len(costs) == 2
    for cost in costs:
        entries = LedgerEntry.objects.filter(kind=EntryKind.USAGE_DEBIT, subscription_id=cost.subscription_id)
        assert cost.debited == -sum((entry.amount for entry in entries), Decimal(0))
    # each subscription bills the 30 tokens (at 0.01), so each paid for them
    assert [cost.debited for cost in costs] == [Decimal("0.3"), Decimal("0.3")]

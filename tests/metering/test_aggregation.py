"""Aggregation selectors: every aggregation type in SQL, against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Aggregation, MetricFilter, MetricFilterOperator
from metering.selectors import (
    event_values,
    usage_aggregate,
    usage_aggregate_by_customer,
    usage_extent,
    usage_grouped,
)
from tests.factories import BillableMetricFactory, CustomerFactory
from tests.metering.conftest import FEB, JAN
from tests.metering.factories import UsageEventFactory

pytestmark = pytest.mark.django_db


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


@pytest.fixture
def usage(customer):
    """Five January events of Acme, one of February, and one of another customer."""
    rows = [
        (at(2), {"tokens": 10, "model": "a", "status": "ok"}),
        (at(3), {"tokens": "2.5", "model": "b", "status": "ok"}),
        (at(3), {"tokens": 30, "model": "a", "status": "error"}),
        (at(10), {"tokens": 7, "model": "b", "status": "ok"}),
        (at(10), {"model": "a", "status": "ok"}),  # no value: ignored by value aggregations
    ]
    for timestamp, data in rows:
        UsageEventFactory(customer=customer, event_type="tok", timestamp=timestamp, data=data)
    UsageEventFactory(customer=customer, event_type="tok", timestamp=FEB, data={"tokens": 1000})
    UsageEventFactory(
        customer=CustomerFactory(merchant=customer.merchant), event_type="tok", timestamp=at(5), data={"tokens": 500}
    )
    UsageEventFactory(customer=customer, event_type="other", timestamp=at(5), data={"tokens": 900})


def metric(merchant, aggregation, value_property="$.tokens", **extra):
    return BillableMetricFactory(
        merchant=merchant,
        product__merchant=merchant,
        aggregation=aggregation,
        event_type="tok",
        value_property=value_property,
        group_by={"model": "$.model"},
        **extra,
    )


@pytest.mark.parametrize(
    ("aggregation", "value_property", "expected"),
    [
        (Aggregation.SUM, "$.tokens", Decimal("49.5")),
        (Aggregation.COUNT, "", Decimal("5")),
        (Aggregation.AVG, "$.tokens", Decimal("12.375")),
        (Aggregation.MIN, "$.tokens", Decimal("2.5")),
        (Aggregation.MAX, "$.tokens", Decimal("30")),
        (Aggregation.UNIQUE_COUNT, "$.model", Decimal("2")),
        (Aggregation.UNIQUE_COUNT, "", Decimal("5")),
        (Aggregation.LATEST, "$.tokens", Decimal("7")),
    ],
)
def test_each_aggregation_for_one_customer(merchant, customer, usage, aggregation, value_property, expected):
    bm = metric(merchant, aggregation, value_property)

    assert usage_aggregate(metric=bm, customer=customer, start=JAN, end=FEB) == expected


def test_avg_is_kept_to_twelve_places(merchant, customer):
    for value in (1, 1, 2):
        UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"tokens": value})

    assert usage_aggregate(metric=metric(merchant, Aggregation.AVG), customer=customer, start=JAN, end=FEB) == Decimal(
        "1.333333333333"
    )


def test_no_events_is_zero_for_every_aggregation(merchant, customer):
    for aggregation in Aggregation.values:
        bm = metric(merchant, aggregation, "" if aggregation == Aggregation.COUNT else "$.tokens")
        assert usage_aggregate(metric=bm, customer=customer, start=JAN, end=FEB) == Decimal(0)


def test_latest_breaks_timestamp_ties_by_id(merchant, customer):
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(4), data={"tokens": 1})
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(4), data={"tokens": 2})

    assert usage_aggregate(
        metric=metric(merchant, Aggregation.LATEST), customer=customer, start=JAN, end=FEB
    ) == Decimal("2")


def test_window_is_half_open(merchant, customer, usage):
    bm = metric(merchant, Aggregation.SUM)

    assert usage_aggregate(metric=bm, customer=customer, start=at(3), end=at(10)) == Decimal("32.5")


def test_event_from_ignores_earlier_events(merchant, customer, usage):
    bm = metric(merchant, Aggregation.SUM, event_from=at(3))

    assert usage_aggregate(metric=bm, customer=customer, start=JAN, end=FEB) == Decimal("39.5")


@pytest.mark.parametrize(
    ("operator", "values", "expected"),
    [
        (MetricFilterOperator.EQUALS, ["ok"], Decimal("19.5")),
        (MetricFilterOperator.NOT_EQUALS, ["ok"], Decimal("30")),
        (MetricFilterOperator.IN, ["ok", "error"], Decimal("49.5")),
        (MetricFilterOperator.NOT_IN, ["error", "timeout"], Decimal("19.5")),
    ],
)
def test_property_filters(merchant, customer, usage, operator, values, expected):
    bm = metric(merchant, Aggregation.SUM)
    MetricFilter.objects.create(metric=bm, property_path="$.status", operator=operator, values=values)

    assert usage_aggregate(metric=bm, customer=customer, start=JAN, end=FEB) == expected


def test_missing_property_counts_as_not_equal(merchant, customer):
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"tokens": 4})
    bm = metric(merchant, Aggregation.SUM)
    MetricFilter.objects.create(metric=bm, property_path="$.status", operator="neq", values=["error"])

    assert usage_aggregate(metric=bm, customer=customer, start=JAN, end=FEB) == Decimal("4")


def test_nested_value_property(merchant, customer):
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"usage": {"input": 40}})
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"usage": {"input": "0.000001"}})

    bm = metric(merchant, Aggregation.SUM, "$.usage.input")

    assert usage_aggregate(metric=bm, customer=customer, start=JAN, end=FEB) == Decimal("40.000001")


def test_text_at_the_value_path_is_ignored_not_an_error(merchant, customer):
    # stored before this metric existed, e.g. under another metric that reads a different property
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"tokens": "many"})
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"tokens": True})
    UsageEventFactory(customer=customer, event_type="tok", timestamp=at(2), data={"tokens": 3})

    assert usage_aggregate(metric=metric(merchant, Aggregation.SUM), customer=customer, start=JAN, end=FEB) == 3


def test_by_customer_in_one_query(merchant, customer, usage, django_assert_num_queries):
    bm = metric(merchant, Aggregation.SUM)
    other = CustomerFactory(merchant=merchant)
    idle = CustomerFactory(merchant=merchant)
    UsageEventFactory(customer=other, event_type="tok", timestamp=at(6), data={"tokens": 1})
    bm = type(bm).objects.prefetch_related("filters").get(pk=bm.pk)

    with django_assert_num_queries(1):
        everyone = usage_aggregate_by_customer(metric=bm, start=JAN, end=FEB)
    with django_assert_num_queries(1):
        chosen = usage_aggregate_by_customer(metric=bm, start=JAN, end=FEB, customers=[customer, idle])

    assert everyone[customer.pk] == Decimal("49.5")
    assert everyone[other.pk] == Decimal("1")
    assert len(everyone) == 3  # plus the fixture's other customer with 500
    assert chosen == {customer.pk: Decimal("49.5"), idle.pk: Decimal("0")}


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [(Aggregation.SUM, Decimal("49.5")), (Aggregation.MAX, Decimal("30")), (Aggregation.LATEST, Decimal("7"))],
)
def test_by_customer_matches_per_customer(merchant, customer, usage, aggregation, expected):
    bm = metric(merchant, aggregation)

    assert usage_aggregate_by_customer(metric=bm, start=JAN, end=FEB)[customer.pk] == expected


def test_grouped_by_dimension_and_day(merchant, customer, usage):
    bm = metric(merchant, Aggregation.SUM)

    rows = usage_grouped(metric=bm, start=JAN, end=FEB, customer=customer, group_by=["model"], window_size="DAY")

    assert [(r.window_start.day, r.group, r.value, r.event_count) for r in rows] == [
        (2, {"model": "a"}, Decimal("10"), 1),
        (3, {"model": "a"}, Decimal("30"), 1),
        (3, {"model": "b"}, Decimal("2.5"), 1),
        (10, {"model": "b"}, Decimal("7"), 1),
        (10, {"model": "a"}, Decimal("0"), 1),
    ]
    assert rows[0].window_end == at(3)


def test_grouped_with_filter_and_by_subject(merchant, customer, usage):
    bm = metric(merchant, Aggregation.SUM)

    rows = usage_grouped(metric=bm, start=JAN, end=FEB, group_by=["subject"], filter_group_by={"model": "a"})

    assert [(r.group, r.value) for r in rows] == [({"subject": customer.pk}, Decimal("40"))]


def test_grouped_monthly_latest(merchant, customer, usage):
    bm = metric(merchant, Aggregation.LATEST)

    rows = usage_grouped(
        metric=bm, start=JAN, end=datetime(2026, 3, 1, tzinfo=UTC), customer=customer, group_by=[], window_size="MONTH"
    )

    assert [(r.window_start, r.window_end, r.value, r.event_count) for r in rows] == [
        (JAN, FEB, Decimal("7"), 4),
        (FEB, datetime(2026, 3, 1, tzinfo=UTC), Decimal("1000"), 1),
    ]


def test_event_values_per_event_in_time_order(merchant, customer, usage, django_assert_num_queries):
    bm = metric(merchant, Aggregation.SUM)
    bm = type(bm).objects.prefetch_related("filters").get(pk=bm.pk)

    with django_assert_num_queries(1):
        rows = event_values(metric=bm, customer=customer, start=JAN, end=FEB, extra_paths=["$.model", "$.missing"])

    assert rows == [
        (at(2), Decimal("10"), ["a", None]),
        (at(3), Decimal("2.5"), ["b", None]),
        (at(3), Decimal("30"), ["a", None]),
        (at(10), Decimal("7"), ["b", None]),
    ]


FEB_10 = datetime(2026, 2, 10, tzinfo=UTC)


def test_usage_extent_bounds_the_events_a_read_would_count_at_any_time(merchant, customer, usage):
    # given: Acme's "tok" events on 2, 3 (a and b), 10 January and 1 February, another customer's on the
    # 5th, an "other" event on the 5th, and a "tok" event on 10 February whose subject is no customer
    UsageEventFactory(
        customer=None, merchant=merchant, external_subject="nobody", event_type="tok", timestamp=FEB_10, data={}
    )
    bm = metric(merchant, Aggregation.SUM)
    errors = metric(merchant, Aggregation.SUM)
    MetricFilter.objects.create(metric=errors, property_path="$.status", operator="eq", values=["error"])
    other = BillableMetricFactory(merchant=merchant, product__merchant=merchant, event_type="other")

    # then: first and last instants, both included, under the same scope as usage_grouped
    assert usage_extent(metrics=[bm]) == (at(2), FEB_10)
    assert usage_extent(metrics=[bm], attributed_only=True) == (at(2), FEB)  # 10 February names no customer
    assert usage_extent(metrics=[bm], customer=CustomerFactory(merchant=merchant)) is None
    assert usage_extent(metrics=[bm], filter_group_by={"model": "b"}) == (at(3), at(10))
    assert usage_extent(metrics=[metric(merchant, Aggregation.SUM, event_from=at(11))]) == (FEB, FEB_10)
    assert usage_extent(metrics=[errors]) == (at(3), at(3))  # the metric's own filters
    assert usage_extent(metrics=[errors, other]) == (at(3), at(5))  # any of the metrics
    assert usage_extent(metrics=[bm], filter_group_by={"model": "z"}) is None
    assert usage_extent(metrics=[]) is None

"""``usage_aggregate_windows``: many (possibly overlapping) windows in one query, each equal to
``usage_aggregate`` over the same window, for every aggregation type, with filters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Aggregation, MetricFilter, MetricFilterOperator
from metering import selectors
from metering.selectors import usage_aggregate, usage_aggregate_windows
from tests.metering.factories import UsageEventFactory
from tests.metering.test_aggregation import at, metric
from tests.metering.test_aggregation import usage as usage  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

WINDOWS = [
    (at(1), at(3)),  # the 2nd only
    (at(1), at(4)),  # period-to-date windows sharing a start
    (at(1), at(31)),
    (at(3), at(3, 1)),  # one hour, two events
    (at(11), at(20)),  # no event
    (at(5), at(5)),  # empty window
    (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)),  # includes February's event
]


@pytest.mark.parametrize(
    ("aggregation", "value_property"),
    [
        (Aggregation.SUM, "$.tokens"),
        (Aggregation.COUNT, ""),
        (Aggregation.AVG, "$.tokens"),
        (Aggregation.MIN, "$.tokens"),
        (Aggregation.MAX, "$.tokens"),
        (Aggregation.UNIQUE_COUNT, "$.model"),
        (Aggregation.UNIQUE_COUNT, ""),
        (Aggregation.LATEST, "$.tokens"),
    ],
)
def test_each_window_equals_the_single_window_aggregate(merchant, customer, usage, aggregation, value_property):  # noqa: F811
    bm = metric(merchant, aggregation, value_property)

    values = usage_aggregate_windows(metric=bm, customer=customer, windows=WINDOWS)

    assert values == [usage_aggregate(metric=bm, customer=customer, start=s, end=e) for s, e in WINDOWS]


def test_hand_computed_sums_with_a_filter_in_one_query(merchant, customer, usage, django_assert_num_queries):  # noqa: F811
    bm = metric(merchant, Aggregation.SUM)
    MetricFilter.objects.create(
        metric=bm, property_path="$.status", operator=MetricFilterOperator.EQUALS, values=["ok"]
    )
    bm.refresh_from_db()

    with django_assert_num_queries(2):  # the metric's filters, then the one aggregate
        values = usage_aggregate_windows(metric=bm, customer=customer, windows=WINDOWS)

    # ok events: Jan 2 (10), Jan 3 ("2.5"), Jan 10 (7), Jan 10 (no value); Feb 1 (1000, no status: filtered out)
    assert values == [Decimal(10), Decimal("12.5"), Decimal("19.5"), Decimal("2.5"), 0, 0, Decimal("19.5")]


def test_windows_beyond_one_query_are_chunked(merchant, customer, monkeypatch):
    monkeypatch.setattr(selectors, "WINDOWS_PER_QUERY", 2)
    for day in (2, 3, 4, 5, 6):
        UsageEventFactory(customer=customer, event_type="tok", timestamp=at(day), data={"tokens": day})
    bm = metric(merchant, Aggregation.SUM)

    values = usage_aggregate_windows(metric=bm, customer=customer, windows=[(at(1), at(d)) for d in range(2, 8)])

    assert values == [0, 2, 5, 9, 14, 20]

"""Reads of costs: the definitions, and their quantities and amounts over a period.

A cost's quantity is aggregated by ``metering.selectors`` exactly as a billable metric with the same
event type, aggregation, value property and dimensions would be (one SQL query per read), and its amount
is quantity × ``unit_cost``, kept at ``COST_PLACES`` decimal places (rates carry 12). Periods are UTC
half-open ranges [start, end), at most ``MAX_RANGE_DAYS`` long, cut into at most ``MAX_WINDOWS`` windows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.http import Http404

from catalog.models import Customer, Merchant
from metering import selectors as metering

from .models import Cost

ZERO = Decimal("0")
COST_PLACES = Decimal("1e-12")
MAX_RANGE_DAYS = 366
MAX_WINDOWS = 1500
WINDOW_LENGTHS = {
    "MINUTE": timedelta(minutes=1),
    "HOUR": timedelta(hours=1),
    "DAY": timedelta(days=1),
    "MONTH": timedelta(days=28),  # the shortest month: bounds the window count from above
}
SUBJECT_DIMENSION = metering.SUBJECT_DIMENSION
UnknownDimension = metering.UnknownDimension


class PeriodError(ValueError):
    """A period that is empty, reversed, too long, or cut into too many windows; ``field`` names the input."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


def check_period(*, start: datetime, end: datetime, window: str | None = None) -> None:
    """Refuse a period a read must not take on (the API answers 400 naming ``field``)."""
    if end <= start:
        raise PeriodError("to must be after from.", field="to")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise PeriodError(f"The period may span at most {MAX_RANGE_DAYS} days.", field="to")
    if window is not None and (end - start) / WINDOW_LENGTHS[window] > MAX_WINDOWS:
        raise PeriodError(
            f"At most {MAX_WINDOWS} {window.lower()} windows per request; widen the window.", field="window"
        )


class _NoFilters:
    """A cost has no metric filters: its events are chosen by type alone."""

    def all(self) -> tuple:
        return ()


@dataclass(frozen=True)
class CostMeter:
    """A cost as metering's aggregation reads a billable metric (the attributes ``metering.selectors`` uses)."""

    pk: str
    merchant_id: str
    event_type: str
    aggregation: str
    value_property: str
    group_by: dict
    event_from: datetime | None = None
    filters: _NoFilters = field(default_factory=_NoFilters)

    @classmethod
    def of(cls, cost: Cost) -> CostMeter:
        return cls(
            pk=cost.pk,
            merchant_id=cost.merchant_id,
            event_type=cost.event_type,
            aggregation=cost.aggregation,
            value_property=cost.value_property,
            group_by=dict(cost.group_by or {}),
        )


def cost_amount(*, cost: Cost, quantity: Decimal) -> Decimal:
    """quantity × unit cost, at ``COST_PLACES`` (no rounding to the currency here: reports round once)."""
    return (quantity * cost.unit_cost).quantize(COST_PLACES)


def cost_list(*, merchant: Merchant, product_id: str | None = None) -> QuerySet[Cost]:
    costs = Cost.objects.live().filter(merchant=merchant).order_by("created_at", "id")
    if product_id is not None:
        costs = costs.filter(product_id=product_id)
    return costs


def costs_live(*, merchant_ids: Collection[str] | None = None, currency: str | None = None) -> QuerySet[Cost]:
    costs = Cost.objects.live().order_by("created_at", "id")
    if merchant_ids is not None:
        costs = costs.filter(merchant_id__in=merchant_ids)
    if currency is not None:
        costs = costs.filter(currency=currency)
    return costs


def cost_get(*, merchant: Merchant, cost_id: str) -> Cost:
    cost = cost_list(merchant=merchant).filter(pk=cost_id).first()
    if cost is None:
        raise Http404("No such cost.")
    return cost


@dataclass(frozen=True)
class CostUsageRow:
    quantity: Decimal
    cost: Decimal
    dimensions: dict[str, str] = field(default_factory=dict)
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass(frozen=True)
class CostUsage:
    total_quantity: Decimal
    total_cost: Decimal
    groups: list[CostUsageRow] | None
    time_series: list[CostUsageRow] | None


def cost_usage(
    *,
    cost: Cost,
    start: datetime,
    end: datetime,
    customer: Customer | None = None,
    group_by: str | None = None,
    window: str | None = None,
    filter_group_by: dict | None = None,
) -> CostUsage:
    """A cost's quantity and amount over [start, end): the total (one query), per value of ``group_by``
    (a dimension of the cost or ``subject``, one query) and per ``window`` (MINUTE/HOUR/DAY, one query).
    Raises PeriodError or UnknownDimension."""
    check_period(start=start, end=end, window=window)
    meter = CostMeter.of(cost)
    common = {"metric": meter, "start": start, "end": end, "customer": customer, "filter_group_by": filter_group_by}
    total_rows = metering.usage_grouped(group_by=[], **common)
    total = total_rows[0].value if total_rows else ZERO
    groups = None
    if group_by:
        groups = [
            CostUsageRow(quantity=row.value, cost=cost_amount(cost=cost, quantity=row.value), dimensions=row.group)
            for row in metering.usage_grouped(group_by=[group_by], **common)
        ]
    series = None
    if window:
        series = [
            CostUsageRow(
                quantity=row.value,
                cost=cost_amount(cost=cost, quantity=row.value),
                window_start=row.window_start,
                window_end=row.window_end,
            )
            for row in metering.usage_grouped(group_by=[], window_size=window, **common)
        ]
    return CostUsage(
        total_quantity=total, total_cost=cost_amount(cost=cost, quantity=total), groups=groups, time_series=series
    )


def cost_extent(
    *,
    costs: Collection[Cost],
    customer: Customer | None = None,
    filter_group_by: dict | None = None,
    attributed_only: bool = False,
) -> tuple[datetime, datetime] | None:
    """Where ``costs``' events lie in time: the first and last event instants (both included) at any time
    under the same scope as a read (``customer``, ``filter_group_by``; ``attributed_only``: the events a
    customer can be found for), or None when there is none: the client's ``costRange``. One query (none
    without costs)."""
    return metering.usage_extent(
        metrics=[CostMeter.of(cost) for cost in costs],
        customer=customer,
        filter_group_by=filter_group_by,
        attributed_only=attributed_only,
    )


def cost_by_customer(*, cost: Cost, start: datetime, end: datetime) -> dict[str, Decimal]:
    """Customer id → the cost's amount over [start, end), in one query. Events no customer can be found
    for (an unknown external subject) are not attributed and not counted."""
    quantities = metering.usage_aggregate_by_customer(metric=CostMeter.of(cost), start=start, end=end)
    return {customer_id: cost_amount(cost=cost, quantity=q) for customer_id, q in quantities.items()}

"""The one place invoicing reads usage (metering's selectors), turned into the engine's Usage input.

Quantity models (standard, graduated, volume, package) take one aggregated quantity per period — for a
billing run one grouped query per metric and window for many customers. Percentage and dynamic
prices need the individual event values (one query per customer and price).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation

from catalog.models import BillableMetric, Customer, Price, PriceModel
from catalog.pricing import Usage

QUANTITY_MODELS = frozenset({PriceModel.STANDARD, PriceModel.GRADUATED, PriceModel.VOLUME, PriceModel.PACKAGE})


def needs_event_values(price: Price) -> bool:
    return price.model not in QUANTITY_MODELS


def is_dimensional(price: Price) -> bool:
    """Whether ``price`` has rates per event property (its usage is read grouped by their values)."""
    return price.billable_metric_id is not None and price.dimensional_rates is not None


def quantities_by_customer_and_values(
    *, metric: BillableMetric, start: datetime, end: datetime, customers: Iterable[Customer], paths: tuple[str, ...]
) -> dict[str, dict[tuple[str | None, ...], Decimal]]:
    """Each customer's usage of ``metric`` in [start, end) per value tuple at ``paths``, in one query."""
    from metering.selectors import usage_aggregate_by_customer_and_values

    return usage_aggregate_by_customer_and_values(
        metric=metric, start=start, end=end, customers=list(customers), paths=paths
    )


def quantity(*, metric: BillableMetric, customer: Customer, start: datetime, end: datetime) -> Decimal:
    from metering.selectors import usage_aggregate

    return usage_aggregate(metric=metric, customer=customer, start=start, end=end)


def quantities_by_customer(
    *, metric: BillableMetric, start: datetime, end: datetime, customers: Iterable[Customer]
) -> dict[str, Decimal]:
    """Each customer's aggregated usage of ``metric`` in [start, end), in one query."""
    from metering.selectors import usage_aggregate_by_customer

    return usage_aggregate_by_customer(metric=metric, start=start, end=end, customers=list(customers))


def _decimal(value) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"Usage value {value!r} is not a number") from None


def usage_input(
    price: Price, *, customer: Customer, start: datetime, end: datetime, aggregated: Decimal | None = None
) -> Usage | Decimal:
    """What ``catalog.pricing.rate`` needs for ``price`` over [start, end).

    ``aggregated`` is the period quantity when the caller already fetched it in bulk.
    """
    metric = price.billable_metric
    if not needs_event_values(price):
        if aggregated is not None:
            return aggregated
        return quantity(metric=metric, customer=customer, start=start, end=end)
    from metering.selectors import event_values

    rows = event_values(metric=metric, customer=customer, start=start, end=end, extra_paths=event_paths(price))
    return event_values_usage(price, rows)


def event_paths(price: Price) -> tuple[str, ...]:
    """The properties read from each event besides the metric's value: the unit price an event carries."""
    if price.model == PriceModel.DYNAMIC and price.dynamic_mode == "event_price":
        return (price.event_price_property,)
    return ()


def event_values_usage(price: Price, rows: Iterable[tuple]) -> Usage:
    """The engine's Usage of a percentage or dynamic price from its events' rows (timestamp, value,
    [values at ``event_paths``]) in time order — for the invoice and for real-time debits alike."""
    if price.model == PriceModel.PERCENTAGE:
        return Usage(amounts=[_decimal(value) for _, value, _ in rows])
    if price.dynamic_mode == "event_price":
        return Usage(segments=[(_decimal(value), _decimal(extra[0])) for _, value, extra in rows])
    return Usage(events=[(moment, _decimal(value)) for moment, value, _ in rows])

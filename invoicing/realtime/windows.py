"""What of a period a real-time subscription debits: the current plan's part of it, the usage window
inside that part, whether the period is already invoiced (late), and which prices are debited."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from catalog.models import Price, Subscription
from catalog.periods import Period
from wallets.costing import incremental_cost, incremental_dimensional_cost

from .. import usage as usage_source
from ..calculation import service_window
from ..models import OPEN_STATUSES, Invoice, InvoiceKind, InvoiceStatus
from ..pricing_adapter import dimension_paths, price_dimensional_spec, price_spec_from_price
from .event_values import event_rows_total, event_values_cost, is_event_valued

UsageWindow = tuple[datetime, datetime]  # [start, end) whose usage is debited


class PlanPart(NamedTuple):
    """One billing period a request's events fall in, as a real-time subscription debits it."""

    segment: Period  # the current plan's part of the period (``plan_segment``): the debits' period
    window: UsageWindow  # the part's usage window (``usage_window``)
    late: bool  # the period's recurring invoice is issued: its usage is stored, not debited


def usage_window(subscription: Subscription, period: Period) -> UsageWindow:
    """The part of ``period`` whose usage the recurring invoice bills (service window, after any trial)."""
    start, end = service_window(subscription, period)
    if subscription.trial_ends_at is not None and subscription.trial_ends_at > start:
        start = min(subscription.trial_ends_at, end)
    return start, end


def plan_segment(subscription: Subscription, period: Period) -> Period:
    """The current plan's part of ``period``: from the plan change when it took effect inside the period
    (an upgrade), else the whole period. Its debits carry this start as ``period_start`` — what the
    invoice of this plan settles — and its usage (tiers, allowances) is counted from there, like the
    invoice counts it."""
    changed = subscription.plan_changed_at
    if changed is not None and period.start < changed < period.end:
        return Period(index=period.index, start=changed, end=period.end)
    return period


def period_invoiced(subscription: Subscription, period_start: datetime) -> bool:
    """The period's recurring invoice (``period_start``: the service window's start) was issued: its
    usage lines can no longer change."""
    return Invoice.objects.filter(
        subscription=subscription,
        kind=InvoiceKind.RECURRING,
        period_start=period_start,
        status__in=(*OPEN_STATUSES, InvoiceStatus.PAID),
    ).exists()


def debited_prices(prices: list[Price]) -> list[Price]:
    """The prices debited in real time: every metered price (quantity, dimensional, percentage, dynamic)."""
    return [price for price in prices if price.billable_metric_id]


# A usage key: (metric id, window start, window end), plus the dimension paths for a dimensional price
# (whose usage is {values: quantity} rather than one quantity), or None and the event paths for a
# percentage or dynamic price (whose usage is its events' rows, ``event_values.EventRows``).
UsageKey = tuple


def usage_key(price: Price, window: UsageWindow) -> UsageKey:
    """What ``price``'s usage over ``window`` is read as (shared by the prices of one metric and window)."""
    if usage_source.is_dimensional(price):
        return (price.billable_metric_id, *window, dimension_paths(price))
    if is_event_valued(price):
        return (price.billable_metric_id, *window, None, usage_source.event_paths(price))
    return (price.billable_metric_id, *window)


def is_dimensional_key(key: UsageKey) -> bool:
    return len(key) == 4


def is_event_values_key(key: UsageKey) -> bool:
    return len(key) == 5


def is_quantity_key(key: UsageKey) -> bool:
    """Usage read as one quantity (which a running counter may keep)."""
    return len(key) == 3


def usage_total(usage: Decimal | dict | tuple) -> Decimal:
    """One quantity for a debit's record: a dimensional usage's values, or the events' values, added up."""
    if isinstance(usage, dict):
        return sum(usage.values(), Decimal(0))
    if isinstance(usage, tuple):
        return event_rows_total(usage)
    return usage


def debit_amount(
    price: Price, currency: str, *, before: Decimal | dict | tuple, after: Decimal | dict | tuple
) -> Decimal:
    """rate(after) − rate(before) of ``price``, per combination for a dimensional price, over the events'
    values for a percentage or dynamic price (like the invoice)."""
    if usage_source.is_dimensional(price):
        spec = price_dimensional_spec(price, currency=currency)
        return incremental_dimensional_cost(spec=spec, usage_before=before, usage_after=after)
    if is_event_valued(price):
        return event_values_cost(price, currency, before=before, after=after)
    return incremental_cost(
        spec=price_spec_from_price(price, currency=currency), usage_before=before, usage_after=after
    )

"""Subscription-only intervals (``SubscriptionPriceInterval``): the add, edit and remove ops of
``subscription_intervals_edit`` whose ``priceKey`` is on no line of the subscription's plan version (an add,
which then names the catalog price in ``priceId``) or whose id is such an interval (an edit or a remove).

What they may do (invoicing/README.md, "Subscription-only intervals"):

- **add** a catalog price of the merchant (a recurring fee — a platform add-on — or a per-unit/per-package
  metered price, not one-off, not per event property) under a new ``priceKey``, from ``startDate`` (at or after
  the open start, the first moment not yet invoiced) to ``endDate`` (null: open-ended), at ``unitPrice`` (null:
  the catalog rate of today, saved). It bills per period of the subscription (``billingCadence`` is the
  plan's) and in the price's own mode; a fee bills ``baseQuantity`` units each period, a metered price its
  usage (a base of 1). A real-time subscription takes fees only: metered usage there is debited as it
  arrives, against the plan's prices (409 ``REAL_TIME_METERED_INTERVAL``).
- **edit** its ``unitPrice`` while no invoice has billed it (409 ``INTERVAL_BILLED`` after: close it with
  ``endDate`` and add another key), and its ``endDate`` (close, or re-open with null) to a moment no invoice
  has billed past yet (an in-advance fee: after the period already billed ahead).
- **remove** it while no invoice has billed it (the row is deleted); after, close it with ``endDate``.

"Billed" reads the invoices, not a flag: invoices exist up to the open start, and the recurring invoice
closing a period bills these intervals for that whole period (a plan-change invoice does not), so an interval
is billed once it starts before the period holding the open start (``billed_from``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from catalog.models import BillingCadence, Price, PriceModel
from catalog.pricing import PricingError
from core.formatting import decimal_string, iso_utc

from ..calculation import is_in_advance_fee, is_one_off, subscription_end, subscription_period_at
from ..intervals import Interval, Timeline, billing_mode
from ..models import SubscriptionPriceInterval
from ..pricing_adapter import price_spec_from_price
from ..usage import is_dimensional
from .intervals import IntervalConflict, IntervalError, must_match, parse_rate


def billed_from(timeline: Timeline) -> datetime:
    """Where invoices of subscription-only intervals stop: the start of the period holding the open start (the
    recurring invoice closing a period bills them for all of it)."""
    return subscription_period_at(timeline.subscription, timeline.open_start).start


def _cadence(timeline: Timeline) -> str:
    return timeline.subscription.plan.billing_cadence or BillingCadence.MONTHLY


def _catalog_price(op: dict, where: str, timeline: Timeline) -> Price:
    price_id = op.get("priceId")
    if not price_id:
        keys = ", ".join(sorted(timeline.lines)) or "none"
        raise IntervalError(
            "No line of the subscription's plan version has this priceKey: send priceId, the catalog price this "
            f"subscription-only interval bills (or use a plan key: {keys}).",
            field=f"{where}.priceId",
        )
    price = (
        Price.objects.filter(merchant=timeline.subscription.merchant, pk=price_id, customer__isnull=True)
        .select_related("billable_metric")
        .first()
    )
    if price is None:
        raise IntervalError("No catalog price of your account has this id.", field=f"{where}.priceId")
    on_plan = [key for key, line in timeline.lines.items() if line.pk == price.pk]
    if on_plan:
        # Billing it again under another key would bill the line's usage twice.
        raise IntervalError(
            f"This price is the plan's line {on_plan[0]}; override it under that priceKey.", field=f"{where}.priceId"
        )
    if is_one_off(price) or op.get("billDate") is not None:
        raise IntervalError(
            "One-off prices are not billed through intervals; add a manual line item for a one-time charge.",
            field=f"{where}.billDate" if op.get("billDate") is not None else f"{where}.priceId",
        )
    if price.model not in (PriceModel.STANDARD, PriceModel.PACKAGE) or is_dimensional(price):
        raise IntervalError(
            f"A subscription-only interval bills a per-unit or per-package price at its own unitPrice; this one is "
            f"{price.model}{' with rates per event property' if is_dimensional(price) else ''}.",
            field=f"{where}.priceId",
        )
    if not price.fee_id and not price.billable_metric_id:
        raise IntervalError("This price bills neither a fee nor a metric.", field=f"{where}.priceId")
    if price.fee_id and price.billing_cadence and price.billing_cadence != _cadence(timeline):
        raise IntervalError(
            f"This fee bills every {price.billing_cadence}; the subscription's periods are {_cadence(timeline)}.",
            field=f"{where}.priceId",
        )
    return price


def _unit_price(value: Any, price: Price, where: str, currency: str) -> Decimal:
    rate = parse_rate(value, f"{where}.unitPrice")
    if rate is None:
        if price.unit_price is None:
            raise IntervalError(
                "The catalog price has no unit price to save; send unitPrice.", field=f"{where}.unitPrice"
            )
        rate = price.unit_price
    if rate < 0 and not price.allows_rebate:
        raise IntervalError("This price does not allow a negative unit price.", field=f"{where}.unitPrice")
    try:
        replace(price_spec_from_price(price, currency=currency), unit_price=rate)
    except PricingError as error:
        raise IntervalError(str(error), field=f"{where}.unitPrice") from None
    return rate


def owned_interval_add(op: dict, index: int, timeline: Timeline, state: dict) -> None:
    """An add op whose ``priceKey`` is on no plan line: a subscription-only interval (see the module)."""
    where = f"add[{index}]"
    subscription = timeline.subscription
    key = op["priceKey"]
    if op.get("planVersionId") and op["planVersionId"] != timeline.version_id:
        raise IntervalConflict(
            f"The subscription bills from plan version {timeline.version_id}.", code="PLAN_VERSION_MISMATCH"
        )
    price = _catalog_price(op, where, timeline)
    if op["billingCadence"] != _cadence(timeline):
        raise IntervalError(
            f"A subscription-only interval bills per period of the subscription: {_cadence(timeline)}.",
            field=f"{where}.billingCadence",
        )
    if op["billingMode"] != billing_mode(price):
        raise IntervalError(f"This price bills {billing_mode(price)}.", field=f"{where}.billingMode")
    if op.get("quantityTransitions"):
        raise IntervalError("Quantity transitions are not supported.", field=f"{where}.quantityTransitions")
    quantity = parse_rate(op["baseQuantity"], f"{where}.baseQuantity")
    if quantity < 0:
        raise IntervalError("A quantity is not negative.", field=f"{where}.baseQuantity")
    if price.billable_metric_id and quantity != 1:
        raise IntervalError("A metered price bills its usage: its base quantity is 1.", field=f"{where}.baseQuantity")
    rate = _unit_price(op["unitPrice"], price, where, subscription.plan.currency)
    if subscription.is_real_time and price.billable_metric_id:
        raise IntervalConflict(
            "A real-time subscription's usage is debited as it arrives, at its plan's prices; a subscription-only "
            "metered interval is for post-paid subscriptions (fees are accepted on both).",
            code="REAL_TIME_METERED_INTERVAL",
        )
    start, end = op["startDate"], op.get("endDate")
    if start < timeline.open_start:
        raise IntervalError(
            f"Periods up to {iso_utc(timeline.open_start)} are invoiced: start at that moment or later.",
            field=f"{where}.startDate",
        )
    stop = subscription_end(subscription)
    if stop is not None and start >= stop:
        raise IntervalError(f"The subscription ends at {iso_utc(stop)}.", field=f"{where}.startDate")
    if end is not None and end <= start:
        raise IntervalError("Must be after startDate.", field=f"{where}.endDate")
    taken = {row.price_key for row in timeline.owned.values()} | set(state["owned_keys"])
    if key in taken:
        raise IntervalConflict(
            f"The subscription already has an interval {key}; edit it (GET shows its id) or use another key.",
            code="INTERVAL_OVERLAP",
        )
    row = SubscriptionPriceInterval.objects.create(
        merchant=subscription.merchant,
        subscription=subscription,
        price=price,
        price_key=key,
        unit_price=rate,
        quantity=quantity,
        start_date=start,
        end_date=end,
        created_at=state["now"],
        updated_at=state["now"],
    )
    state["owned_keys"].append(key)
    state["owned"].append(row.pk)


def _end_bound(row: SubscriptionPriceInterval, timeline: Timeline) -> datetime:
    """The earliest end an edit may give ``row``: invoices bill it up to ``billed_from``, and an in-advance fee
    the period holding the open start too (billed ahead on the close of the period before)."""
    since = billed_from(timeline)
    if row.start_date >= since:
        return row.start_date
    if is_in_advance_fee(row.price):
        return subscription_period_at(timeline.subscription, timeline.open_start).end
    return since


def owned_interval_edit(op: dict, index: int, interval: Interval, timeline: Timeline, state: dict) -> None:
    where = f"edit[{index}]"
    row = timeline.owned[interval.id]
    must_match(op, interval.fixed_fields(), where)
    if "baseQuantity" in op and parse_rate(op["baseQuantity"], f"{where}.baseQuantity") != row.quantity:
        raise IntervalError(
            f"This interval bills a base quantity of {decimal_string(row.quantity)}; close it and add another to "
            "bill a different one.",
            field=f"{where}.baseQuantity",
        )
    if op.get("quantityTransitions"):
        raise IntervalError("Quantity transitions are not supported.", field=f"{where}.quantityTransitions")
    billed = row.start_date < billed_from(timeline)
    changed: list[str] = []
    if "unitPrice" in op:
        rate = _unit_price(op["unitPrice"], row.price, where, timeline.subscription.plan.currency)
        if rate != row.unit_price:
            if billed:
                raise IntervalConflict(
                    f"{where}: invoices billed this interval at {decimal_string(row.unit_price)}; close it with "
                    "endDate and add another key at the new rate.",
                    code="INTERVAL_BILLED",
                )
            row.unit_price = rate
            changed.append("unit_price")
    if "endDate" in op and op["endDate"] != row.end_date:
        end = op["endDate"]
        bound = _end_bound(row, timeline)
        if row.end_date is not None and row.end_date <= bound and billed:
            raise IntervalConflict(
                f"{where}: this interval ended at {iso_utc(row.end_date)} and was invoiced; add another.",
                code="INTERVAL_BILLED",
            )
        if end is not None and end <= row.start_date:
            raise IntervalError("Must be after startDate.", field=f"{where}.endDate")
        if end is not None and end < bound:
            raise IntervalError(
                f"Invoices bill this interval up to {iso_utc(bound)}: end it at that moment or later.",
                field=f"{where}.endDate",
            )
        row.end_date = end
        changed.append("end_date")
    if changed:
        row.updated_at = state["now"]
        row.save(update_fields=[*changed, "updated_at"])
        state["owned"].append(row.pk)


def owned_interval_remove(index: int, interval: Interval, timeline: Timeline, state: dict) -> None:
    where = f"remove[{index}]"
    row = timeline.owned[interval.id]
    if row.start_date < billed_from(timeline):
        raise IntervalConflict(
            f"{where}: invoices billed this interval; close it with endDate instead.", code="INTERVAL_BILLED"
        )
    row.delete()
    state["owned"].append(interval.id)

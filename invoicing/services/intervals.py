"""Edits of a subscription's price intervals (the client's ``editSubscriptionIntervals``): negotiated rates,
written by the catalog's price services the admin's price page uses (``price_create``, ``price_update``), and
the change record (``SubscriptionIntervalChange``) in the same transaction.

What an edit may do (``invoicing/intervals.py`` says how intervals map onto plan lines and negotiated rates):

- **add** an override of a plan line (its ``priceKey``): a negotiated rate for the customer at ``unitPrice``
  from ``startDate``, which must be the open start (the first moment no invoice bills yet) or a later
  billing-period start: a negotiated rate replaces a plan price for whole periods, and a period already
  invoiced is never re-rated. ``endDate`` null is open-ended; a date on a period boundary ends the rate there,
  a date inside a period at the end of that period (stored so: ``Price.effective_until`` is a period start).
  The windows of one line's overrides never overlap (409 ``INTERVAL_OVERLAP``, as the client documents for a
  re-sent add): the check runs under the subscription's row lock (and the catalog's, under the customer's),
  and on PostgreSQL an exclusion constraint backs it. ``unitPrice`` null bills the catalog price: nothing to
  write.
- **edit** an override's ``unitPrice`` (null reverts to the catalog price: removes the rate), and **remove** an
  override, while no invoice has billed it: afterwards either would change billing periods that already exist,
  which the client refuses (409 ``INTERVAL_BILLED``). An edit's ``endDate`` closes, moves or (null) re-opens an
  override's end at any time, but neither the old nor the new end may lie before the open start (invoiced
  periods keep the rate they were billed at: 409 ``INTERVAL_BILLED``). Fields that are not editable must match.
  Plan lines are the plan's: they are not removed, take no unitPrice (add an override) and end where an
  override starts.

Only a per-unit or per-package (``standard``/``package``) in-arrears price takes a negotiated ``unitPrice``
(an in-advance fee's next period is billed ahead, on the closing invoice). While a draft invoice of the
subscription is open (its grace period), every edit is refused: its refresh would re-rate it; so is every
edit of a real-time subscription (its open period is already debited at the rate in force). Bad input is an
``IntervalError`` naming the wire field (a 400); a state refusal an ``IntervalConflict`` (a 409).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from catalog.models import PaymentTerm, Price, PriceModel, Subscription, SubscriptionStatus
from catalog.services import negotiated_rate_create, price_update
from core.formatting import iso_utc

from ..intervals import (
    ONE_OFF,
    SUBSCRIPTION_OWNED,
    Interval,
    Timeline,
    base_quantity,
    billing_cadence,
    billing_mode,
    period_boundary_from,
    subscription_timeline,
    window_start,
)
from ..models import (
    IntervalChangeReason,
    InvoiceError,
    InvoiceLine,
    InvoiceStatus,
    SubscriptionIntervalChange,
)

_RATE_MAX = Decimal(10) ** 18
_PLAIN = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


class IntervalError(InvoiceError):
    """Bad input for an interval edit; ``field`` is the wire field to blame (a 400)."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class IntervalConflict(InvoiceError):
    """An interval edit refused by the subscription's state: a 409 with ``code``."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class IntervalEdit:
    """The request: the client's add, edit and remove ops as parsed dicts (wire keys), and the change's
    reason, description and metadata."""

    add: list[dict[str, Any]] = field(default_factory=list)
    edit: list[dict[str, Any]] = field(default_factory=list)
    remove: list[dict[str, Any]] = field(default_factory=list)
    change_reason: str = IntervalChangeReason.UNSPECIFIED
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IntervalEditResult:
    intervals: list[Interval]
    change: SubscriptionIntervalChange | None

    @property
    def unchanged(self) -> bool:
        return self.change is None


def _rate(value: Any, where: str) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _PLAIN.match(value):
        raise IntervalError('Send a plain decimal string, such as "0.0000015" (no exponent).', field=where)
    rate = Decimal(value)
    if abs(rate) >= _RATE_MAX or rate.as_tuple().exponent < -12:
        raise IntervalError("At most 12 decimal places and fewer than 18 digits before the point.", field=where)
    return rate


def _negotiable(price: Price, where: str) -> None:
    if price.model not in (PriceModel.STANDARD, PriceModel.PACKAGE):
        raise IntervalError(
            f"The {price.model} price of this line takes its rates from its tiers or events; only a per-unit or "
            "per-package price takes a negotiated unitPrice.",
            field=f"{where}.unitPrice",
        )
    if price.payment_term == PaymentTerm.IN_ADVANCE:
        raise IntervalError(
            "An in-advance fee is billed a period ahead; only in-arrears prices take a negotiated unitPrice.",
            field=f"{where}.billingMode",
        )


def _must_match(op: dict, interval_fields: dict[str, Any], where: str) -> None:
    for name, current in interval_fields.items():
        if name in op and op[name] != current:
            raise IntervalError(f"Not editable here; it is {current!r} for this line.", field=f"{where}.{name}")


def _line_fields(price: Price, subscription: Subscription) -> dict[str, Any]:
    return {
        "billingCadence": billing_cadence(price, subscription),
        "billingMode": billing_mode(price),
    }


def _check_start(value: datetime, timeline: Timeline, where: str) -> None:
    if value != timeline.open_start and (
        value < timeline.open_start or window_start(timeline.subscription, value) != value
    ):
        raise IntervalError(
            f"A negotiated rate starts at the first moment not yet invoiced, {iso_utc(timeline.open_start)}, or "
            "at a later billing-period start: it replaces the plan price for whole periods, and invoiced periods "
            "are never re-rated.",
            field=where,
        )


def _end(value: datetime | None, start: datetime, timeline: Timeline, where: str) -> datetime | None:
    """The stored end of a window that starts at ``start``: ``value`` on a period boundary, else the end of
    the period it falls in; None open-ended."""
    if value is None:
        return None
    if value <= start:
        raise IntervalError(f"Must be strictly after the start, {iso_utc(start)}.", field=where)
    return period_boundary_from(timeline.subscription, value)


def _overlaps(rates: list[Price], start: datetime, end: datetime | None, *, but: str | None = None) -> Price | None:
    """The first of ``rates`` (other than ``but``) whose window meets [start, end)."""
    for rate in rates:
        if rate.pk == but:
            continue
        if (rate.effective_until is None or rate.effective_until > start) and (
            end is None or rate.effective_from is None or rate.effective_from < end
        ):
            return rate
    return None


def _overlap_conflict(key: str, other: Price) -> IntervalConflict:
    until = iso_utc(other.effective_until) if other.effective_until else "open-ended"
    return IntervalConflict(
        f"The line {key} already has an override then ({other.pk}, until {until}); each period is rated by one "
        "rate: end that one first, or edit it (GET shows its id).",
        code="INTERVAL_OVERLAP",
    )


def _add(op: dict, index: int, timeline: Timeline, state: dict) -> None:
    where = f"add[{index}]"
    subscription = timeline.subscription
    key = op["priceKey"]
    base = timeline.lines.get(key)
    if base is None:
        # A key outside the plan: a subscription-only interval (its module imports this one's errors).
        from .price_intervals import owned_interval_add

        owned_interval_add(op, index, timeline, state)
        return
    _refuse_real_time(timeline)
    if op.get("planVersionId") and op["planVersionId"] != timeline.version_id:
        raise IntervalConflict(
            f"The subscription bills from plan version {timeline.version_id}.", code="PLAN_VERSION_MISMATCH"
        )
    if op.get("priceId") not in (None, base.pk):
        raise IntervalError(f"The line {key} bills {base.pk}; omit priceId or send that.", field=f"{where}.priceId")
    _must_match(op, _line_fields(base, subscription), where)
    if billing_cadence(base, subscription) == ONE_OFF or op.get("billDate") is not None:
        raise IntervalError(
            "One-off lines are billed once, at the start; they take no override.", field=f"{where}.billDate"
        )
    if _rate(op["baseQuantity"], f"{where}.baseQuantity") != base_quantity(base):
        raise IntervalError(f"This line bills a base quantity of {base_quantity(base)}.", field=f"{where}.baseQuantity")
    if op.get("quantityTransitions"):
        raise IntervalError("Quantity transitions are not supported.", field=f"{where}.quantityTransitions")
    rate = _rate(op["unitPrice"], f"{where}.unitPrice")
    _check_start(op["startDate"], timeline, f"{where}.startDate")
    # A start inside a period (the open start after a mid-period plan change) rates that whole period.
    start = window_start(subscription, op["startDate"])
    end = _end(op.get("endDate"), op["startDate"], timeline, f"{where}.endDate")
    other = _overlaps([*timeline.overrides.get(key, []), *state["added"].get(key, [])], start, end)
    if other is not None:
        raise _overlap_conflict(key, other)
    if rate is None:
        return  # the catalog price: what the line already bills
    _negotiable(base, where)
    try:
        created = negotiated_rate_create(
            plan_price=base, customer=subscription.customer, unit_price=rate, effective_from=start, effective_until=end
        )
    except ValidationError as error:
        raise IntervalError(" ".join(error.messages), field=f"{where}.unitPrice") from None
    state["added"].setdefault(key, []).append(created)


def _edit(op: dict, index: int, timeline: Timeline, state: dict) -> None:
    where = f"edit[{index}]"
    interval = timeline.by_id().get(op["id"])
    if interval is None:
        raise IntervalError("No interval of this subscription has this id.", field=f"{where}.id")
    if interval.kind == SUBSCRIPTION_OWNED:
        from .price_intervals import owned_interval_edit

        owned_interval_edit(op, index, interval, timeline, state)
        return
    _refuse_real_time(timeline)
    negotiated = timeline.rate(interval.id)
    fixed = interval.fixed_fields()
    if negotiated is None:
        fixed["endDate"] = interval.end_date  # a plan line ends where an override starts
    _must_match(op, fixed, where)
    if "baseQuantity" in op and _rate(op["baseQuantity"], f"{where}.baseQuantity") != interval.base_quantity:
        raise IntervalError(
            f"This line bills a base quantity of {interval.base_quantity}.", field=f"{where}.baseQuantity"
        )
    if op.get("quantityTransitions"):
        raise IntervalError("Quantity transitions are not supported.", field=f"{where}.quantityTransitions")
    if "unitPrice" in op:
        rate = _rate(op["unitPrice"], f"{where}.unitPrice")
        if rate != interval.unit_price:
            if negotiated is None:
                raise IntervalError(
                    f"This interval bills the plan's catalog price; add an override of {interval.price_key} from "
                    f"{iso_utc(timeline.open_start)} instead.",
                    field=f"{where}.unitPrice",
                )
            if rate is None:
                _drop(negotiated, where, state)
                return
            _unbilled(negotiated, where)
            try:
                price_update(price=negotiated, changes={"unit_price": rate})
            except ValidationError as error:
                raise IntervalError(" ".join(error.messages), field=f"{where}.unitPrice") from None
            state["edited"].append(interval.id)
    if negotiated is not None and "endDate" in op:
        _edit_end(op["endDate"], negotiated, interval, timeline, where, state)


def _edit_end(value: datetime | None, negotiated: Price, interval: Interval, timeline: Timeline, where, state) -> None:
    """Close, move or re-open an override's end; invoiced periods keep the rate they were billed at."""
    end = _end(value, interval.start_date, timeline, f"{where}.endDate")
    if end == negotiated.effective_until:
        return
    for bound in (negotiated.effective_until, end):
        if bound is not None and bound < timeline.open_start:
            raise IntervalConflict(
                f"{where}: the periods before {iso_utc(timeline.open_start)} are invoiced; an end before then "
                "would change what they were billed at.",
                code="INTERVAL_BILLED",
            )
    start = negotiated.effective_from or interval.start_date
    other = _overlaps(timeline.overrides.get(interval.price_key, []), start, end, but=negotiated.pk)
    if other is not None:
        raise _overlap_conflict(interval.price_key, other)
    try:
        price_update(price=negotiated, changes={"effective_until": end})
    except ValidationError as error:
        raise IntervalError(" ".join(error.messages), field=f"{where}.endDate") from None
    state["edited"].append(interval.id)


def _unbilled(negotiated: Price, where: str) -> None:
    if InvoiceLine.objects.filter(price=negotiated).exclude(invoice__status=InvoiceStatus.VOID).exists():
        raise IntervalConflict(
            f"{where}: this negotiated rate has billed invoices, and an edit would change billing periods that "
            "already exist: end it (endDate) and add the new rate from there.",
            code="INTERVAL_BILLED",
        )


def _drop(negotiated: Price, where: str, state: dict) -> None:
    _unbilled(negotiated, where)
    state["removed"].append(negotiated.pk)
    negotiated.delete()


def _remove(op: dict, index: int, timeline: Timeline, state: dict) -> None:
    where = f"remove[{index}]"
    interval = timeline.by_id().get(op["id"])
    if interval is None:
        raise IntervalError("No interval of this subscription has this id.", field=f"{where}.id")
    if interval.kind == SUBSCRIPTION_OWNED:
        from .price_intervals import owned_interval_remove

        owned_interval_remove(index, interval, timeline, state)
        return
    _refuse_real_time(timeline)
    negotiated = timeline.rate(interval.id)
    if negotiated is None:
        raise IntervalError("A plan line is the plan's; only an override can be removed.", field=f"{where}.id")
    _drop(negotiated, where, state)


def _refuse_real_time(timeline: Timeline) -> None:
    if timeline.subscription.is_real_time:
        # Its open period's usage is already debited from the prepaid balance at the rate in force; how a rate
        # changed under those debits settles is not verified yet, so it is refused rather than guessed.
        # (Subscription-only fee intervals are accepted: ``invoicing.services.price_intervals``.)
        raise IntervalConflict(
            "Negotiated rates of a real-time subscription are not set through intervals yet.",
            code="REAL_TIME_SUBSCRIPTION",
        )


def _entries(before: Timeline, after: Timeline) -> list[dict]:
    old, new = before.by_id(), after.by_id()
    entries = []
    for interval_id in sorted(set(old) | set(new)):
        was = old[interval_id].copy() if interval_id in old else None
        now = new[interval_id].copy() if interval_id in new else None
        if was != now:
            entries.append({"intervalId": interval_id, "before": was, "after": now})
    return entries


@transaction.atomic(durable=True)
def subscription_intervals_edit(*, subscription: Subscription, edit: IntervalEdit, now: datetime) -> IntervalEditResult:
    """Apply the client's add, edit and remove ops to ``subscription``'s intervals, all or nothing, and record
    the change (none when nothing changed)."""
    subscription = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("customer", "plan", "merchant")
        .get(pk=subscription.pk)
    )
    if subscription.status == SubscriptionStatus.TERMINATED:
        raise IntervalConflict("The subscription is terminated; its intervals are history.", code="NOT_LIVE")
    if subscription.invoices.filter(status=InvoiceStatus.DRAFT).exists():
        raise IntervalConflict(
            "A draft invoice of this subscription is still open for late usage; edit its intervals once it is "
            "issued, so it is not re-rated.",
            code="INVOICE_DRAFT_OPEN",
        )
    before = subscription_timeline(subscription=subscription)
    state: dict[str, Any] = {"added": {}, "edited": [], "removed": [], "owned": [], "owned_keys": [], "now": now}
    for index, op in enumerate(edit.remove):
        _remove(op, index, before, state)
    for index, op in enumerate(edit.edit):
        _edit(op, index, before, state)
    for index, op in enumerate(edit.add):
        _add(op, index, before, state)
    if not (state["added"] or state["edited"] or state["removed"] or state["owned"]):
        return IntervalEditResult(before.intervals, None)
    # Written first (an added override's start is its ``effective_from``), then completed with every
    # interval's copy before and after.
    change = SubscriptionIntervalChange.objects.create(
        merchant=subscription.merchant,
        subscription=subscription,
        change_reason=edit.change_reason,
        description=edit.description,
        metadata=edit.metadata,
        entries=[],
        created_at=now,
    )
    after = subscription_timeline(subscription=subscription)
    change.entries = _entries(before, after)
    change.save(update_fields=["entries"])
    return IntervalEditResult(after.intervals, change)


# The same parsing and comparison for subscription-only intervals (``invoicing.services.price_intervals``).
parse_rate = _rate
must_match = _must_match

"""A subscription's price intervals (the client's ``SubscriptionInterval``): its plan lines and the customer's
negotiated rates, as a timeline. Reads only; ``invoicing.services.intervals`` writes.

The mapping onto our catalog:

- every line of the plan version that bills the subscription's first period not yet invoiced is a
  ``plan_line`` interval (``id`` = the plan price's id, ``unitPrice`` null: the catalog price);
- a negotiated rate of the customer (a ``Price`` with ``customer`` and ``overrides``, written by the admin's
  price page or by an interval add) is an override interval (``id`` = the negotiated price's id, ``priceId`` =
  the plan price it replaces, ``priceKey`` = that line's key, ``unitPrice`` = its rate). It starts where the
  change that wrote it says (``SubscriptionIntervalChange``), else with the subscription (a rate set in the
  admin or the demo), and the plan line interval then ends there;
- every interval ends with the subscription (``terminated_at`` / ``ending_at``), else is open-ended; after a
  mid-term plan change (``subscription_upgrade``, or a downgrade applied at a period end) the intervals are the
  new plan's, from ``plan_changed_at``.

- a subscription-only interval (``SubscriptionPriceInterval``: a catalog price outside the plan, billing this
  subscription only at its own rate) is ``subscription_owned`` (``id`` = the row's), from its start to its end
  (or the subscription's); it is the subscription's, so every plan version lists it.

A negotiated rate replaces a plan price for whole periods (rating reads the price set once per period), so an
override starts on a period boundary: the **open start**, the first moment no invoice bills yet (the end of
the latest recurring invoice's period, else the subscription's start), or a later period start. It may end
(``Price.effective_until``): on a period boundary, or inside a period, which closes it at the end of that
period (the period is billed at the rate). A line may have a sequence of overrides whose windows never overlap
(Jan–Mar at one rate, from April at another); between and after them the plan line bills again, listed as a
plan line interval of its own. The plan line interval before the first override (or, when an override starts
with the subscription, the first one after an override) has the plan price's id; a later one has
``<plan price id>:<id of the override it follows>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Max, QuerySet

from catalog.models import BillingCadence, PaymentTerm, PlanVersionPrice, Price, PriceModel, Subscription
from core.formatting import decimal_string, iso_utc

from .calculation import subscription_end, subscription_period_at
from .models import InvoiceKind, SubscriptionIntervalChange, SubscriptionPriceInterval
from .pricing_adapter import subscription_version_at

PLAN_LINE = "plan_line"
SUBSCRIPTION_OWNED = "subscription_owned"
ONE_OFF = "one_off"


@dataclass(frozen=True)
class Interval:
    id: str
    price_id: str  # the catalog price the interval bills (an override: the plan price it replaces)
    price_key: str
    plan_version_id: str
    unit_price: Decimal | None
    resolved_unit_price: Decimal
    base_quantity: Decimal
    billing_cadence: str
    billing_mode: str
    start_date: datetime
    end_date: datetime | None
    kind: str = PLAN_LINE
    bill_date: datetime | None = None

    def fixed_fields(self) -> dict:
        """What an edit cannot change: the client's "Not editable. Must match the interval's current value if
        supplied" fields, by wire name."""
        return {
            "priceId": self.price_id,
            "priceKey": self.price_key,
            "planVersionId": self.plan_version_id,
            "billingCadence": self.billing_cadence,
            "billingMode": self.billing_mode,
            "startDate": self.start_date,
            "billDate": self.bill_date,
        }

    def wire(self) -> dict:
        """The client's ``SubscriptionInterval`` (without ``kind``: ``SubscriptionIntervalChangeCopy`` keeps
        ``resolvedUnitPrice`` instead, see ``copy``)."""
        return {
            "id": self.id,
            "priceId": self.price_id,
            "priceKey": self.price_key,
            "kind": self.kind,
            "planVersionId": self.plan_version_id,
            "unitPrice": decimal_string(self.unit_price),
            "baseQuantity": decimal_string(self.base_quantity),
            "quantityTransitions": [],
            "billingCadence": self.billing_cadence,
            "billingMode": self.billing_mode,
            "billDate": iso_utc(self.bill_date),
            "startDate": iso_utc(self.start_date),
            "endDate": iso_utc(self.end_date),
        }

    def copy(self) -> dict:
        """The client's ``SubscriptionIntervalChangeCopy``: what the interval billed when a change was made."""
        wire = self.wire()
        del wire["id"], wire["kind"]
        return {**wire, "resolvedUnitPrice": decimal_string(self.resolved_unit_price)}


@dataclass
class Timeline:
    """What an edit decides from: the version and lines that bill the open period, the customer's negotiated
    rates by line key (each line's in window order), and the intervals as the client reads them."""

    subscription: Subscription
    open_start: datetime
    version_id: str
    lines: dict[str, Price]  # key → plan price
    overrides: dict[str, list[Price]]  # key → negotiated rates, by start
    intervals: list[Interval] = field(default_factory=list)
    owned: dict[str, SubscriptionPriceInterval] = field(default_factory=dict)  # id → subscription-only interval

    def by_id(self) -> dict[str, Interval]:
        return {interval.id: interval for interval in self.intervals}

    def rate(self, interval_id: str) -> Price | None:
        """The negotiated rate an override interval shows (None for a plan line interval)."""
        return next((rate for rates in self.overrides.values() for rate in rates if rate.pk == interval_id), None)

    def free_from(self, key: str) -> datetime | None:
        """The first period start from the open start on that none of the line's overrides rates (None: an
        open-ended override rates every period from there): where a new override of the line may start."""
        moment: datetime | None = self.open_start
        for rate in self.overrides.get(key, []):
            if moment is not None and rate.in_window(window_start(self.subscription, moment)):
                moment = rate.effective_until
        return moment


def open_start(subscription: Subscription) -> datetime:
    """The first moment no invoice bills yet: the end of the latest recurring period (voided invoices
    included, as the billing run's watermark), else the subscription's start; after a mid-term plan change,
    not before it (its plan-change invoice billed the old plan up to then)."""
    watermark = subscription.invoices.filter(kind=InvoiceKind.RECURRING).aggregate(end=Max("period_end"))["end"]
    moments = [subscription.started_at, watermark, subscription.plan_changed_at]
    return max(moment for moment in moments if moment is not None)


def window_start(subscription: Subscription, moment: datetime) -> datetime:
    """The start of the billing period ``moment`` falls in: what a negotiated rate's window is compared with
    (rating reads the price set once per period, at its start)."""
    return subscription_period_at(subscription, moment).start


def period_boundary_from(subscription: Subscription, moment: datetime) -> datetime:
    """``moment`` when it starts a billing period, else the end of the period it falls in: where a window
    bound sent inside a period takes effect."""
    period = subscription_period_at(subscription, moment)
    return moment if period.start == moment else period.end


def billing_mode(price: Price) -> str:
    return "advance" if price.payment_term == PaymentTerm.IN_ADVANCE else "arrears"


def billing_cadence(price: Price, subscription: Subscription) -> str:
    if price.billing_cadence == "P0D":
        return ONE_OFF
    return price.billing_cadence or subscription.plan.billing_cadence or BillingCadence.MONTHLY


def base_quantity(price: Price) -> Decimal:
    """Fees bill their ``quantity`` each period; a metered price bills usage (a base of 1 unit of rate)."""
    return Decimal(price.quantity) if price.fee_id else Decimal(1)


def override_starts(subscription: Subscription) -> dict[str, datetime]:
    """Interval id → the start its latest change recorded (the ``after`` copy): the start of an override
    written before rates had windows (``effective_from`` empty)."""
    starts: dict[str, datetime] = {}
    for entries in subscription.interval_changes.order_by("created_at", "id").values_list("entries", flat=True):
        for entry in entries:
            if entry.get("after"):
                starts[entry["intervalId"]] = datetime.fromisoformat(entry["after"]["startDate"].replace("Z", "+00:00"))
    return starts


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


def subscription_timeline(*, subscription: Subscription) -> Timeline:
    """The subscription's intervals, ordered by start date (then key)."""
    start = open_start(subscription)
    version_id = subscription_version_at(subscription, start) or ""
    if version_id:
        rows = PlanVersionPrice.objects.filter(version_id=version_id).select_related("price")
        lines = {row.key: row.price for row in rows}
    else:
        lines = {p.plan_line_key or p.pk: p for p in Price.objects.filter(plan=subscription.plan, customer=None)}
    by_price = {price.pk: key for key, price in lines.items()}
    overrides: dict[str, list[Price]] = {}
    for rate in Price.objects.filter(customer_id=subscription.customer_id, overrides_id__in=list(by_price)):
        overrides.setdefault(by_price[rate.overrides_id], []).append(rate)
    for rates in overrides.values():
        rates.sort(key=lambda r: (r.effective_from is not None, r.effective_from or start, r.pk))
    timeline = Timeline(subscription, start, version_id, lines, overrides)
    starts = (
        override_starts(subscription) if any(r.effective_from is None for v in overrides.values() for r in v) else {}
    )
    end = subscription_end(subscription)
    # The current plan's lines bill from its last change (``plan_changed_at``); the lines of the plans before it
    # are on their plan-change invoices, not listed here.
    since = max(subscription.plan_changed_at or subscription.started_at, subscription.started_at)
    for key, price in lines.items():
        common = {
            "price_id": price.pk,
            "price_key": key,
            "plan_version_id": version_id,
            "base_quantity": base_quantity(price),
            "billing_cadence": billing_cadence(price, subscription),
            "billing_mode": billing_mode(price),
            "bill_date": subscription.started_at if price.billing_cadence == "P0D" else None,
        }
        # The plan line bills the gaps between the overrides' windows: ``cursor`` is where it bills from.
        cursor: datetime | None = since
        follows: Price | None = None
        for rate in overrides.get(key, []):
            if rate.effective_from is not None:
                rate_start = period_boundary_from(subscription, rate.effective_from)
            else:
                rate_start = starts.get(rate.pk, since)
            rate_start = max(rate_start, since)
            rate_end = _earliest(
                period_boundary_from(subscription, rate.effective_until) if rate.effective_until else None, end
            )
            if rate_end is not None and rate_end <= rate_start:
                continue  # ended before this plan's lines bill (or the subscription) started
            if cursor is not None and rate_start > cursor:
                timeline.intervals.append(_plan_line(price, follows, cursor, rate_start, common))
            timeline.intervals.append(
                Interval(
                    id=rate.pk,
                    unit_price=rate.unit_price,
                    resolved_unit_price=rate.unit_price or Decimal(0),
                    start_date=rate_start,
                    end_date=rate_end,
                    **common,
                )
            )
            cursor, follows = rate_end, rate
        if cursor is not None and (end is None or cursor < end):
            timeline.intervals.append(_plan_line(price, follows, cursor, end, common))
    _add_owned_intervals(timeline)
    timeline.intervals.sort(key=lambda i: (i.start_date, i.price_key, i.unit_price is not None))
    return timeline


def _plan_line(price: Price, follows: Price | None, start: datetime, end: datetime | None, common: dict) -> Interval:
    return Interval(
        id=price.pk if follows is None else f"{price.pk}:{follows.pk}",
        unit_price=None,
        resolved_unit_price=price.unit_price or Decimal(0),
        start_date=start,
        end_date=end,
        **common,
    )


def owned_interval(row: SubscriptionPriceInterval, subscription: Subscription, version_id: str) -> Interval:
    """A subscription-only interval (``SubscriptionPriceInterval``) as the client reads it: ``subscription_owned``,
    its own rate, the subscription's plan version (it belongs to none: a version change keeps it)."""
    price = row.price
    return Interval(
        id=row.pk,
        price_id=price.pk,
        price_key=row.price_key,
        plan_version_id=version_id,
        unit_price=row.unit_price,
        resolved_unit_price=row.unit_price,
        base_quantity=row.quantity,
        billing_cadence=subscription.plan.billing_cadence or BillingCadence.MONTHLY,
        billing_mode=billing_mode(price),
        start_date=row.start_date,
        end_date=owned_end(row, subscription),
        kind=SUBSCRIPTION_OWNED,
    )


def owned_end(row: SubscriptionPriceInterval, subscription: Subscription) -> datetime | None:
    """Where a subscription-only interval stops billing: its own end, else the subscription's, whichever is first."""
    ends = [moment for moment in (row.end_date, subscription_end(subscription)) if moment is not None]
    return min(ends) if ends else None


def _add_owned_intervals(timeline: Timeline) -> None:
    rows = SubscriptionPriceInterval.objects.filter(subscription=timeline.subscription).select_related("price")
    for row in rows:
        timeline.owned[row.pk] = row
        timeline.intervals.append(owned_interval(row, timeline.subscription, timeline.version_id))


def negotiable_keys(timeline: Timeline) -> list[str]:
    """The plan lines a negotiated rate may override now: per-unit or per-package, in arrears, not one-off, and
    with a period from the open start on that no override rates yet (``subscription_intervals_edit`` refuses
    the others)."""
    return [
        key
        for key, price in timeline.lines.items()
        if timeline.free_from(key) is not None
        and price.model in (PriceModel.STANDARD, PriceModel.PACKAGE)
        and price.payment_term != PaymentTerm.IN_ADVANCE
        and price.billing_cadence != "P0D"
    ]


def negotiated_rate_add(
    timeline: Timeline, key: str, unit_price: Decimal | str, *, end: datetime | None = None
) -> dict:
    """The add op (wire keys) that gives plan line ``key`` a negotiated ``unit_price`` from the first period on
    or after the open start that no override of the line rates (until ``end``, else open-ended): what the
    admin's "Negotiate a rate" and the demo send to ``subscription_intervals_edit``, as an API caller would."""
    price = timeline.lines[key]
    return {
        "priceKey": key,
        "unitPrice": unit_price if isinstance(unit_price, str) else format(unit_price, "f"),
        "baseQuantity": decimal_string(base_quantity(price)),
        "billingCadence": billing_cadence(price, timeline.subscription),
        "billingMode": billing_mode(price),
        "startDate": timeline.free_from(key) or timeline.open_start,
        "endDate": end,
    }


def interval_change_list(
    *,
    merchant,
    subscription: Subscription | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    change_reason: str | None = None,
) -> QuerySet[SubscriptionIntervalChange]:
    """The merchant's interval changes (one subscription's, when given), oldest first; ``since`` included,
    ``until`` excluded."""
    changes = SubscriptionIntervalChange.objects.filter(merchant=merchant)
    if subscription is not None:
        changes = changes.filter(subscription=subscription)
    if since is not None:
        changes = changes.filter(created_at__gte=since)
    if until is not None:
        changes = changes.filter(created_at__lt=until)
    if change_reason:
        changes = changes.filter(change_reason=change_reason)
    return changes.order_by("created_at", "id")

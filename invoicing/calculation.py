"""Composing invoice lines: fees (prorated by day), usage (rated by the engine), plan terms and tax.

Nothing here writes to the database. A :class:`Biller` holds what a billing run loaded in bulk (prices,
price specs, prefetched usage) so that composing one invoice issues no query for quantity-priced
usage. Every line is rounded once, with the merchant's rounding mode, to the currency's minor unit;
the invoice total is the sum of the rounded lines (plus the rounded tax when tax is exclusive).

Kept whole because the line drafts, the ``Biller`` that composes them and the totals that finish them
(``finish_lines``, ``apply_prepaid``) are one computation read together when an amount is questioned; the
subscription timing helpers at the top (``subscription_now``, ``subscription_period_at``…) are the seam if
it grows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import prefetch_related_objects

from catalog.models import Price, Subscription, TaxBehavior
from catalog.periods import Period, local_date, next_period, period_at
from catalog.pricing import (
    PriceSpec,
    RatingResult,
    apply_plan_minimum,
    apply_subtotal_discount,
    prorate,
    rate,
    round_money,
)
from catalog.pricing.currency import CTX, format_money, format_quantity
from core.formatting import decimal_string

from . import usage as usage_source
from .dimensional import combination_lines, line_description
from .models import InvoiceKind, LineKind
from .pricing_adapter import (
    PriceSet,
    VersionLogs,
    dimension_paths,
    plan_price_set_for_customer,
    price_dimensional_spec,
    price_spec_from_price,
    subscription_version_at,
    version_price_set_for_customer,
)

HUNDRED = Decimal(100)
ONE_OFF = "P0D"


@dataclass
class LineDraft:
    kind: str
    description: str
    amount: Decimal
    price: Price | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    service_start: datetime | None = None
    service_end: datetime | None = None
    explanation: dict = field(default_factory=dict)

    @classmethod
    def from_line(cls, line) -> LineDraft:
        """A stored ``InvoiceLine`` as a draft again (a refreshed draft keeps it; a reissue copies it)."""
        return cls(
            kind=line.kind,
            description=line.description,
            amount=line.amount,
            price=line.price,
            quantity=line.quantity,
            unit_price=line.unit_price,
            service_start=line.service_start,
            service_end=line.service_end,
            explanation=line.explanation,
        )


@dataclass
class ComposedInvoice:
    kind: str
    currency: str
    tax_behavior: str
    tax_rate: Decimal
    period_start: datetime
    period_end: datetime
    lines: list[LineDraft]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    amount_due: Decimal


def manual_line_text(item) -> str:
    """How a manual line's amount came about: "2 × 150 = 300.00" (the amount to the currency's minor unit)."""
    amount = round_money(item.amount, item.currency)
    return f"{decimal_string(item.quantity)} × {decimal_string(item.unit_price)} = {amount}"


def manual_lines_due(subscription: Subscription, period: Period, items: Iterable) -> list:
    """The pending manual line items (``ManualLineItem`` rows) the close of ``period`` bills: those to collect
    before it ends, every one of them on the subscription's last period. The billing run, the upcoming invoice
    and the projections all read this rule."""
    stop = subscription_end(subscription)
    if stop is not None and stop <= period.end:
        return list(items)
    return [item for item in items if item.invoice_at < period.end]


def manual_line_draft(item) -> LineDraft:
    """A manual line item (a ``ManualLineItem`` or anything with its fields) as an invoice line: its
    amount is the item's (quantity × unit price, rounded once when the item was recorded)."""
    text = manual_line_text(item)
    explanation = {"text": text}
    if getattr(item, "pk", None):
        explanation["manualLineItemId"] = item.pk
    description = item.display_name if not item.description else f"{item.display_name} — {item.description}"
    return LineDraft(
        kind=LineKind.MANUAL,
        description=description,
        amount=item.amount,
        quantity=item.quantity,
        unit_price=item.unit_price,
        service_start=item.period_start,
        service_end=item.period_end,
        explanation=explanation,
    )


# -- subscription timing ---------------------------------------------------------------------------

# What reading a subscription to bill it needs with it (``select_related``).
SUBSCRIPTION_RELATED = ("customer", "plan", "merchant", "test_clock")


def subscription_now(subscription: Subscription, now: datetime) -> datetime:
    """The time a subscription lives in: its test clock's, else ``now``."""
    clock = subscription.test_clock
    return clock.current_time if clock is not None else now


def subscription_end(subscription: Subscription) -> datetime | None:
    """When billing stops: the termination moment, else the scheduled end."""
    ends = [moment for moment in (subscription.terminated_at, subscription.ending_at) if moment is not None]
    return min(ends) if ends else None


def subscription_period_at(subscription: Subscription, moment: datetime) -> Period:
    return period_at(
        anchor=subscription.effective_billing_anchor,
        cadence=subscription.plan.billing_cadence,
        moment=moment,
        time_zone=subscription.customer.time_zone,
    )


def subscription_next_period(subscription: Subscription, period: Period) -> Period:
    return next_period(
        period,
        anchor=subscription.effective_billing_anchor,
        cadence=subscription.plan.billing_cadence,
        time_zone=subscription.customer.time_zone,
    )


def service_window(subscription: Subscription, period: Period) -> tuple[datetime, datetime]:
    """The part of ``period`` the subscription covers: from its start to its end, if inside."""
    start = max(period.start, subscription.started_at)
    end = period.end
    stop = subscription_end(subscription)
    if stop is not None and stop < end:
        end = stop
    return start, end


def usage_window(subscription: Subscription, period: Period, charge_from: datetime | None) -> tuple[datetime, datetime]:
    """The part of ``period`` whose usage the current plan bills: from the service start, the trial end or
    the plan change (``charge_from``), whichever is last. Threshold invoices are filed under its start."""
    start, end = service_window(subscription, period)
    for moment in (subscription.trial_ends_at, charge_from):
        if moment is not None and moment > start:
            start = min(moment, end)
    return start, end


def tax_rate_for(subscription: Subscription) -> Decimal:
    if subscription.tax_exempt:
        return Decimal(0)
    customer_rate = subscription.customer.tax_rate
    return customer_rate if customer_rate is not None else subscription.plan.default_tax_rate


def is_one_off(price: Price) -> bool:
    return price.fee_id is not None and price.billing_cadence == ONE_OFF


def is_in_advance_fee(price: Price) -> bool:
    return price.fee_id is not None and not is_one_off(price) and price.payment_term == "in_advance"


def is_in_arrears_fee(price: Price) -> bool:
    return price.fee_id is not None and not is_one_off(price) and price.payment_term != "in_advance"


# -- explanation -----------------------------------------------------------------------------------


def explanation_of(result: RatingResult) -> dict:
    return {
        "text": result.describe(),
        "quantity": decimal_string(result.quantity),
        "billable_quantity": decimal_string(result.billable_quantity),
        "amount": decimal_string(result.amount),
        "lines": [
            {
                "kind": line.kind.value,
                "quantity": decimal_string(line.quantity),
                "unit_price": decimal_string(line.unit_price),
                "amount": decimal_string(line.amount),
                "description": line.description,
            }
            for line in result.lines
        ],
    }


def proration_text(*, covered_days: int, period_days: int, full: Decimal, amount: Decimal, currency: str) -> str:
    """How a fee's days were billed, for the invoice: "31 of 31 days = $49.00",
    "Prorated 10 of 31 days: $49.00 × 10/31 = $15.81", or for an obligation "…, owed in full"."""
    money = format_money(amount, currency)
    if covered_days == period_days:
        return f"{covered_days} of {period_days} days = {money}"
    if amount == round_money(full, currency):
        return f"{covered_days} of {period_days} days, owed in full (never prorated) = {money}"
    return f"Prorated {covered_days} of {period_days} days: {format_money(full, currency)} × {covered_days}/{period_days} = {money}"


def _day_span(start: datetime, end: datetime, time_zone: str) -> str:
    first = local_date(start, time_zone)
    last = local_date(end - timedelta(microseconds=1), time_zone)
    return f"{first:%b} {first.day}, {first.year} – {last:%b} {last.day}, {last.year}"


# -- subscription adjustments (invoicing/models/adjustments.py) --------------------------------------


def adjustment_applies_to_period(adjustment, start: datetime, end: datetime) -> bool:
    """Whether ``adjustment`` reaches a line serving [start, end), reading its window as the client does:
    a percentageDiscount's [from, to) overlaps it; any other type's (from, to] holds the line's END."""
    stop = adjustment.effective_to
    if adjustment.type == "percentageDiscount":
        return adjustment.effective_from < end and (stop is None or stop > start)
    return adjustment.effective_from < end and (stop is None or end <= stop)


def adjusted_quantity(
    adjustments: Iterable, price: Price, quantity: Decimal, *, end: datetime
) -> tuple[Decimal, list[str], list[str]]:
    """The billable quantity of ``price`` for a line ending at ``end`` after the usage discounts (summed,
    floored at 0) and then the quantity bounds (the greatest minimum, the least maximum), with one
    explanation per step ("1,000,000 − 200,000 discounted = 800,000") and the ids of the adjustments that
    reached the line (a delete reads them to tell a billed adjustment from one never billed)."""
    mine = [
        a
        for a in adjustments
        if a.target_price_id in (price.pk, price.overrides_id) and adjustment_applies_to_period(a, end, end)
    ]
    texts: list[str] = []
    waived = _sum(a.usage_discount for a in mine if a.type == "usageDiscount")
    if waived:
        reduced = max(CTX.subtract(quantity, waived), Decimal(0))
        texts.append(f"{format_quantity(quantity)} − {format_quantity(waived)} discounted = {format_quantity(reduced)}")
        quantity = reduced
    minimums = [a.minimum_quantity for a in mine if a.type == "minimumQuantity"]
    if minimums and quantity < max(minimums):
        texts.append(f"{format_quantity(quantity)} raised to the contracted minimum {format_quantity(max(minimums))}")
        quantity = max(minimums)
    maximums = [a.maximum_quantity for a in mine if a.type == "maximumQuantity"]
    if maximums and quantity > min(maximums):
        texts.append(f"{format_quantity(quantity)} capped at the contracted maximum {format_quantity(min(maximums))}")
        quantity = min(maximums)
    return quantity, texts, [a.pk for a in mine]


def percentage_discount_lines(
    adjustments: Iterable, lines: Iterable[LineDraft], *, currency: str, rounding: str, time_zone: str
) -> list[LineDraft]:
    """One discount line per charge (fee or usage line) and percentageDiscount whose [from, to) overlaps the
    line's service window: ``−amount × rate``, prorated by the local days of the overlap, rounded once."""
    discounts = [a for a in adjustments if a.type == "percentageDiscount"]
    out: list[LineDraft] = []
    for line in lines:
        if line.kind not in (LineKind.FEE, LineKind.USAGE) or not line.amount or line.service_start is None:
            continue
        start, end = line.service_start, line.service_end
        for adjustment in discounts:
            if not adjustment_applies_to_period(adjustment, start, end):
                continue
            first = local_date(max(start, adjustment.effective_from), time_zone)
            last = local_date(min(end, adjustment.effective_to or end), time_zone)
            days = (local_date(end, time_zone) - local_date(start, time_zone)).days
            covered = (last - first).days
            fraction = Decimal(1) if days <= 0 or covered >= days else Decimal(covered) / Decimal(days)
            amount = -round_money(
                CTX.multiply(CTX.multiply(line.amount, adjustment.percentage_discount), fraction), currency, rounding
            )
            if not amount:
                continue
            percent = decimal_string(CTX.multiply(adjustment.percentage_discount, HUNDRED))
            text = f"{percent}% of {format_money(line.amount, currency)}"
            if fraction != 1:
                text += f" × {covered}/{days} days"
            name = f" — {adjustment.description}" if adjustment.description else ""
            out.append(
                LineDraft(
                    kind=LineKind.DISCOUNT,
                    description=f"Discount {percent}%{name}: {line.description}",
                    amount=amount,
                    price=line.price,
                    service_start=start,
                    service_end=end,
                    explanation={
                        "text": f"{text} = {format_money(amount, currency)}",
                        "subscriptionAdjustmentId": adjustment.pk,
                    },
                )
            )
    return out


# -- the biller ------------------------------------------------------------------------------------


def _remember_by_subscription(cache: dict[str, list], subscription_ids: Iterable[str], rows: Iterable) -> None:
    """A chunk's rows loaded at once, by ``subscription_id``: every subscription of the chunk gets its list
    (empty when it has none), so the per-subscription read is never made for it."""
    for subscription_id in subscription_ids:
        cache[subscription_id] = []
    for row in rows:
        cache[row.subscription_id].append(row)


class Biller:
    """Composes invoices; caches price specs, prices per plan and usage prefetched for a run."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], PriceSpec] = {}
        self._prices: dict[tuple[str, str], PriceSet] = {}
        self._version_logs = VersionLogs()
        # (metric id, start, end) -> {customer id: quantity}
        self._usage: dict[tuple[str, datetime, datetime], dict[str, Decimal]] = {}
        # (metric id, dimension paths, start, end) -> {customer id: {values: quantity}}
        self._dimensional_usage: dict[tuple, dict[str, dict]] = {}
        # subscription id -> its SubscriptionAdjustment rows (a billing run loads a chunk's at once)
        self._adjustments: dict[str, list] = {}
        # subscription id -> its subscription-only intervals (SubscriptionPriceInterval rows, price selected)
        self._price_intervals: dict[str, list] = {}

    # caches
    def remember_prices(self, subscription_id: str, plan_id: str, prices: PriceSet) -> None:
        self._prices[(subscription_id, plan_id)] = prices

    def prices(self, subscription: Subscription, plan=None, *, at: datetime | None = None) -> list[Price]:
        """The prices that bill ``subscription`` on ``plan`` (its own by default); with ``at``, the start of
        the period to rate, from the plan version the subscription was on for that period, with the
        customer's negotiated rates whose window covers that period (``PriceSet.at`` for None)."""
        plan = plan or subscription.plan
        if at is not None and plan.pk == subscription.plan_id:
            version_id = subscription_version_at(subscription, at, self._version_logs)
            if version_id is not None and version_id != plan.default_version_id:
                key = (subscription.id, f"version:{version_id}")
                if key not in self._prices:
                    self._prices[key] = version_price_set_for_customer(
                        version_id=version_id, plan_id=plan.pk, customer_id=subscription.customer_id
                    )
                return self._prices[key].at(at)
        key = (subscription.id, plan.id)
        if key not in self._prices:
            price_set = plan_price_set_for_customer(plan=plan, customer=subscription.customer)
            # The metrics' filters in one query, so that rating usage on demand (previews, estimates, a
            # refresh) costs one usage query per metric and nothing else per metric.
            metrics = [
                p.billable_metric for p in (*price_set.plan_prices, *price_set.negotiated) if p.billable_metric_id
            ]
            prefetch_related_objects(metrics, "filters")
            self._prices[key] = price_set
        return self._prices[key].at(at)

    def cached_prices(self) -> Iterator[Price]:
        """Every price read so far (plan prices and negotiated rates, every window)."""
        for price_set in self._prices.values():
            yield from price_set.plan_prices
            yield from price_set.negotiated

    def remember_adjustments(self, subscription_ids: Iterable[str], adjustments: Iterable) -> None:
        _remember_by_subscription(self._adjustments, subscription_ids, adjustments)

    def adjustments(self, subscription: Subscription) -> list:
        if subscription.id not in self._adjustments:
            self._adjustments[subscription.id] = list(subscription.adjustments.all())
        return self._adjustments[subscription.id]

    def remember_price_intervals(self, subscription_ids: Iterable[str], rows: Iterable) -> None:
        _remember_by_subscription(self._price_intervals, subscription_ids, rows)

    def price_intervals(self, subscription: Subscription) -> list:
        """The subscription's subscription-only intervals (``SubscriptionPriceInterval``), start first."""
        if subscription.id not in self._price_intervals:
            self._price_intervals[subscription.id] = list(
                subscription.price_intervals.select_related("price__billable_metric").order_by(
                    "start_date", "price_key"
                )
            )
        return self._price_intervals[subscription.id]

    def interval_spec(self, interval, currency: str) -> PriceSpec:
        """The engine spec of a subscription-only interval: its catalog price's, at the interval's own rate."""
        return replace(self.spec(interval.price, currency), unit_price=interval.unit_price)

    def spec(self, price: Price, currency: str) -> PriceSpec:
        key = (price.id, currency)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = price_spec_from_price(price, currency=currency)
        return spec

    def remember_usage(self, metric_id: str, start: datetime, end: datetime, by_customer: dict) -> None:
        self._usage[(metric_id, start, end)] = {str(key): value for key, value in by_customer.items()}

    def remember_dimensional_usage(self, need: tuple, by_customer: dict) -> None:
        """``need`` is one of ``dimensional_usage_needs``'s (metric id, paths, start, end)."""
        self._dimensional_usage[need] = {str(key): value for key, value in by_customer.items()}

    def _dimensional_input(self, price: Price, subscription: Subscription, start: datetime, end: datetime) -> dict:
        need = (price.billable_metric_id, dimension_paths(price), start, end)
        known = self._dimensional_usage.get(need)
        if known is None:
            known = usage_source.quantities_by_customer_and_values(
                metric=price.billable_metric, start=start, end=end, customers=[subscription.customer], paths=need[1]
            )
        return known.get(subscription.customer_id, {})

    def _usage_input(self, price: Price, subscription: Subscription, start: datetime, end: datetime):
        aggregated = None
        if not usage_source.needs_event_values(price):
            known = self._usage.get((price.billable_metric_id, start, end))
            if known is not None:
                aggregated = known.get(subscription.customer_id, Decimal(0))
        return usage_source.usage_input(
            price, customer=subscription.customer, start=start, end=end, aggregated=aggregated
        )

    # lines
    def fee_line(
        self,
        price: Price,
        subscription: Subscription,
        *,
        period: Period,
        active_from: datetime | None = None,
        active_until: datetime | None = None,
        credit: bool = False,
        currency: str,
        interval=None,
    ) -> LineDraft | None:
        """A fee for ``period``, prorated by the local days it is active (obligations never prorated).
        ``interval``: a subscription-only interval (``SubscriptionPriceInterval``) billing ``price`` at its own
        rate and quantity."""
        time_zone = subscription.customer.time_zone
        rounding = subscription.merchant.rounding_mode
        quantity = interval.quantity if interval is not None else Decimal(price.quantity)
        result = rate(self.interval_spec(interval, currency) if interval else self.spec(price, currency), quantity)
        one_off = is_one_off(price)
        if one_off:
            fraction_days = None
            amount = round_money(result.amount, currency, rounding)
        else:
            proration = prorate(
                result.amount,
                period_start=local_date(period.start, time_zone),
                period_end=local_date(period.end, time_zone),
                active_from=local_date(active_from, time_zone) if active_from else None,
                active_until=local_date(active_until, time_zone) if active_until else None,
                obligation=credit is False and price.is_obligation,
            )
            if proration.fraction == 0:
                return None
            fraction_days = (proration.covered_days, proration.period_days)
            amount = proration.rounded_amount(currency, rounding)
        start = active_from if active_from and active_from > period.start else period.start
        end = active_until if active_until and active_until < period.end else period.end
        description = price.invoice_display_name
        if not one_off:
            description += f" ({_day_span(start, end, time_zone)})"
        if fraction_days and fraction_days[0] != fraction_days[1]:
            description += f", prorated {fraction_days[0]}/{fraction_days[1]} days"
        explanation = explanation_of(result)
        if fraction_days:
            explanation["proration"] = {
                "covered_days": fraction_days[0],
                "period_days": fraction_days[1],
                "amount": decimal_string(amount),
                "description": proration_text(
                    covered_days=fraction_days[0],
                    period_days=fraction_days[1],
                    full=result.amount,
                    amount=amount,
                    currency=currency,
                ),
            }
        if credit:
            description = f"Credit for unused time: {description}"
            amount = -amount
        if interval is not None:
            explanation["subscriptionIntervalId"] = interval.pk
        return LineDraft(
            kind=LineKind.CREDIT if credit else LineKind.FEE,
            description=description,
            amount=amount,
            price=price,
            quantity=quantity,
            unit_price=interval.unit_price if interval is not None else price.unit_price,
            service_start=start if not one_off else subscription.started_at,
            service_end=end if not one_off else subscription.started_at,
            explanation=explanation,
        )

    def usage_line(
        self,
        price: Price,
        subscription: Subscription,
        *,
        start: datetime,
        end: datetime,
        currency: str,
        period_end: datetime | None = None,
        interval=None,
    ) -> LineDraft:
        """One line per metered price: the engine's result over [start, end), rounded once, its quantity
        corrected first by the subscription's usage discounts and quantity bounds for a period ending at
        ``period_end`` (default ``end``). ``interval``: a subscription-only interval billing ``price`` at its
        own rate."""
        spec = self.interval_spec(interval, currency) if interval is not None else self.spec(price, currency)
        usage = self._usage_input(price, subscription, start, end)
        adjusted: list[str] = []
        applied: list[str] = []
        if isinstance(usage, Decimal):
            usage, adjusted, applied = adjusted_quantity(
                self.adjustments(subscription), price, usage, end=period_end or end
            )
        result = rate(spec, usage)
        amount = round_money(result.amount, currency, subscription.merchant.rounding_mode)
        unit = spec.unit_name
        explanation = explanation_of(result)
        if applied:
            explanation["subscriptionAdjustmentIds"] = applied
        if adjusted:
            explanation["adjustments"] = [f"{text} {unit}" for text in adjusted]
            explanation["text"] = "; ".join(explanation["adjustments"]) + "; " + explanation["text"]
        if interval is not None:
            explanation["subscriptionIntervalId"] = interval.pk
        return LineDraft(
            kind=LineKind.USAGE,
            description=f"{price.invoice_display_name}: {format_quantity(result.quantity)} {unit} "
            f"({_day_span(start, end, subscription.customer.time_zone)})",
            amount=amount,
            price=price,
            quantity=result.quantity,
            unit_price=spec.unit_price if spec.package_size is None else None,
            service_start=start,
            service_end=end,
            explanation=explanation,
        )

    def usage_lines(
        self,
        price: Price,
        subscription: Subscription,
        *,
        start: datetime,
        end: datetime,
        currency: str,
        period_end: datetime | None = None,
    ) -> list[LineDraft]:
        """The usage lines of a metered price: one (``usage_line``), or one per combination of a price with
        rates per event property (``invoicing/dimensional.py``), each rounded once."""
        if not usage_source.is_dimensional(price):
            return [
                self.usage_line(price, subscription, start=start, end=end, currency=currency, period_end=period_end)
            ]
        spec = price_dimensional_spec(price, currency=currency)
        usage = self._dimensional_input(price, subscription, start, end)
        _, lines = combination_lines(spec, usage, rounding=subscription.merchant.rounding_mode, explain=explanation_of)
        span = _day_span(start, end, subscription.customer.time_zone)
        return [
            LineDraft(
                kind=LineKind.USAGE,
                description=line_description(price.invoice_display_name, line, spec.unit_name, span),
                amount=line.amount,
                price=price,
                quantity=line.quantity,
                unit_price=line.unit_price,
                service_start=start,
                service_end=end,
                explanation=line.explanation,
            )
            for line in lines
        ]

    def usage_needs(
        self, subscription: Subscription, period: Period, *, charge_from: datetime | None = None
    ) -> list[tuple[str, datetime, datetime]]:
        """The (metric, start, end) windows a recurring invoice of ``period`` aggregates, for bulk prefetch."""
        start, end = self._arrears_window(subscription, period, charge_from)
        if start >= end:
            return []
        return [
            (price.billable_metric_id, start, end)
            for price in self.prices(subscription, at=period.start)
            if price.billable_metric_id
            and not usage_source.needs_event_values(price)
            and not usage_source.is_dimensional(price)
        ]

    def dimensional_usage_needs(
        self, subscription: Subscription, period: Period, *, charge_from: datetime | None = None
    ) -> list[tuple[str, tuple[str, ...], datetime, datetime]]:
        """The (metric, dimension paths, start, end) a recurring invoice of ``period`` aggregates grouped by
        the values of a dimensional price, for bulk prefetch (one query per metric, paths and window)."""
        start, end = self._arrears_window(subscription, period, charge_from)
        if start >= end:
            return []
        return [
            (price.billable_metric_id, dimension_paths(price), start, end)
            for price in self.prices(subscription, at=period.start)
            if usage_source.is_dimensional(price)
        ]

    def _arrears_window(
        self, subscription: Subscription, period: Period, charge_from: datetime | None
    ) -> tuple[datetime, datetime]:
        return usage_window(subscription, period, charge_from)

    # invoices
    def compose_opening(self, subscription: Subscription) -> ComposedInvoice | None:
        """In-advance fees of the first period and one-off fees, billed at the start; None if there are none."""
        plan = subscription.plan
        period = subscription_period_at(subscription, subscription.started_at)
        start, end = service_window(subscription, period)
        prices = [p for p in self.prices(subscription, at=period.start) if is_in_advance_fee(p) or is_one_off(p)]
        if not prices:
            return None
        lines = []
        for price in prices:
            if is_one_off(price):
                line = self.fee_line(price, subscription, period=period, currency=plan.currency)
            else:
                active_from = max(start, subscription.trial_ends_at or start)
                line = self.fee_line(
                    price,
                    subscription,
                    period=period,
                    active_from=active_from,
                    active_until=end if end < period.end else None,
                    currency=plan.currency,
                )
            if line is not None:
                lines.append(line)
        return self.finish(subscription, InvoiceKind.OPENING, start, end, lines, plan_terms=False)

    def compose_recurring(
        self,
        subscription: Subscription,
        period: Period,
        *,
        charge_from: datetime | None = None,
        next_plan=None,
        until: datetime | None = None,
        manual: Iterable = (),
        with_usage: bool = True,
        threshold_billed: Iterable[LineDraft] = (),
    ) -> ComposedInvoice:
        """The invoice closing ``period``: its in-arrears fees and usage, credits for an early termination,
        the next period's in-advance fees (from ``next_plan`` when a downgrade takes effect) and the
        pending ``manual`` line items (``ManualLineItem`` rows) the close picks up.

        ``charge_from`` is when the current plan started charging inside the period (an upgrade);
        ``until`` cuts usage short for a preview of a period still running; ``with_usage=False`` leaves the
        usage lines out (a projection of fixed charges: nothing is read from the usage store);
        ``threshold_billed``: lines taking off what the period's threshold invoices already billed.
        """
        plan = subscription.plan
        currency = plan.currency
        start, end = service_window(subscription, period)
        usage_start, usage_end = self._arrears_window(subscription, period, charge_from)
        if until is not None:
            usage_end = max(usage_start, min(usage_end, until))
        lines: list[LineDraft] = []
        prices = self.prices(subscription, at=period.start)
        if usage_start < usage_end:
            for price in prices if with_usage else ():
                if price.billable_metric_id:
                    lines.extend(
                        self.usage_lines(
                            price, subscription, start=usage_start, end=usage_end, currency=currency, period_end=end
                        )
                    )
            for price in prices:
                if is_in_arrears_fee(price):
                    line = self.fee_line(
                        price,
                        subscription,
                        period=period,
                        active_from=usage_start,
                        active_until=end if end < period.end else None,
                        currency=currency,
                    )
                    if line is not None:
                        lines.append(line)
        stop = subscription_end(subscription)
        if stop is not None and stop < period.end:
            # Terminated inside the period: the in-advance fees billed for it are credited for the
            # days not used (obligations are owed whole and never credited).
            credit_from = max(stop, subscription.trial_ends_at or stop)
            for price in prices:
                if is_in_advance_fee(price) and not price.is_obligation and credit_from < period.end:
                    line = self.fee_line(
                        price, subscription, period=period, active_from=credit_from, credit=True, currency=currency
                    )
                    if line is not None:
                        lines.append(line)
        elif stop is None or stop > period.end:
            following = subscription_next_period(subscription, period)
            advance_plan = next_plan or plan
            for price in self.prices(subscription, advance_plan, at=following.start):
                if is_in_advance_fee(price):
                    active_from = (
                        subscription.trial_ends_at
                        if (subscription.trial_ends_at and subscription.trial_ends_at > following.start)
                        else None
                    )
                    line = self.fee_line(
                        price,
                        subscription,
                        period=following,
                        active_from=active_from,
                        active_until=stop if stop is not None and stop < following.end else None,
                        currency=advance_plan.currency,
                    )
                    if line is not None:
                        lines.append(line)
        lines.extend(
            self.price_interval_lines(subscription, period, currency=currency, until=until, with_usage=with_usage)
        )
        lines.extend(
            percentage_discount_lines(
                self.adjustments(subscription),
                lines,
                currency=currency,
                rounding=subscription.merchant.rounding_mode,
                time_zone=subscription.customer.time_zone,
            )
        )
        lines.extend(manual_line_draft(item) for item in manual)
        lines.extend(threshold_billed)  # what the period's threshold invoices billed (invoicing/THRESHOLDS.md)
        return self.finish(subscription, InvoiceKind.RECURRING, start, end, lines, plan_terms=True)

    def compose_plan_change(
        self,
        subscription: Subscription,
        *,
        new_plan,
        at: datetime,
        charge_from: datetime | None = None,
        threshold_billed: Iterable[LineDraft] = (),
    ) -> ComposedInvoice:
        """Upgrade now: settle the old plan up to ``at``, credit its unused in-advance fees, charge the new
        plan's in-advance fees for the rest of the period (both prorated by day).

        ``charge_from`` is when the old plan itself started charging inside the period (an earlier
        upgrade): its usage and in-arrears fees are billed from there, never again before;
        ``threshold_billed``: what the old plan's threshold invoices of the period already billed."""
        plan = subscription.plan
        period = subscription_period_at(subscription, at)
        start, _ = service_window(subscription, period)
        lines: list[LineDraft] = []
        old_prices = self.prices(subscription, at=period.start)
        usage_start = max(start, subscription.trial_ends_at or start, charge_from or start)
        if usage_start < at:
            for price in old_prices:
                if price.billable_metric_id:
                    lines.extend(
                        self.usage_lines(price, subscription, start=usage_start, end=at, currency=plan.currency)
                    )
                elif is_in_arrears_fee(price):
                    line = self.fee_line(
                        price,
                        subscription,
                        period=period,
                        active_from=usage_start,
                        active_until=at,
                        currency=plan.currency,
                    )
                    if line is not None:
                        lines.append(line)
        active_from = max(at, subscription.trial_ends_at or at)
        for price in old_prices:
            if is_in_advance_fee(price) and not price.is_obligation:
                line = self.fee_line(
                    price, subscription, period=period, active_from=active_from, credit=True, currency=plan.currency
                )
                if line is not None:
                    lines.append(line)
        for price in self.prices(subscription, new_plan):
            if is_in_advance_fee(price) or is_one_off(price):
                line = self.fee_line(
                    price, subscription, period=period, active_from=active_from, currency=new_plan.currency
                )
                if line is not None:
                    lines.append(line)
        lines.extend(threshold_billed)
        return self.finish(subscription, InvoiceKind.PLAN_CHANGE, start, at, lines, plan_terms=False)

    def refresh_usage_lines(self, line, subscription: Subscription, currency: str) -> list[LineDraft]:
        """The usage lines a stored usage line stands for now (a dimensional price's every combination); a
        subscription-only interval's line at that interval's rate."""
        interval_id = line.explanation.get("subscriptionIntervalId") if line.explanation else None
        if interval_id:
            interval = next(row for row in self.price_intervals(subscription) if row.pk == interval_id)
            return [
                self.usage_line(
                    line.price,
                    subscription,
                    start=line.service_start,
                    end=line.service_end,
                    currency=currency,
                    interval=interval,
                )
            ]
        return self.usage_lines(
            line.price, subscription, start=line.service_start, end=line.service_end, currency=currency
        )

    def price_interval_lines(
        self,
        subscription: Subscription,
        period: Period,
        *,
        currency: str,
        until: datetime | None = None,
        with_usage: bool = True,
    ) -> list[LineDraft]:
        """The lines of the subscription's subscription-only intervals on the invoice closing ``period``.

        Each bills inside its own window [start, end), clipped to the service window and the trial:

        - a metered price: its usage inside the window, at the interval's rate (``until`` cuts a preview);
        - an in-arrears fee: the days of ``period`` it covers, prorated by day as the plan's fees are;
        - an in-advance fee: its first period (the one holding its start) on that period's own close — it did
          not exist when the period before closed — prorated from its start; every later period ahead, on the
          close of the period before, prorated up to its end; the period a termination cuts is credited for
          the days not used, as the plan's in-advance fees are.

        The plan change of a period does not reach them: they are the subscription's, not its plan's."""
        rows = self.price_intervals(subscription)
        if not rows:
            return []
        start, end = service_window(subscription, period)
        start = max(start, subscription.trial_ends_at or start)
        stop = subscription_end(subscription)
        lines: list[LineDraft] = []
        for row in rows:
            price = row.price
            first = max(start, row.start_date)
            last = min(end, row.end_date) if row.end_date is not None else end
            if price.billable_metric_id:
                usage_end = min(last, until) if until is not None else last
                if with_usage and first < usage_end:
                    lines.append(
                        self.usage_line(
                            price, subscription, start=first, end=usage_end, currency=currency, interval=row
                        )
                    )
                continue
            if not is_in_advance_fee(price) or period.start <= row.start_date < period.end:
                # In arrears, or an in-advance fee's first period: the days of this period it covers.
                if first < last:
                    line = self.fee_line(
                        price,
                        subscription,
                        period=period,
                        active_from=first,
                        active_until=last if last < period.end else None,
                        currency=currency,
                        interval=row,
                    )
                    if line is not None:
                        lines.append(line)
            if not is_in_advance_fee(price):
                continue
            if stop is not None and stop < period.end:
                # Terminated inside a period this fee was billed ahead for: credit the days not used.
                # (``last`` stops at the termination: the days billed ahead run to the interval's own end.)
                billed_until = min(period.end, row.end_date) if row.end_date is not None else period.end
                if row.start_date < period.start and not price.is_obligation and billed_until > stop:
                    line = self.fee_line(
                        price,
                        subscription,
                        period=period,
                        active_from=max(stop, start),
                        active_until=billed_until if billed_until < period.end else None,
                        credit=True,
                        currency=currency,
                        interval=row,
                    )
                    if line is not None:
                        lines.append(line)
                continue
            following = subscription_next_period(subscription, period)
            ends = [moment for moment in (row.end_date, stop) if moment is not None]
            until_end = min(ends) if ends else None
            if row.start_date < following.start and (until_end is None or until_end > following.start):
                active_from = subscription.trial_ends_at
                line = self.fee_line(
                    price,
                    subscription,
                    period=following,
                    active_from=active_from if active_from and active_from > following.start else None,
                    active_until=until_end if until_end is not None and until_end < following.end else None,
                    currency=currency,
                    interval=row,
                )
                if line is not None:
                    lines.append(line)
        return lines

    # totals
    def finish(
        self,
        subscription: Subscription,
        kind: str,
        period_start: datetime,
        period_end: datetime,
        lines: list[LineDraft],
        *,
        plan_terms: bool,
        plan=None,
        tax_rate: Decimal | None = None,
        tax_behavior: str | None = None,
    ) -> ComposedInvoice:
        plan = plan or subscription.plan
        return finish_lines(
            kind=kind,
            lines=lines,
            currency=plan.currency,
            rounding=subscription.merchant.rounding_mode,
            tax_rate=tax_rate_for(subscription) if tax_rate is None else tax_rate,
            tax_behavior=tax_behavior or plan.tax_behavior,
            discount_percent=plan.discount_percent if plan_terms else None,
            minimum=plan.minimum_commitment if plan_terms else None,
            period_start=period_start,
            period_end=period_end,
        )


def _sum(amounts: Iterable[Decimal]) -> Decimal:
    total = Decimal(0)
    for amount in amounts:
        total = CTX.add(total, amount)
    return total


def finish_lines(
    *,
    kind: str,
    lines: list[LineDraft],
    currency: str,
    rounding: str,
    tax_rate: Decimal,
    tax_behavior: str,
    discount_percent: Decimal | None,
    minimum: Decimal | None,
    period_start: datetime,
    period_end: datetime,
) -> ComposedInvoice:
    """Add the plan discount, the plan minimum true-up and tax to already-rounded lines; total them.

    - Discount: ``discount_percent`` of the fee and usage lines, rounded once (apply_subtotal_discount).
    - Minimum: the plan's minimum commitment against the discounted charges (apply_plan_minimum).
    - Tax, exclusive: ``tax = round(base × rate / 100)``, ``total = base + tax``.
    - Tax, inclusive: lines are gross; ``tax = round(base × rate / (100 + rate))`` is extracted,
      ``subtotal = base − tax`` and ``total = base``.
    The tax line is informational on inclusive invoices; either way ``total = subtotal + tax``.
    """
    # A subscription adjustment's discount lines (marked in their explanation) are composed, not plan terms.
    lines = [
        line
        for line in lines
        if line.kind not in (LineKind.DISCOUNT, LineKind.MINIMUM, LineKind.TAX, LineKind.PREPAID)
        or "subscriptionAdjustmentId" in line.explanation
    ]
    zero = round_money(Decimal(0), currency)
    charges = _sum(line.amount for line in lines if line.kind in (LineKind.FEE, LineKind.USAGE))
    # Threshold billing: what earlier threshold invoices of the period billed, which took their own discount.
    billed = _sum(line.amount for line in lines if line.kind == LineKind.THRESHOLD_BILLED)
    discount = zero
    if discount_percent:
        result = apply_subtotal_discount(
            CTX.add(charges, billed), percent=discount_percent, currency=currency, rounding=rounding
        )
        discount = result.discount
        if discount:
            lines.append(
                LineDraft(
                    kind=LineKind.DISCOUNT,
                    description=f"Plan discount {decimal_string(discount_percent)}%",
                    amount=discount,
                    explanation={
                        "text": f"{decimal_string(discount_percent)}% of {format_money(result.subtotal, currency)}"
                    },
                )
            )
    if minimum is not None:
        # The minimum is the period's: with threshold invoices, compared with the whole period's discounted
        # charges (as one invoice would have billed them), not with what is left on this one.
        period_discount = discount
        if billed and discount_percent:
            period_discount = apply_subtotal_discount(
                charges, percent=discount_percent, currency=currency, rounding=rounding
            ).discount
        result = apply_plan_minimum(
            [CTX.add(charges, period_discount)], minimum=minimum, currency=currency, rounding=rounding
        )
        if result.minimum_true_up:
            lines.append(
                LineDraft(
                    kind=LineKind.MINIMUM,
                    description=f"Minimum commitment true-up (minimum {format_money(result.total, currency)})",
                    amount=result.minimum_true_up,
                    explanation={
                        "text": f"minimum {format_money(result.total, currency)} − charges "
                        f"{format_money(CTX.add(charges, period_discount), currency)}"
                    },
                )
            )
    base = _sum(line.amount for line in lines)
    tax = zero
    if tax_rate:
        if tax_behavior == TaxBehavior.INCLUSIVE:
            tax = round_money(CTX.divide(CTX.multiply(base, tax_rate), CTX.add(HUNDRED, tax_rate)), currency, rounding)
            gross = format_money(base, currency)
            text = f"{decimal_string(tax_rate)}% included in {gross}: {gross} × {decimal_string(tax_rate)} / (100 + {decimal_string(tax_rate)})"
        else:
            tax = round_money(CTX.divide(CTX.multiply(base, tax_rate), HUNDRED), currency, rounding)
            text = f"{decimal_string(tax_rate)}% of {format_money(base, currency)}"
        lines.append(
            LineDraft(
                kind=LineKind.TAX,
                description=f"Tax {decimal_string(tax_rate)}% ({'included' if tax_behavior == TaxBehavior.INCLUSIVE else 'added'})",
                amount=tax,
                explanation={"text": text},
            )
        )
    subtotal = CTX.subtract(base, tax) if tax_behavior == TaxBehavior.INCLUSIVE else base
    total = CTX.add(subtotal, tax)
    return ComposedInvoice(
        kind=kind,
        currency=currency,
        tax_behavior=tax_behavior,
        tax_rate=tax_rate,
        period_start=period_start,
        period_end=period_end,
        lines=lines,
        subtotal=subtotal,
        tax=tax,
        total=total,
        amount_due=max(total, zero),
    )


# -- real-time billing: settlement against prepaid debits ------------------------------------------


def apply_prepaid(composed: ComposedInvoice, *, covered_by_credit: Decimal, rounding: str) -> ComposedInvoice:
    """Show what prepaid credit already paid of the period's usage and take it off the amount due.

    The invoice keeps the full usage lines (with their explanations), discount, minimum and tax —
    ``total`` is the period's price — and gains a last line "Paid from prepaid balance" =
    −round(``covered_by_credit``), the real-time debits the credit covered. It is a payment applied
    after tax, not a discount: it changes neither the tax base nor the total, only
    ``amount_due = max(total − paid from credit, 0)``. What the credit did not cover (overage) stays due.
    """
    paid = round_money(covered_by_credit, composed.currency, rounding)
    lines = [line for line in composed.lines if line.kind != LineKind.PREPAID]
    zero = round_money(Decimal(0), composed.currency)
    if paid:
        lines.append(
            LineDraft(
                kind=LineKind.PREPAID,
                description="Paid from prepaid balance",
                amount=-paid,
                explanation={
                    "text": "usage debited in real time and covered by prepaid credit: "
                    f"{format_money(covered_by_credit, composed.currency)}"
                },
            )
        )
    composed.lines = lines
    composed.amount_due = max(CTX.subtract(composed.total, paid), zero)
    return composed

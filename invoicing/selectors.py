"""Reads of invoicing: invoices for a period, upcoming invoice previews, late usage not billed, what is left
to credit on an invoice, what terminating a subscription now would bill, the running usage cost of
real-time subscriptions."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from catalog.models import Customer, Subscription, SubscriptionStatus
from catalog.pricing import rate, round_money
from wallets.selectors import period_debits_so_far

from .calculation import Biller, ComposedInvoice, explanation_of, subscription_now, subscription_period_at
from .models import (
    OPEN_STATUSES,
    SETTLEMENT_LINE_KINDS,
    CreditNoteLine,
    CreditNoteStatus,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
)
from .periods import Period
from .realtime.lookup import realtime_subscriptions_named
from .usage import usage_input

BILLED = (*OPEN_STATUSES, InvoiceStatus.PAID)


def invoice_list_for_period(*, merchant, start: datetime, end: datetime) -> QuerySet[Invoice]:
    """Invoices (any state) whose period starts in [start, end), for the CSV export."""
    return (
        Invoice.objects.filter(merchant=merchant, period_start__gte=start, period_start__lt=end)
        .select_related("customer", "subscription")
        .order_by("period_start", "number", "id")
    )


@dataclass(frozen=True)
class _CurrentPeriod:
    subscription: Subscription
    moment: datetime  # now by the subscription's own clock
    period: Period
    charge_from: datetime | None  # a plan change inside the period: its charges start there


def _current_period(subscription: Subscription, now: datetime) -> _CurrentPeriod | None:
    """The active, started subscription's current period as the previews compose it (None otherwise)."""
    subscription = Subscription.objects.select_related("customer", "plan", "merchant", "test_clock").get(
        pk=subscription.pk
    )
    if subscription.status != SubscriptionStatus.ACTIVE:
        return None
    moment = subscription.test_clock.current_time if subscription.test_clock_id else now
    if moment < subscription.started_at:
        return None
    period = subscription_period_at(subscription, moment)
    last_change = subscription.plan_changes.filter(applied_at__isnull=False).order_by("-effective_at").first()
    charge_from = last_change.effective_at if last_change and period.start < last_change.effective_at else None
    return _CurrentPeriod(subscription, moment, period, charge_from)


def invoice_preview(*, subscription: Subscription, now: datetime) -> ComposedInvoice | None:
    """What the subscription's current period would bill if it closed now (nothing is written)."""
    current = _current_period(subscription, now)
    if current is None:
        return None
    return Biller().compose_recurring(
        current.subscription, current.period, charge_from=current.charge_from, until=current.moment
    )


def customer_invoice_previews(*, customer: Customer, now: datetime) -> list[tuple[Subscription, ComposedInvoice]]:
    previews = []
    for subscription in customer.subscriptions.filter(status=SubscriptionStatus.ACTIVE).order_by("started_at"):
        preview = invoice_preview(subscription=subscription, now=now)
        if preview is not None:
            previews.append((subscription, preview))
    return previews


@dataclass(frozen=True)
class LateUsage:
    """Usage of an issued invoice's period that arrived after it was issued."""

    invoice: Invoice
    line: InvoiceLine
    billed_quantity: Decimal
    billed_amount: Decimal
    current_quantity: Decimal
    current_amount: Decimal
    explanation: dict

    @property
    def extra_quantity(self) -> Decimal:
        return self.current_quantity - self.billed_quantity

    @property
    def extra_amount(self) -> Decimal:
        return self.current_amount - self.billed_amount


def _billed_lines(invoices: QuerySet[Invoice]) -> list[InvoiceLine]:
    return list(
        InvoiceLine.objects.filter(invoice__in=invoices, kind=LineKind.USAGE, price__isnull=False)
        .select_related("invoice__customer", "invoice__merchant", "price__billable_metric", "price__fee")
        .prefetch_related("price__tiers", "price__dynamic_rates")
        .order_by("invoice__period_start", "position")
    )


def late_usage_for_invoices(*, invoices: QuerySet[Invoice]) -> list[LateUsage]:
    """For each usage line of these issued invoices: the usage of its window now vs. what was billed,
    counting adjustment invoices already raised for it (void ones excepted)."""
    lines = _billed_lines(invoices.filter(status__in=BILLED))
    adjusted: dict[tuple, tuple[Decimal, Decimal]] = defaultdict(lambda: (Decimal(0), Decimal(0)))
    for row in (
        InvoiceLine.objects.filter(invoice__adjusts__in=[line.invoice_id for line in lines], kind=LineKind.ADJUSTMENT)
        .exclude(invoice__status=InvoiceStatus.VOID)
        .values_list("invoice__adjusts_id", "price_id", "service_start", "quantity", "amount")
    ):
        key = row[:3]
        quantity, amount = adjusted[key]
        adjusted[key] = (max(quantity, row[3] or Decimal(0)), amount + row[4])
    biller = Biller()
    late = []
    for line in lines:
        invoice = line.invoice
        spec = biller.spec(line.price, invoice.currency)
        result = rate(
            spec, usage_input(line.price, customer=invoice.customer, start=line.service_start, end=line.service_end)
        )
        adjusted_quantity, adjusted_amount = adjusted[(invoice.id, line.price_id, line.service_start)]
        billed_quantity = max(line.quantity or Decimal(0), adjusted_quantity)
        if result.quantity == billed_quantity:
            continue
        late.append(
            LateUsage(
                invoice=invoice,
                line=line,
                billed_quantity=billed_quantity,
                billed_amount=line.amount + adjusted_amount,
                current_quantity=result.quantity,
                current_amount=round_money(result.amount, invoice.currency, invoice.merchant.rounding_mode),
                explanation=explanation_of(result),
            )
        )
    return late


def late_usage_for_invoice(*, invoice: Invoice) -> list[LateUsage]:
    return late_usage_for_invoices(invoices=Invoice.objects.filter(pk=invoice.pk))


def late_usage_for_customer(*, customer: Customer, limit: int = 24) -> list[LateUsage]:
    """Late usage not billed on the customer's latest ``limit`` issued recurring/plan-change invoices."""
    recent = (
        Invoice.objects.filter(
            customer=customer, status__in=BILLED, kind__in=[InvoiceKind.RECURRING, InvoiceKind.PLAN_CHANGE]
        )
        .order_by("-period_start")
        .values_list("pk", flat=True)[:limit]
    )
    return late_usage_for_invoices(invoices=Invoice.objects.filter(pk__in=list(recent)))


def invoice_estimate(*, subscription: Subscription, now: datetime) -> ComposedInvoice | None:
    """What the closing invoice of the subscription's current period would bill with the usage known now:
    like ``invoice_preview`` but over the whole period (events already recorded for later in the period —
    on a test clock, ahead of the clock — are counted). The API's pending ledger lines read this."""
    subscription = Subscription.objects.select_related("customer", "plan", "merchant", "test_clock").get(
        pk=subscription.pk
    )
    if subscription.status != SubscriptionStatus.ACTIVE:
        return None
    moment = subscription.test_clock.current_time if subscription.test_clock_id else now
    if moment < subscription.started_at:
        return None
    period = subscription_period_at(subscription, moment)
    last_change = subscription.plan_changes.filter(applied_at__isnull=False).order_by("-effective_at").first()
    charge_from = last_change.effective_at if last_change and period.start < last_change.effective_at else None
    return Biller().compose_recurring(subscription, period, charge_from=charge_from)


@dataclass(frozen=True)
class CreditableLine:
    """An invoice line a credit note may credit, and how much earlier credit notes already took."""

    line: InvoiceLine
    credited: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.line.amount - self.credited


def invoice_creditable_lines(*, invoice: Invoice) -> list[CreditableLine]:
    """Every charge line of ``invoice`` (not tax: tax is credited with its base; not the settlement lines:
    prepaid and applied credit), in invoice order, with the amount already credited on it by credit notes
    not voided; ``credit_note_issue`` credits at most ``remaining`` per line."""
    credited: dict[int, Decimal] = defaultdict(Decimal)
    for line_id, amount in CreditNoteLine.objects.filter(
        credit_note__invoice=invoice, credit_note__status=CreditNoteStatus.ISSUED
    ).values_list("invoice_line_id", "amount"):
        credited[line_id] += amount
    return [
        CreditableLine(line, credited[line.id])
        for line in invoice.lines.exclude(kind__in=(LineKind.TAX, *SETTLEMENT_LINE_KINDS)).order_by("position", "pk")
    ]


def subscription_termination_preview(*, subscription: Subscription, now: datetime) -> ComposedInvoice | None:
    """The final invoice terminating ``subscription`` now would write for its current period (usage and
    in-arrears fees up to now, unused in-advance days credited), composed in memory: nothing is saved.
    None when the subscription is not active or has not started (by its own clock)."""
    current = _current_period(subscription, now)
    if current is None:
        return None
    subscription = current.subscription
    subscription.terminated_at = current.moment  # in memory only, as subscription_terminate sets it
    return Biller().compose_recurring(subscription, current.period, charge_from=current.charge_from)


# -- real-time usage cost --------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodUsageCost:
    """A real-time subscription's current period: the usage cost debited so far (exact as of the last
    accepted event), how much prepaid credit covered and what is left for the invoice (overage)."""

    subscription_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    debited: Decimal
    covered_by_credit: Decimal
    overage: Decimal


def customer_usage_cost(*, customer: Customer, now: datetime, currency: str | None = None) -> list[PeriodUsageCost]:
    """The current period's usage cost of each of the customer's active real-time subscriptions, from
    the running debit totals (the debits are the running price): one query for the subscriptions and
    one for their totals, whatever the number of events, debits or subscriptions."""
    # The hot path's prepared statement (no ORM query building: this read must answer in < 10 ms).
    subscriptions = sorted(
        (
            subscription
            for subscription in realtime_subscriptions_named(
                merchant_id=customer.merchant_id, subjects={customer.pk}, externals=set()
            )
            if not currency or subscription.plan.currency == currency
        ),
        key=lambda subscription: (subscription.started_at, subscription.pk),
    )
    periods = [subscription_period_at(sub, subscription_now(sub, now)) for sub in subscriptions]
    # Every plan's part of each period (an upgrade splits it): what was debited, from the running
    # totals (one query for all the subscriptions, whatever the number of debits).
    so_far = period_debits_so_far(
        periods=[(sub.pk, period.start, period.end) for sub, period in zip(subscriptions, periods, strict=True)]
    )
    costs = []
    for subscription, period in zip(subscriptions, periods, strict=True):
        debits = so_far[subscription.pk]
        costs.append(
            PeriodUsageCost(
                subscription_id=subscription.pk,
                currency=subscription.plan.currency,
                period_start=period.start,
                period_end=period.end,
                debited=debits.debited,
                covered_by_credit=debits.debited - debits.overage,
                overage=debits.overage,
            )
        )
    return costs

"""Reads of invoicing: invoices for a period, upcoming invoice previews, late usage not billed, what is left
to credit on an invoice, what terminating a subscription now would bill, the running usage cost of
real-time subscriptions, and the billing API's reads (subscriptions, test clocks, invoices, one page of
an invoice's lines, the ledger of a subscription's lines), paged by the database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Window

from catalog.models import Customer, Merchant, Subscription, SubscriptionStatus, TestClock
from catalog.periods import Period
from catalog.pricing import rate, round_money
from wallets.selectors import period_debits_so_far

from .calculation import (
    SUBSCRIPTION_RELATED,
    Biller,
    ComposedInvoice,
    LineDraft,
    explanation_of,
    manual_lines_due,
    subscription_now,
    subscription_period_at,
    usage_window,
)
from .models import (
    OPEN_STATUSES,
    SETTLEMENT_LINE_KINDS,
    ZERO,
    CreditNoteLine,
    CreditNoteStatus,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    ManualLineItem,
    SubscriptionAdjustment,
)
from .realtime.lookup import realtime_subscriptions_named
from .receivables.selectors import amount_paid_expression
from .thresholds import threshold_billed_lines
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
    subscription = Subscription.objects.select_related(*SUBSCRIPTION_RELATED).get(pk=subscription.pk)
    if subscription.status != SubscriptionStatus.ACTIVE:
        return None
    moment = subscription_now(subscription, now)
    if moment < subscription.started_at:
        return None
    period = subscription_period_at(subscription, moment)
    last_change = subscription.plan_changes.filter(applied_at__isnull=False).order_by("-effective_at").first()
    charge_from = last_change.effective_at if last_change and period.start < last_change.effective_at else None
    return _CurrentPeriod(subscription, moment, period, charge_from)


def manual_line_items_pending(*, subscription: Subscription, period: Period) -> list[ManualLineItem]:
    """The pending manual line items the close of ``period`` will bill (``calculation.manual_lines_due``)."""
    items = ManualLineItem.objects.filter(subscription=subscription, invoice__isnull=True, target_invoice=False)
    return manual_lines_due(subscription, period, items)


def invoice_preview(*, subscription: Subscription, now: datetime) -> ComposedInvoice | None:
    """What the subscription's current period would bill if it closed now (nothing is written): the billing
    run's composition with the usage to date (one usage query per metric), the pending manual lines and, with
    a threshold, what the period's threshold invoices already billed (one query)."""
    current = _current_period(subscription, now)
    if current is None:
        return None
    subscription = current.subscription
    return Biller().compose_recurring(
        subscription,
        current.period,
        charge_from=current.charge_from,
        until=current.moment,
        manual=manual_line_items_pending(subscription=subscription, period=current.period),
        threshold_billed=threshold_billed_lines(
            subscription=subscription,
            period_start=usage_window(subscription, current.period, current.charge_from)[0],
        ),
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
    on a test clock, ahead of the clock — are counted), with the pending manual lines. The API's pending ledger
    lines read this."""
    current = _current_period(subscription, now)
    if current is None:
        return None
    return Biller().compose_recurring(
        current.subscription,
        current.period,
        charge_from=current.charge_from,
        manual=manual_line_items_pending(subscription=current.subscription, period=current.period),
    )


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


# -- the billing API's reads -----------------------------------------------------------------------


def subscription_list(
    *,
    merchant: Merchant,
    customer_id: str | None = None,
    statuses: Collection[str] = (),
    started_before: datetime | None = None,
) -> QuerySet[Subscription]:
    """The merchant's subscriptions, latest start first, with what their output reads joined in."""
    subscriptions = Subscription.objects.filter(merchant=merchant).select_related(*SUBSCRIPTION_RELATED)
    if customer_id:
        subscriptions = subscriptions.filter(customer_id=customer_id)
    if statuses:
        subscriptions = subscriptions.filter(status__in=statuses)
    if started_before is not None:
        subscriptions = subscriptions.filter(started_at__lt=started_before)
    return subscriptions.order_by("-started_at", "pk")


def subscription_get(*, merchant: Merchant, subscription_id: str) -> Subscription:
    """One of the merchant's subscriptions (``Subscription.DoesNotExist`` for anything else)."""
    return Subscription.objects.select_related(*SUBSCRIPTION_RELATED).get(merchant=merchant, pk=subscription_id)


def subscription_adjustment_list(*, subscription: Subscription):
    """The subscription's adjustments, oldest window first (``SubscriptionAdjustment.Meta.ordering``)."""
    return SubscriptionAdjustment.objects.filter(subscription=subscription).order_by(
        "effective_from", "created_at", "id"
    )


def subscription_openings(*, subscriptions: Collection[Subscription]) -> dict[str, Invoice]:
    """Each subscription's Invoice 0 unless void, by subscription id: one statement for all of them."""
    return {
        invoice.subscription_id: invoice
        for invoice in Invoice.objects.filter(
            subscription__in=[subscription.pk for subscription in subscriptions], kind=InvoiceKind.OPENING
        ).exclude(status=InvoiceStatus.VOID)
    }


def test_clock_list(*, merchant: Merchant) -> QuerySet[TestClock]:
    """The merchant's live (not deleted) test clocks, newest first."""
    return TestClock.objects.filter(merchant=merchant, deleted_at__isnull=True).order_by("-created_at", "pk")


test_clock_list.__test__ = False  # a selector, not a pytest test


def test_clock_get(*, merchant: Merchant, test_clock_id: str) -> TestClock:
    """One of the merchant's live test clocks (``TestClock.DoesNotExist`` for anything else)."""
    return TestClock.objects.get(merchant=merchant, pk=test_clock_id, deleted_at__isnull=True)


test_clock_get.__test__ = False


def _invoices(merchant: Merchant) -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(merchant=merchant)
        .select_related("subscription__plan", "subscription__customer", "plan", "merchant")
        .annotate(item_count=Count("lines", filter=~Q(lines__kind=LineKind.TAX)), amount_paid=amount_paid_expression())
    )


def invoice_list(
    *,
    merchant: Merchant,
    statuses: Collection[str] | None = None,
    subscription_id: str | None = None,
    customer_id: str | None = None,
    payment_failed: bool | None = None,
) -> QuerySet[Invoice]:
    """The merchant's invoices, newest period first, each with ``item_count`` (its lines but tax).
    ``statuses``: None for any; an empty collection matches nothing. ``payment_failed``: only the open
    invoices whose automatic charge failed (True), or all but them (False)."""
    invoices = _invoices(merchant)
    if statuses is not None:
        invoices = invoices.filter(status__in=statuses) if statuses else invoices.none()
    if payment_failed is not None:
        failed = Q(payment_failed_at__isnull=False, status__in=OPEN_STATUSES)
        invoices = invoices.filter(failed) if payment_failed else invoices.exclude(failed)
    if subscription_id:
        invoices = invoices.filter(subscription_id=subscription_id)
    if customer_id:
        invoices = invoices.filter(customer_id=customer_id)
    return invoices.order_by("-period_start", "-created_at", "pk")


def invoice_get(*, merchant: Merchant, invoice_id: str) -> Invoice:
    """One of the merchant's invoices with ``item_count`` (``Invoice.DoesNotExist`` for anything else)."""
    return _invoices(merchant).get(pk=invoice_id)


def invoice_line_taxes(*, invoice: Invoice, amounts: list[tuple[int, Decimal]]) -> dict[int, Decimal]:
    """The invoice's tax spread over its lines (``amounts``: every line but tax as (pk, amount), in invoice
    order), each share rounded to the currency; the difference from the invoice's tax, a few minor units
    at most, goes to the largest line, so the lines add up exactly."""
    if not amounts or invoice.tax == 0:
        return {pk: ZERO for pk, _ in amounts}
    hundred = Decimal(100)
    rate_ = invoice.tax_rate
    shares = {}
    for pk, amount in amounts:
        if invoice.tax_behavior == "inclusive":
            share = amount * rate_ / (hundred + rate_)
        else:
            share = amount * rate_ / hundred
        shares[pk] = round_money(share, invoice.currency)
    difference = invoice.tax - sum(shares.values(), ZERO)
    if difference:
        largest, _ = max(amounts, key=lambda pair: abs(pair[1]))
        shares[largest] += difference
    return shares


@dataclass(frozen=True)
class TaxedLine:
    """An invoice line with its share of the invoice's tax."""

    line: InvoiceLine
    invoice: Invoice
    tax: Decimal


@dataclass(frozen=True)
class InvoiceLinePage:
    """One page of an invoice's lines (tax spread over them, not a line of its own): ``total`` lines in all,
    ``next_after`` the position the next page starts after (None: this is the last page)."""

    invoice: Invoice
    lines: list[TaxedLine]
    total: int
    next_after: int | None


def invoice_line_page(*, invoice: Invoice, limit: int, after: int | None = None) -> InvoiceLinePage:
    """The invoice's lines but tax after position ``after``, at most ``limit``: one statement for the page
    (keyset on the position), one more for every line's amount when the invoice has tax to spread and the
    page does not hold every line; the total is the ``item_count`` of ``invoice_get`` (else counted)."""
    lines = invoice.lines.exclude(kind=LineKind.TAX).order_by("position", "pk")
    page = lines.select_related("price__billable_metric", "price__fee")
    if after is not None:
        page = page.filter(position__gt=after)
    rows = list(page[: limit + 1])
    more, rows = len(rows) > limit, rows[:limit]
    if after is None and not more:  # the page holds every line: spread the tax over it
        amounts = [(line.pk, line.amount) for line in rows]
    elif invoice.tax == 0:
        amounts = [(line.pk, ZERO) for line in rows]
    else:  # the tax is spread over every line, not over this page's
        amounts = list(lines.values_list("pk", "amount"))
    taxes = invoice_line_taxes(invoice=invoice, amounts=amounts)
    total = getattr(invoice, "item_count", None)
    if total is None:
        total = lines.count()
    return InvoiceLinePage(
        invoice=invoice,
        lines=[TaxedLine(line, invoice, taxes[line.pk]) for line in rows],
        total=total,
        next_after=rows[-1].position if more else None,
    )


@dataclass(frozen=True)
class LedgerLine:
    """A line of a subscription's billing ledger: ``invoiced`` (a stored line of a non-void invoice) or
    ``pending`` (a line of the current period's estimate, ``position`` in it, starting at 1)."""

    status: str
    line: InvoiceLine | LineDraft
    subscription: Subscription
    invoice_at: datetime
    created_at: datetime
    updated_at: datetime
    invoice: Invoice | None = None
    period_start: datetime | None = None  # pending: the estimated period's start
    position: int | None = None


@dataclass(frozen=True)
class LedgerPage:
    """A page of ledger lines, ``total`` in all; the subtotals are the pending lines' (fees and usage)."""

    lines: list[LedgerLine]
    total: int
    fee_subtotal: Decimal
    metered_subtotal: Decimal
    currency: str


def subscription_ledger_page(
    *,
    merchant: Merchant,
    subscription: Subscription,
    invoice: Invoice | None = None,
    status: str | None = None,
    limit: int,
    offset: int,
    now: datetime,
) -> LedgerPage:
    """``limit`` ledger lines from ``offset``: the invoiced lines of the subscription's non-void invoices (or
    of ``invoice`` alone), oldest first, then — unless ``status`` is ``invoiced`` or an invoice is named —
    the pending lines of ``invoice_estimate`` (``catalog.pricing.PricingError`` when they cannot be rated).
    The invoiced lines are paged by the database: one statement, plus a count when the page lies past them."""
    invoiced: list[LedgerLine] = []
    invoiced_total = 0
    if status in (None, "invoiced"):
        invoices = Invoice.objects.filter(merchant=merchant, subscription=subscription).exclude(
            status=InvoiceStatus.VOID
        )
        if invoice is not None:
            invoices = invoices.filter(pk=invoice.pk)
        lines = (
            InvoiceLine.objects.filter(invoice__in=invoices)
            .exclude(kind=LineKind.TAX)
            .order_by("invoice__period_start", "invoice__created_at", "position", "pk")
        )
        # Each row carries the count of all of them (a window before LIMIT/OFFSET): one statement, unless
        # the page lies past the invoiced lines (then they are counted).
        page = lines.select_related("invoice", "price").annotate(lines_in_all=Window(Count("pk")))
        rows = list(page[offset : offset + limit])
        invoiced_total = rows[0].lines_in_all if rows else (lines.count() if offset else 0)
        invoiced = [
            LedgerLine(
                status="invoiced",
                line=line,
                subscription=subscription,
                invoice=line.invoice,
                invoice_at=line.invoice.issued_at or line.invoice.grace_ends_at or line.invoice.period_end,
                created_at=line.invoice.created_at,
                updated_at=line.invoice.updated_at,
            )
            for line in rows
        ]
    pending: list[LedgerLine] = []
    fee_subtotal = metered_subtotal = ZERO
    if status in (None, "pending") and invoice is None:
        preview = invoice_estimate(subscription=subscription, now=now)
        if preview is not None:
            moment = subscription_now(subscription, now)
            for position, line in enumerate(preview.lines, start=1):
                if line.kind == LineKind.TAX:
                    continue
                if line.kind == LineKind.USAGE:
                    metered_subtotal += line.amount
                elif line.kind in (LineKind.FEE, LineKind.CREDIT):
                    fee_subtotal += line.amount
                pending.append(
                    LedgerLine(
                        status="pending",
                        line=line,
                        subscription=subscription,
                        invoice_at=preview.period_end,
                        created_at=moment,
                        updated_at=moment,
                        period_start=preview.period_start,
                        position=position,
                    )
                )
    # The pending lines follow the invoiced ones: the page takes them from where the invoiced lines end.
    start = max(0, offset - invoiced_total)
    return LedgerPage(
        lines=invoiced + pending[start : start + limit - len(invoiced)],
        total=invoiced_total + len(pending),
        fee_subtotal=fee_subtotal,
        metered_subtotal=metered_subtotal,
        currency=subscription.plan.currency,
    )

"""Threshold (progressive) billing (invoicing/THRESHOLDS.md): a subscription whose usage reaches its threshold
inside a period is invoiced at once for the usage to date, and the period's recurring invoice then takes off
what its threshold invoices already billed, charge by charge.

- ``usage_thresholds_evaluate``: the beat sweep, a bounded batch of subscriptions per call (``limit``, after a
  cursor); never on the ingest path.
- ``subscription_threshold_evaluate``: one subscription, one transaction: lock its row, rate its usage to date
  (``selectors.invoice_preview``, the upcoming invoice's own composition), and issue a threshold invoice when
  the next threshold is reached. Its ``threshold_sequence`` is one more than the period's last, under the lock;
  the unique constraint (subscription, period start, sequence) refuses a second one whatever happens.
- ``threshold_billed_lines``: what the period's threshold invoices billed, as lines for the next invoice of the
  period (a threshold invoice or the recurring one).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from catalog.models import Price, Subscription, SubscriptionStatus
from catalog.pricing.currency import CTX, format_money

from ..calculation import SUBSCRIPTION_RELATED, LineDraft, finish_lines, subscription_now, tax_rate_for
from ..models import Invoice, InvoiceKind, InvoiceLine, InvoiceStatus, LineKind
from .writer import invoice_insert, invoice_issue

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 200
ZERO = Decimal(0)


def next_threshold(*, amount: Decimal, recurring: bool, billed: Decimal) -> Decimal | None:
    """The accrued usage at which the next threshold invoice is due, given what the period's threshold
    invoices already billed: ``amount`` the first time; then, when recurring, the next multiple of ``amount``
    above what was billed (billed $120 of a $100 threshold: next at $200); otherwise none."""
    if billed < amount:
        return amount
    if not recurring:
        return None
    return CTX.multiply(CTX.add(CTX.divide_int(billed, amount), 1), amount)


@dataclass
class ThresholdBilled:
    """What the non-void threshold invoices of one subscription period billed, per price."""

    numbers: list[str] = field(default_factory=list)
    by_price: dict[str, Decimal] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    last_sequence: int = 0  # voided ones included: a sequence number is never given twice

    @property
    def total(self) -> Decimal:
        total = ZERO
        for amount in self.by_price.values():
            total = CTX.add(total, amount)
        return total

    def lines(self) -> list[LineDraft]:
        """One line per charge: "Already billed on threshold invoice INV-…" for minus what was billed."""
        if not self.numbers:
            return []
        label = "invoice" if len(self.numbers) == 1 else "invoices"
        numbers = ", ".join(self.numbers)
        return [
            LineDraft(
                kind=LineKind.THRESHOLD_BILLED,
                description=f"{price.invoice_display_name}: already billed on threshold {label} {numbers}",
                amount=-amount,
                price=price,
                explanation={
                    "text": f"{format_money(amount, price.currency)} billed on threshold {label} {numbers}",
                    "thresholdInvoices": list(self.numbers),
                },
            )
            for price_id, amount in self.by_price.items()
            if amount
            for price in [self.prices[price_id]]
        ]


def threshold_billed(*, subscription_id: str, period_start: datetime) -> ThresholdBilled:
    """What the threshold invoices of the subscription's period starting at ``period_start`` billed (one
    query): per price, their usage lines plus their own "already billed" lines, i.e. each invoice's net."""
    billed = ThresholdBilled()
    rows = (
        InvoiceLine.objects.filter(
            invoice__subscription_id=subscription_id,
            invoice__kind=InvoiceKind.THRESHOLD,
            invoice__period_start=period_start,
        )
        .filter(kind__in=(LineKind.USAGE, LineKind.THRESHOLD_BILLED))
        .select_related("invoice", "price")
        .order_by("invoice__threshold_sequence", "position")
    )
    by_price: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        invoice = row.invoice
        billed.last_sequence = max(billed.last_sequence, invoice.threshold_sequence or 0)
        if invoice.status == InvoiceStatus.VOID:
            continue
        if invoice.number and invoice.number not in billed.numbers:
            billed.numbers.append(invoice.number)
        if row.price_id is not None:
            by_price[row.price_id] = CTX.add(by_price[row.price_id], row.amount)
            billed.prices[row.price_id] = row.price
    billed.by_price = dict(by_price)
    return billed


def threshold_billed_lines(*, subscription: Subscription, period_start: datetime) -> list[LineDraft]:
    """The "already billed" lines of the invoice closing the period (none without a threshold: no query)."""
    if subscription.effective_threshold is None:
        return []
    return threshold_billed(subscription_id=subscription.pk, period_start=period_start).lines()


def subscription_threshold_evaluate(*, subscription_id: str, now: datetime) -> Invoice | None:
    """Issue the subscription's next threshold invoice if its usage to date reached the threshold; None
    otherwise (no threshold, not active, real-time, already billed to this level, or the period's recurring
    invoice already written). The invoice bills the usage to date of each charge minus what earlier threshold
    invoices billed, the plan discount on that, and tax; it is issued at once (numbered, e-mailed, and charged
    by ``payments`` like any issued invoice when the subscription has auto charge)."""
    # The selector is imported here: invoicing.selectors imports the services package (its writer) at load.
    from ..selectors import invoice_preview

    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related(*SUBSCRIPTION_RELATED)
            .get(pk=subscription_id)
        )
        threshold = subscription.effective_threshold
        if threshold is None or subscription.status != SubscriptionStatus.ACTIVE or subscription.is_real_time:
            return None
        moment = subscription_now(subscription, now)
        preview = invoice_preview(subscription=subscription, now=now)
        if preview is None:
            return None
        period_start = preview.period_start
        if Invoice.objects.filter(
            subscription=subscription, kind=InvoiceKind.RECURRING, period_start=period_start
        ).exists():
            return None  # the period is closed: its recurring invoice bills the rest
        usage = [line for line in preview.lines if line.kind == LineKind.USAGE]
        accrued = ZERO
        for line in usage:
            accrued = CTX.add(accrued, line.amount)
        billed = threshold_billed(subscription_id=subscription.pk, period_start=period_start)
        amount, recurring = threshold
        due_at = next_threshold(amount=amount, recurring=recurring, billed=billed.total)
        if due_at is None or accrued < due_at:
            return None
        plan = subscription.plan
        composed = finish_lines(
            kind=InvoiceKind.THRESHOLD,
            lines=[*usage, *billed.lines()],
            currency=plan.currency,
            rounding=subscription.merchant.rounding_mode,
            tax_rate=tax_rate_for(subscription),
            tax_behavior=plan.tax_behavior,
            discount_percent=plan.discount_percent,
            minimum=None,  # the period's minimum is the recurring invoice's
            period_start=period_start,
            period_end=moment,
        )
        try:
            with transaction.atomic():
                invoice = invoice_insert(
                    composed, subscription=subscription, plan=plan, threshold_sequence=billed.last_sequence + 1
                )
        except IntegrityError:
            return None  # another evaluator issued this threshold invoice (the constraint's refusal)
        invoice.subscription, invoice.merchant, invoice.customer = (
            subscription,
            subscription.merchant,
            subscription.customer,
        )
        invoice_issue(invoice, now=moment)
    return invoice


@dataclass(frozen=True)
class ThresholdSweep:
    evaluated: int
    invoices: list[Invoice]
    next_after: str | None  # the cursor of the next batch; None when this one was the last


def threshold_candidates(*, after: str | None = None, limit: int = DEFAULT_BATCH) -> list[str]:
    """Active post-paid subscriptions with a threshold (their own or their plan's), by id after ``after``."""
    queryset = (
        Subscription.objects.filter(status=SubscriptionStatus.ACTIVE)
        .filter(Q(threshold_amount__isnull=False) | Q(plan__threshold_amount__isnull=False))
        .exclude(pk__in=Subscription.objects.real_time().values("pk"))
    )
    if after is not None:
        queryset = queryset.filter(pk__gt=after)
    return list(queryset.order_by("pk").values_list("pk", flat=True)[:limit])


def usage_thresholds_evaluate(*, now: datetime, after: str | None = None, limit: int = DEFAULT_BATCH) -> ThresholdSweep:
    """Evaluate up to ``limit`` subscriptions with a threshold (ids after ``after``), each in its own
    transaction; a failure on one is logged and the others go on (the next sweep retries it)."""
    ids = threshold_candidates(after=after, limit=limit)
    invoices = []
    for subscription_id in ids:
        try:
            invoice = subscription_threshold_evaluate(subscription_id=subscription_id, now=now)
        except Exception:  # one bad subscription must not stop the sweep; the next one retries it
            logger.exception("Threshold evaluation of %s failed", subscription_id)
            continue
        if invoice is not None:
            invoices.append(invoice)
    return ThresholdSweep(len(ids), invoices, ids[-1] if len(ids) == limit else None)

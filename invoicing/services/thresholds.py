"""Threshold (progressive) billing (invoicing/THRESHOLDS.md): a subscription whose usage reaches its threshold
inside a period is invoiced at once for the usage to date, and the period's recurring invoice then takes off
what its threshold invoices already billed, charge by charge.

- ``usage_thresholds_evaluate``: the beat sweep, a bounded batch of subscriptions per call (``limit``, after a
  cursor); never on the ingest path.
- ``subscription_threshold_evaluate``: one subscription, one transaction: lock its row, rate its usage to date
  (``selectors.invoice_preview``, the upcoming invoice's own composition), and issue a threshold invoice when
  the next threshold is reached. Its ``threshold_sequence`` is one more than the period's last, under the lock;
  the unique constraint (subscription, period start, sequence) refuses a second one whatever happens.

The reads (the next threshold, what the period's threshold invoices billed) are ``invoicing.thresholds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from catalog.models import Subscription, SubscriptionStatus
from catalog.pricing.currency import CTX

from ..calculation import SUBSCRIPTION_RELATED, finish_lines, subscription_now, tax_rate_for
from ..models import Invoice, InvoiceKind, LineKind
from ..selectors import invoice_preview
from ..thresholds import next_threshold, threshold_billed
from .writer import invoice_insert, invoice_issue

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 200
ZERO = Decimal(0)


def subscription_threshold_evaluate(*, subscription_id: str, now: datetime) -> Invoice | None:
    """Issue the subscription's next threshold invoice if its usage to date reached the threshold; None
    otherwise (no threshold, not active, real-time, already billed to this level, or the period's recurring
    invoice already written). The invoice bills the usage to date of each charge minus what earlier threshold
    invoices billed, the plan discount on that, and tax; it is issued at once (numbered, e-mailed, and charged
    by ``payments`` like any issued invoice when the subscription has auto charge)."""
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
        if Invoice.objects.filter(
            subscription=subscription, kind=InvoiceKind.RECURRING, period_start=preview.period_start
        ).exists():
            return None  # the period is closed: its recurring invoice bills the rest
        usage = [line for line in preview.lines if line.kind == LineKind.USAGE]
        if not usage:
            return None
        # Filed under the start of the usage window (the service start, a trial's end, a plan change): the
        # current plan's threshold invoices; the invoice that next bills this window deducts them.
        period_start = usage[0].service_start
        accrued = ZERO
        for line in usage:
            accrued = CTX.add(accrued, line.amount)
        billed = threshold_billed(subscription_id=subscription.pk, period_start=period_start)
        amounts, recurring = threshold
        due_at = next_threshold(amounts=amounts, recurring=recurring, billed=billed.total)
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

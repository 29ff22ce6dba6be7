"""An invoice's states after it is written: refresh and finalize a draft (with the prepaid settlement),
issue the due drafts, mark paid or record a payment, void (and reissue), bill late usage as an adjustment."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q

from catalog.models import Subscription
from core.formatting import decimal_string
from wallets.entitlements import grant_purchase_reinvoice
from wallets.services import credit_purchase_reinvoice

from ..calculation import (
    Biller,
    LineDraft,
    apply_prepaid,
    finish_lines,
    percentage_discount_lines,
    subscription_now,
)
from ..models import (
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
)
from ..receivables import invoice_pay_in_full, subscription_past_due_clear
from ..receivables.credits import invoice_void_return_credit
from ..webhook_events import invoice_created_emit, invoice_voided_emit
from .lifecycle import subscription_load
from .settlement import Prepaid, invoice_prepaid, prepaid_lock, prepaid_settle
from .writer import invoice_from_composition, invoice_insert_or_skip, invoice_issue, invoice_lines_insert

logger = logging.getLogger(__name__)


def locked_invoice(invoice: Invoice) -> Invoice:
    # ``of=("self",)``: lock the invoice row only. A bare FOR UPDATE over the join would also lock the
    # merchant and plan rows, serialising every credit note of a merchant and inverting the lock order of
    # paths that take the merchant first.
    return Invoice.objects.select_for_update(of=("self",)).select_related("merchant", "plan").get(pk=invoice.pk)


def _refresh_lines(invoice: Invoice) -> Prepaid | None:
    """Recompute a draft's usage lines and totals, the prepaid debits applied; returns those debits."""
    subscription = subscription_load(invoice.subscription)
    biller = Biller()
    lines: list[LineDraft] = []
    refreshed: set[tuple] = set()  # a dimensional price's lines are recomputed together, once
    for line in invoice.lines.select_related("price__billable_metric", "price__fee").prefetch_related(
        "price__tiers", "price__dynamic_rates"
    ):
        if line.kind == LineKind.USAGE and line.price is not None:
            key = (line.price_id, line.service_start, line.service_end)
            if key not in refreshed:
                refreshed.add(key)
                lines.extend(biller.refresh_usage_lines(line, subscription, invoice.currency))
        elif line.kind == LineKind.DISCOUNT and "subscriptionAdjustmentId" in line.explanation:
            continue  # recomputed below on the refreshed charges, with the adjustments of now
        else:
            lines.append(LineDraft.from_line(line))
    plan_terms = invoice.kind == InvoiceKind.RECURRING
    if plan_terms:
        lines.extend(
            percentage_discount_lines(
                biller.adjustments(subscription),
                lines,
                currency=invoice.currency,
                rounding=subscription.merchant.rounding_mode,
                time_zone=subscription.customer.time_zone,
            )
        )
    composed = finish_lines(
        kind=invoice.kind,
        lines=lines,
        currency=invoice.currency,
        rounding=subscription.merchant.rounding_mode,
        tax_rate=invoice.tax_rate,
        tax_behavior=invoice.tax_behavior,
        discount_percent=invoice.plan.discount_percent if plan_terms else None,
        minimum=invoice.plan.minimum_commitment if plan_terms else None,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
    )
    prepaid = invoice_prepaid(invoice, subscription)
    if prepaid is not None:
        composed = apply_prepaid(
            composed, covered_by_credit=prepaid.debits.covered_by_credit, rounding=subscription.merchant.rounding_mode
        )
    invoice.lines.all().delete()
    invoice_lines_insert(invoice, composed.lines)
    invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due = (
        composed.subtotal,
        composed.tax,
        composed.total,
        composed.amount_due,
    )
    invoice.save(update_fields=["subtotal", "tax", "total", "amount_due", "updated_at"])
    return prepaid


def invoice_draft_add_line(*, invoice: Invoice, line: LineDraft) -> Invoice:
    """Write ``line`` on a draft (the caller holds the transaction and the lock of ``locked_invoice``) and
    recompute the draft as a refresh does: usage lines re-rated, discount, minimum, tax and totals anew."""
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvoiceError(f"Invoice {invoice} is {invoice.status}; lines are added to drafts only.")
    last = invoice.lines.order_by("-position").values_list("position", flat=True).first() or 0
    invoice_lines_insert(invoice, [line], first_position=last + 1)
    _refresh_lines(invoice)
    return invoice


def invoice_refresh(*, invoice: Invoice, now: datetime) -> Invoice:
    """Recompute a draft's usage lines (late events of its period are included) and its totals."""
    with transaction.atomic():
        invoice = locked_invoice(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; only drafts are refreshed.")
        _refresh_lines(invoice)
    return invoice


def invoice_finalize(*, invoice: Invoice, now: datetime) -> Invoice:
    """Refresh a draft with the usage known now, number it and issue it; it never changes afterwards."""
    with transaction.atomic():
        invoice = locked_invoice(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; only drafts can be issued.")
        prepaid_lock(invoice)
        prepaid = _refresh_lines(invoice)
        invoice_issue(invoice, now=now)
        if prepaid is not None:
            prepaid_settle(invoice, prepaid, now=now)
    return invoice


def invoices_finalize_due(*, now: datetime) -> dict[str, int]:
    """Issue every draft whose grace period has ended (by its subscription's test clock when it has one)."""
    due = (
        Invoice.objects.filter(status=InvoiceStatus.DRAFT, grace_ends_at__isnull=False)
        .filter(
            Q(subscription__test_clock__isnull=True, grace_ends_at__lte=now)
            | Q(subscription__test_clock__isnull=False, grace_ends_at__lte=F("subscription__test_clock__current_time"))
        )
        .select_related("subscription__test_clock")
    )
    counts = {"issued": 0, "failed": 0}
    for invoice in due.order_by("grace_ends_at", "pk"):
        try:
            invoice_finalize(invoice=invoice, now=subscription_now(invoice.subscription, now))
            counts["issued"] += 1
        except InvoiceError:
            continue  # issued meanwhile by someone else
        except Exception:
            logger.exception("Finalizing %s failed", invoice.pk)
            counts["failed"] += 1
    return counts


def invoice_mark_paid(*, invoice: Invoice, now: datetime, recorded_by: str = "") -> Invoice:
    """Finance's "Mark paid": record a payment of everything still due (``invoicing.receivables``), received
    now; the invoice becomes PAID. Refuses an invoice that is not open (``InvoicePaymentError``)."""
    return invoice_pay_in_full(invoice=invoice, at=now, recorded_by=recorded_by)


def invoice_void(*, invoice: Invoice, now: datetime, reason: str = "", reissue: bool = False) -> Invoice | None:
    """Void a draft or an issued (or overdue) invoice nothing was paid on. ``reissue`` writes a fresh draft for the same period,
    recomposed from the catalog and the usage as they are now (a credit purchase at its own tax rate, and what
    it sold follows it: paying the reissue credits the purchase); returns it (else None).

    Its number stays used (a voided invoice keeps its number: the sequence has no gaps)."""
    with transaction.atomic():
        invoice = locked_invoice(invoice)
        if invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.ISSUED, InvoiceStatus.OVERDUE):
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; it cannot be voided.")
        if invoice.payment_allocations.exists():
            raise InvoiceError("Payments were recorded on this invoice; credit it instead of voiding it.")
        if invoice.credit_notes.exists():
            raise InvoiceError("This invoice has credit notes; credit the rest instead of voiding it.")
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = now
        invoice.void_reason = reason
        invoice.save(update_fields=["status", "voided_at", "void_reason", "updated_at"])
        if invoice.issued_at is not None:
            invoice_void_return_credit(invoice, now=now)
            subscription_past_due_clear(invoice, at=now)
        if not reissue:
            invoice_voided_emit(invoice=invoice, now=now)
            return None
        subscription = subscription_load(invoice.subscription)
        lines = [
            LineDraft.from_line(line)
            for line in invoice.lines.exclude(kind=LineKind.APPLIED_CREDIT).select_related("price")
        ]
        replacement = Invoice(
            merchant_id=invoice.merchant_id,
            customer_id=invoice.customer_id,
            subscription_id=invoice.subscription_id,
            plan=invoice.plan,
            kind=invoice.kind,
            currency=invoice.currency,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            tax_behavior=invoice.tax_behavior,
            # a purchase is reissued on the terms it was sold at (a prepaid top-up is untaxed)
            tax_rate=invoice.tax_rate if invoice.kind == InvoiceKind.CREDIT_PURCHASE else tax_rate_now(subscription),
            replaces=invoice,
            grace_ends_at=None,
        )
        replacement.save(force_insert=True)
        invoice_lines_insert(replacement, lines)
        _refresh_lines(replacement)
        if invoice.kind == InvoiceKind.CREDIT_PURCHASE:
            # what was bought on it is now billed on the reissue: paying that credits it (once)
            credit_purchase_reinvoice(invoice_ref=invoice.pk, new_invoice_ref=replacement.pk)
            grant_purchase_reinvoice(invoice_ref=invoice.pk, new_invoice_ref=replacement.pk)
        invoice_voided_emit(invoice=invoice, now=now, replacement=replacement)
        invoice_created_emit(invoice=replacement, now=replacement.created_at)
    return replacement


def tax_rate_now(subscription: Subscription) -> Decimal:
    from ..calculation import tax_rate_for

    return tax_rate_for(subscription)


def invoice_bill_late_usage(*, invoice: Invoice, now: datetime) -> Invoice | None:
    """Bill usage that arrived after ``invoice`` was issued as a separate adjustment draft (finance's
    decision, from the admin): per metered line, the engine's amount for the usage known now minus what
    was already billed. Returns None when there is nothing late."""
    from ..selectors import late_usage_for_invoice

    late = late_usage_for_invoice(invoice=invoice)
    if not late:
        return None
    subscription = subscription_load(invoice.subscription)
    lines = [
        LineDraft(
            kind=LineKind.ADJUSTMENT,
            description=f"Late usage: {item.line.description} (+{decimal_string(item.extra_quantity)})",
            amount=item.extra_amount,
            price=item.line.price,
            quantity=item.current_quantity,
            service_start=item.line.service_start,
            service_end=item.line.service_end,
            explanation={
                "text": f"billed {item.billed_quantity} for {item.billed_amount}; now {item.current_quantity}"
                f" for {item.current_amount}",
                "rating": item.explanation,
            },
        )
        for item in late
    ]
    composed = finish_lines(
        kind=InvoiceKind.ADJUSTMENT,
        lines=lines,
        currency=invoice.currency,
        rounding=subscription.merchant.rounding_mode,
        tax_rate=invoice.tax_rate,
        tax_behavior=invoice.tax_behavior,
        discount_percent=None,
        minimum=None,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
    )
    with transaction.atomic():
        adjustment = invoice_from_composition(composed, subscription=subscription, plan=invoice.plan, adjusts=invoice)
        invoice_insert_or_skip(adjustment, composed.lines)
    return adjustment


def invoice_record_payment(*, invoice: Invoice, now: datetime, recorded_by: str = "", reference: str = "") -> Invoice:
    """Record a payment received outside Meterline (the API's ``out_of_band``): a payment of everything still
    due, received at the subscription's time (its test clock's), allocated to this invoice, which becomes PAID;
    paying the opening invoice of a ``pending_payment`` subscription activates it. Refuses a paid invoice
    (``INVOICE_ALREADY_PAID``) and drafts or void invoices (``INVOICE_NOT_LINKABLE_STATUS``)."""
    subscription = Subscription.objects.select_related("test_clock").get(pk=invoice.subscription_id)
    return invoice_pay_in_full(
        invoice=invoice, at=subscription_now(subscription, now), recorded_by=recorded_by, reference=reference
    )

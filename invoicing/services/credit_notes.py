"""Credit notes: full or partial credit of an issued or paid invoice, with its own gap-free number, that move
money (invoicing/RECEIVABLES.md): first off what the invoice still owes, the rest as customer credit or a
refund. A refund (the API's ``/v2/invoices/{id}/refunds``) is a credit note settled by refund."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum

from catalog.pricing import round_money
from catalog.pricing.currency import CTX

from ..models import (
    OPEN_STATUSES,
    CreditNote,
    CreditNoteLine,
    CreditNoteSettlement,
    CreditNoteStatus,
    DocumentType,
    Invoice,
    InvoiceError,
    InvoiceStatus,
)
from ..receivables.credits import credit_note_settle, credit_note_settled, credit_note_unsettle
from ..selectors import invoice_creditable_lines
from .delivery import document_delivery_queue
from .invoice_states import locked_invoice
from .numbering import credit_note_number_format, next_number


def _credited(invoice: Invoice) -> tuple[Decimal, Decimal]:
    """(total, tax) of the invoice's credit notes not voided."""
    sums = CreditNote.objects.filter(invoice=invoice, status=CreditNoteStatus.ISSUED).aggregate(
        total=Sum("total"), tax=Sum("tax")
    )
    # rounded: SQLite sums decimals as floats; every credit note is in minor units
    return (
        round_money(sums["total"] or Decimal(0), invoice.currency),
        round_money(sums["tax"] or Decimal(0), invoice.currency),
    )


def credit_note_issue(
    *,
    invoice: Invoice,
    now: datetime,
    reason: str = "",
    amounts: dict[int, Decimal] | None = None,
    settlement: str = CreditNoteSettlement.CUSTOMER_CREDIT,
    idempotency_key: str | None = None,
) -> CreditNote:
    """Credit an issued or paid invoice, fully (``amounts=None``: every line's remaining amount, discounts and
    credits included, with exactly the tax left) or partly (``{invoice line id: amount}``, tax at the invoice's
    rate and behaviour). Lines cannot be credited beyond what was billed, nor the invoice beyond its total. The
    credit note gets its own gap-free number (CN-year-seq) and is e-mailed to the customer after commit.

    Its money first lowers what the invoice still owes; the rest (a paid or partly paid invoice) becomes
    customer credit or is refunded, per ``settlement`` ("customer_credit" | "refund"). A replay with the same
    ``idempotency_key`` returns the first credit note."""
    if settlement not in CreditNoteSettlement.values:
        raise InvoiceError(f"Unknown settlement {settlement!r}; use customer_credit or refund.")
    with transaction.atomic():
        if idempotency_key:
            replay = CreditNote.objects.filter(merchant_id=invoice.merchant_id, idempotency_key=idempotency_key).first()
            if replay is not None:
                return replay
        invoice = locked_invoice(invoice)
        if invoice.status not in (*OPEN_STATUSES, InvoiceStatus.PAID):
            raise InvoiceError("Only issued or paid invoices can be credited.")
        creditable = invoice_creditable_lines(invoice=invoice)
        lines = {item.line.id: item.line for item in creditable}
        credited = {item.line.id: item.credited for item in creditable}
        full = amounts is None
        if full:
            amounts = {item.line.id: item.remaining for item in creditable if item.remaining}
        rows = []
        for line_id, amount in amounts.items():
            line = lines.get(line_id)
            if line is None:
                raise InvoiceError(f"Line {line_id} is not a creditable line of invoice {invoice}.")
            amount = round_money(Decimal(amount), invoice.currency)
            if not full and (amount <= 0 or amount > line.amount - credited[line_id]):
                raise InvoiceError(
                    f"Line “{line.description}” can be credited between 0 and {line.amount - credited[line_id]}."
                )
            rows.append(CreditNoteLine(invoice_line=line, description=line.description, amount=amount))
        base = sum((row.amount for row in rows), Decimal(0))
        credited_total, credited_tax = _credited(invoice)
        if not rows or base <= 0 or credited_total >= invoice.total:
            raise InvoiceError("Nothing left to credit on this invoice.")
        rounding = invoice.merchant.rounding_mode
        rate_ = invoice.tax_rate
        if full:
            tax = invoice.tax - credited_tax  # the last credit takes exactly the tax left (no cent lost to rounding)
        elif invoice.tax_behavior == "inclusive":
            tax = round_money(
                CTX.divide(CTX.multiply(base, rate_), CTX.add(Decimal(100), rate_)), invoice.currency, rounding
            )
        else:
            tax = round_money(CTX.divide(CTX.multiply(base, rate_), Decimal(100)), invoice.currency, rounding)
        subtotal = base - tax if invoice.tax_behavior == "inclusive" else base
        total = subtotal + tax
        if credited_total + total > invoice.total:
            raise InvoiceError(
                f"This would credit {total}; only {round_money(invoice.total - credited_total, invoice.currency)} "
                "of the invoice is left to credit."
            )
        sequence = next_number(merchant=invoice.merchant, year=now.year, document_type=DocumentType.CREDIT_NOTE)
        note = CreditNote(
            merchant=invoice.merchant,
            customer_id=invoice.customer_id,
            invoice=invoice,
            number=credit_note_number_format(year=now.year, sequence=sequence),
            currency=invoice.currency,
            issued_at=now,
            reason=reason,
            subtotal=subtotal,
            tax=tax,
            total=total,
            settlement=settlement,
            idempotency_key=idempotency_key or None,
        )
        credit_note_settle(note, invoice, now=now)
        try:
            with transaction.atomic():
                note.save(force_insert=True)
        except IntegrityError:
            if not idempotency_key:
                raise
            raise InvoiceError("A credit note with this idempotency key is being issued; retry.") from None
        for row in rows:
            row.credit_note = note
        CreditNoteLine.objects.bulk_create(rows)
        credit_note_settled(note, now=now)
        document_delivery_queue(document=note, now=now)  # e-mailed to the customer after commit
    return note


def credit_note_void(*, credit_note: CreditNote, now: datetime, reason: str = "") -> CreditNote:
    """Void a credit note (or refund): what it took off the invoice is owed again, the customer credit it gave
    is taken back (refused when the customer already used it), a refund is cancelled. Its number stays used."""
    with transaction.atomic():
        invoice = locked_invoice(credit_note.invoice)
        note = CreditNote.objects.select_for_update().get(pk=credit_note.pk)
        if note.status == CreditNoteStatus.VOID:
            raise InvoiceError(f"Credit note {note} is already void.")
        credit_note_unsettle(note, invoice, now=now)
        note.status = CreditNoteStatus.VOID
        note.voided_at = now
        note.void_reason = reason
        note.save(update_fields=["status", "voided_at", "void_reason"])
    return note


def invoice_refund_create(
    *,
    invoice: Invoice,
    now: datetime,
    reason: str = "",
    amount: Decimal | None = None,
    idempotency_key: str | None = None,
) -> CreditNote:
    """Refund a paid invoice (the client's ``createInvoiceRefund``): a credit note settled by refund. In full
    (``amount=None``: everything left to credit, tax included), refused when a refund not voided exists; or,
    our extension, ``amount`` of the pre-tax amount, credited line by line in invoice order."""
    with transaction.atomic():
        if idempotency_key:
            replay = CreditNote.objects.filter(merchant_id=invoice.merchant_id, idempotency_key=idempotency_key).first()
            if replay is not None:
                return replay
        invoice = locked_invoice(invoice)
        if invoice.status != InvoiceStatus.PAID:
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; only paid invoices are refunded.")
        amounts = None
        if amount is None:
            if invoice.credit_notes.filter(
                status=CreditNoteStatus.ISSUED, settlement=CreditNoteSettlement.REFUND
            ).exists():
                raise InvoiceError(f"Invoice {invoice} has already been refunded.")
        else:
            amount = Decimal(amount)
            if amount <= 0 or round_money(amount, invoice.currency) != amount:
                raise InvoiceError(f"A refund is a positive amount in whole {invoice.currency} minor units.")
            amounts, left = {}, amount
            for item in invoice_creditable_lines(invoice=invoice):
                take = min(left, item.remaining)
                if take > 0:
                    amounts[item.line.id] = take
                    left -= take
            if left > 0:
                raise InvoiceError(f"Only {amount - left} of invoice {invoice} is left to refund.")
        return credit_note_issue(
            invoice=invoice,
            now=now,
            reason=reason,
            amounts=amounts,
            settlement=CreditNoteSettlement.REFUND,
            idempotency_key=idempotency_key,
        )

"""Credit notes: full or partial credit of an issued or paid invoice, with its own gap-free number."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from catalog.pricing import round_money
from catalog.pricing.currency import CTX

from ..models import (
    CreditNote,
    CreditNoteLine,
    DocumentType,
    Invoice,
    InvoiceError,
    InvoiceStatus,
)
from ..selectors import invoice_creditable_lines
from ..webhook_events import credit_note_issued_emit
from .delivery import document_delivery_queue
from .invoice_states import locked_invoice
from .numbering import credit_note_number_format, next_number


def credit_note_issue(
    *, invoice: Invoice, now: datetime, reason: str = "", amounts: dict[int, Decimal] | None = None
) -> CreditNote:
    """Credit an issued or paid invoice, fully (``amounts=None``: every line's remaining amount) or partly
    (``{invoice line id: amount}``). Lines cannot be credited beyond what was billed; tax is credited at
    the invoice's rate and behaviour. The credit note gets its own gap-free number (CN-year-seq) and is
    e-mailed to the customer after commit."""
    with transaction.atomic():
        invoice = locked_invoice(invoice)
        if invoice.status not in (InvoiceStatus.ISSUED, InvoiceStatus.PAID):
            raise InvoiceError("Only issued or paid invoices can be credited.")
        creditable = invoice_creditable_lines(invoice=invoice)
        lines = {item.line.id: item.line for item in creditable}
        credited = {item.line.id: item.credited for item in creditable}
        if amounts is None:
            amounts = {item.line.id: item.remaining for item in creditable if item.remaining > 0}
        rows = []
        for line_id, amount in amounts.items():
            line = lines.get(line_id)
            if line is None:
                raise InvoiceError(f"Line {line_id} is not a creditable line of invoice {invoice}.")
            amount = round_money(Decimal(amount), invoice.currency)
            if amount <= 0 or amount > line.amount - credited[line_id]:
                raise InvoiceError(
                    f"Line “{line.description}” can be credited between 0 and {line.amount - credited[line_id]}."
                )
            rows.append(CreditNoteLine(invoice_line=line, description=line.description, amount=amount))
        if not rows:
            raise InvoiceError("Nothing left to credit on this invoice.")
        base = sum((row.amount for row in rows), Decimal(0))
        rounding = invoice.merchant.rounding_mode
        rate_ = invoice.tax_rate
        if invoice.tax_behavior == "inclusive":
            tax = round_money(
                CTX.divide(CTX.multiply(base, rate_), CTX.add(Decimal(100), rate_)), invoice.currency, rounding
            )
            subtotal = base - tax
        else:
            tax = round_money(CTX.divide(CTX.multiply(base, rate_), Decimal(100)), invoice.currency, rounding)
            subtotal = base
        sequence = next_number(merchant=invoice.merchant, year=now.year, document_type=DocumentType.CREDIT_NOTE)
        note = CreditNote.objects.create(
            merchant=invoice.merchant,
            customer_id=invoice.customer_id,
            invoice=invoice,
            number=credit_note_number_format(year=now.year, sequence=sequence),
            currency=invoice.currency,
            issued_at=now,
            reason=reason,
            subtotal=subtotal,
            tax=tax,
            total=subtotal + tax,
        )
        for row in rows:
            row.credit_note = note
        CreditNoteLine.objects.bulk_create(rows)
        document_delivery_queue(document=note, now=now)  # e-mailed to the customer after commit
        credit_note_issued_emit(credit_note=note, now=now)
    return note

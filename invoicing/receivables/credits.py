"""Customer credit moving through invoices: applied at issue, carried forward from a negative invoice, taken
from and given back by credit notes, returned when an invoice that used it is voided."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Max, Sum

from catalog.pricing import round_money
from catalog.pricing.currency import format_money

from .. import webhook_events
from ..models import (
    OPEN_STATUSES,
    CreditNote,
    CreditNoteSettlement,
    CreditNoteStatus,
    CustomerCreditKind,
    Invoice,
    InvoiceError,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    PaymentAllocation,
)
from .ledger import credit_entry_add, customer_credit_balance
from .locks import customer_credit_lock
from .payments import invoice_paid_effects, invoice_settlement_save


def invoice_settle_at_issue(invoice: Invoice, *, now: datetime) -> None:
    """While a draft is being issued (caller holds its lock; its row is still a draft, so lines may be added):
    set its amount due = total + its settlement lines (paid from prepaid balance), less the customer's credit
    in its currency, applied as a last line "Applied credit balance". A negative result is carried forward as
    customer credit (the amount due is then 0). Fully covered by credit, the invoice is issued PAID.
    The caller saves ``amount_due``, ``status`` and ``paid_at``."""
    prepaid = round_money(
        invoice.lines.filter(kind=LineKind.PREPAID).aggregate(s=Sum("amount"))["s"] or Decimal(0), invoice.currency
    )
    due = invoice.total + prepaid
    customer_credit_lock(invoice.customer_id)
    if due < 0:
        credit_entry_add(
            merchant_id=invoice.merchant_id,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=-due,
            kind=CustomerCreditKind.NEGATIVE_INVOICE,
            description=f"Negative invoice {invoice.number} carried forward",
            now=now,
            invoice=invoice,
        )
        invoice.amount_due = Decimal(0)
        return
    applied = min(customer_credit_balance(customer_id=invoice.customer_id, currency=invoice.currency), due)
    if applied > 0:
        position = invoice.lines.aggregate(p=Max("position"))["p"] or 0
        InvoiceLine.objects.create(
            invoice=invoice,
            position=position + 1,
            kind=LineKind.APPLIED_CREDIT,
            description="Applied credit balance",
            amount=-applied,
            explanation={"text": f"customer credit applied: {format_money(applied, invoice.currency)}"},
        )
        credit_entry_add(
            merchant_id=invoice.merchant_id,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=-applied,
            kind=CustomerCreditKind.APPLIED,
            description=f"Applied to invoice {invoice.number}",
            now=now,
            invoice=invoice,
        )
    invoice.amount_due = due - applied
    if applied > 0 and invoice.amount_due == 0:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now


def invoice_issued_effects(invoice: Invoice, *, now: datetime) -> None:
    """After the issued invoice is saved: an invoice the credit paid in full sets off what paying does."""
    if invoice.status == InvoiceStatus.PAID:
        invoice_paid_effects(invoice, at=now)


def invoice_void_return_credit(invoice: Invoice, *, now: datetime) -> None:
    """A voided invoice gives back the customer credit it applied and takes back the credit its negative
    total granted (caller holds the invoice's lock and the transaction)."""
    customer_credit_lock(invoice.customer_id)
    for entry in invoice.credit_entries.filter(
        kind__in=(CustomerCreditKind.APPLIED, CustomerCreditKind.NEGATIVE_INVOICE)
    ):
        if entry.kind == CustomerCreditKind.NEGATIVE_INVOICE:
            balance = customer_credit_balance(customer_id=invoice.customer_id, currency=invoice.currency)
            if balance < entry.amount:
                raise InvoiceError(
                    f"The credit invoice {invoice} carried forward was already used "
                    f"({format_money(balance, invoice.currency)} left); it cannot be voided."
                )
        credit_entry_add(
            merchant_id=invoice.merchant_id,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=-entry.amount,
            kind=CustomerCreditKind.APPLIED_RETURNED,
            description=f"Invoice {invoice.number} voided",
            now=now,
            invoice=invoice,
        )


def credit_note_settle(note: CreditNote, invoice: Invoice, *, now: datetime) -> None:
    """Split a new credit note's total (caller holds the invoice's lock, the note is not saved yet): first what
    the invoice still owes, then customer credit or a refund per ``note.settlement``. Saves the invoice."""
    customer_credit_lock(invoice.customer_id)
    applied = min(note.total, invoice.amount_due) if invoice.status in OPEN_STATUSES else Decimal(0)
    rest = note.total - applied
    note.applied_to_due = applied
    if note.settlement == CreditNoteSettlement.REFUND:
        note.refunded, note.credited_to_balance = rest, Decimal(0)
    else:
        note.credited_to_balance, note.refunded = rest, Decimal(0)
    if applied > 0:
        invoice.amount_due -= applied
        # a credit note closing an invoice does not count as its payment (no activation, no grant fulfilment)
        invoice_settlement_save(invoice, at=now, paid_effects=False, by_payment=False)


def credit_note_settled(note: CreditNote, *, now: datetime) -> None:
    """After the note is saved: its customer credit entry and events."""
    if note.credited_to_balance > 0:
        credit_entry_add(
            merchant_id=note.merchant_id,
            customer_id=note.customer_id,
            currency=note.currency,
            amount=note.credited_to_balance,
            kind=CustomerCreditKind.CREDIT_NOTE,
            description=f"Credit note {note.number}",
            now=now,
            credit_note=note,
        )
    webhook_events.credit_note_issued_emit(credit_note=note, now=now)
    if note.refunded > 0:
        webhook_events.refund_created_emit(
            merchant_id=note.merchant_id,
            refund_id=note.pk,
            invoice_id=note.invoice_id,
            customer_id=note.customer_id,
            amount=note.refunded,
            currency=note.currency,
            created_at=note.issued_at,
            now=now,
            reason=note.reason,
        )


def credit_note_unsettle(note: CreditNote, invoice: Invoice, *, now: datetime) -> None:
    """Undo a credit note being voided (caller holds the invoice's and the note's locks): the customer credit it
    gave is taken back (refused when already used), what it took off the invoice is owed again."""
    customer_credit_lock(invoice.customer_id)
    if note.credited_to_balance > 0:
        balance = customer_credit_balance(customer_id=note.customer_id, currency=note.currency)
        if balance < note.credited_to_balance:
            raise InvoiceError(
                f"The customer credit of {note} was already used ({format_money(balance, note.currency)} left); "
                "it cannot be voided."
            )
        credit_entry_add(
            merchant_id=note.merchant_id,
            customer_id=note.customer_id,
            currency=note.currency,
            amount=-note.credited_to_balance,
            kind=CustomerCreditKind.CREDIT_NOTE_VOIDED,
            description=f"Credit note {note.number} voided",
            now=now,
            credit_note=note,
        )
    if note.applied_to_due > 0:
        invoice.amount_due += note.applied_to_due
        settled = (
            PaymentAllocation.objects.filter(invoice=invoice).exists()
            or CreditNote.objects.filter(invoice=invoice, status=CreditNoteStatus.ISSUED, applied_to_due__gt=0)
            .exclude(pk=note.pk)
            .exists()
        )
        if invoice.due_at is not None and invoice.due_at < now:
            invoice.status = InvoiceStatus.OVERDUE
        else:
            invoice.status = InvoiceStatus.PARTIALLY_PAID if settled else InvoiceStatus.ISSUED
        invoice.paid_at = None
        invoice.save(update_fields=["amount_due", "status", "paid_at", "updated_at"])

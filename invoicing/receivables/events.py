"""The merchant-facing events of receivables, one function per event and one call site each: each records
its signed webhook (``invoicing.webhook_events``, Standard Webhooks) inside the caller's transaction, so an
event exists exactly when what caused it commits."""

from __future__ import annotations

from datetime import datetime

from .. import webhook_events
from ..models import CreditNote, Invoice, Payment


def invoice_paid_emit(invoice: Invoice, *, now: datetime, grant_id: str | None = None) -> None:
    webhook_events.invoice_paid_emit(invoice=invoice, now=now, grant_id=grant_id)


def invoice_overdue_emit(invoice: Invoice, *, now: datetime) -> None:
    webhook_events.invoice_overdue_emit(invoice=invoice, now=now, due_at=invoice.due_at)


def payment_recorded_emit(payment: Payment, *, now: datetime) -> None:
    webhook_events.payment_recorded_emit(
        merchant_id=payment.merchant_id,
        payment_id=payment.pk,
        customer_id=payment.customer_id,
        amount=payment.amount,
        currency=payment.currency,
        method=payment.method,
        reference=payment.reference,
        received_at=payment.received_at,
        allocations=[(allocation.invoice_id, allocation.amount) for allocation in payment.allocations.all()],
        now=now,
    )


def credit_note_issued_emit(note: CreditNote, *, now: datetime) -> None:
    webhook_events.credit_note_issued_emit(credit_note=note, now=now)


def refund_created_emit(note: CreditNote, *, now: datetime) -> None:
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

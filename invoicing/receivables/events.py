"""The merchant-facing events of receivables, one function per event and one call site each.

LEAD: wire each function to the Standard Webhooks emitter of ``wallets/webhooks.py`` (``webhook_event_emit``)
when it lands; until then an event is logged (``meterline.events``) once the transaction that caused it
commits, with the payload it will carry. Callers never emit inside an open transaction themselves.
"""

from __future__ import annotations

import logging

from django.db import transaction

from core.formatting import decimal_string

from ..models import CreditNote, Invoice, Payment

logger = logging.getLogger("meterline.events")


def _emit(event_type: str, *, merchant_id: str, payload: dict) -> None:
    transaction.on_commit(
        lambda: logger.info("%s", event_type, extra={"event_type": event_type, "merchant_id": merchant_id, **payload})
    )


def invoice_paid_emit(invoice: Invoice) -> None:
    _emit("invoice.paid", merchant_id=invoice.merchant_id, payload={"invoiceId": invoice.pk})


def invoice_overdue_emit(invoice: Invoice) -> None:
    _emit(
        "invoice.overdue",
        merchant_id=invoice.merchant_id,
        payload={"invoiceId": invoice.pk, "amountDue": decimal_string(invoice.amount_due)},
    )


def payment_recorded_emit(payment: Payment) -> None:
    _emit(
        "payment.recorded",
        merchant_id=payment.merchant_id,
        payload={
            "paymentId": payment.pk,
            "customerId": payment.customer_id,
            "amount": decimal_string(payment.amount),
            "currency": payment.currency,
        },
    )


def credit_note_issued_emit(note: CreditNote) -> None:
    _emit(
        "credit_note.issued",
        merchant_id=note.merchant_id,
        payload={"creditNoteId": note.pk, "invoiceId": note.invoice_id},
    )


def refund_created_emit(note: CreditNote) -> None:
    _emit("refund.created", merchant_id=note.merchant_id, payload={"refundId": note.pk, "invoiceId": note.invoice_id})

"""The events invoicing sends to merchants (``wallets.webhooks``): their ``data`` and the calls that
record them. Each ``*_emit`` runs inside the transaction of the change it reports (deliveries are rows;
sending starts on commit) and is keyed by the object it is about, so it is delivered once per endpoint
however often it runs.

Who calls what:

- ``invoice_created_emit``: the invoice writer, billing runs and voiding with reissue (a new draft);
- ``invoice_issued_emit``: ``writer.invoice_issue`` (every path that numbers an invoice);
- ``invoice_paid_emit``: ``invoice_mark_paid``, ``invoice_record_payment``, a zero opening invoice paid at once;
- ``invoice_voided_emit``: ``invoice_void``;
- ``credit_note_issued_emit``: ``credit_note_issue``;
- ``subscription_created_emit`` / ``subscription_terminated_emit``: the subscription lifecycle and runs;
- ``invoice_overdue_emit``, ``refund_created_emit``, ``payment_recorded_emit``: receivables (due dates,
  refunds and payments as records), which call them from their own services.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from catalog.models import Subscription
from core.formatting import decimal_string, iso_utc
from wallets.models import WebhookEndpoint, WebhookEventType
from wallets.webhooks import webhook_event_emit

from .models import CreditNote, Invoice

Endpoints = Sequence[WebhookEndpoint] | None


def invoice_event_data(invoice: Invoice) -> dict:
    """The invoice as events carry it (no lines: fetch ``GET /v2/invoices/{invoiceId}`` for those)."""
    return {
        "invoiceId": invoice.pk,
        "number": invoice.number,
        "status": invoice.status,
        "kind": invoice.kind,
        "customerId": invoice.customer_id,
        "subscriptionId": invoice.subscription_id,
        "currency": invoice.currency,
        "subtotal": decimal_string(invoice.subtotal),
        "tax": decimal_string(invoice.tax),
        "total": decimal_string(invoice.total),
        "amountDue": decimal_string(invoice.amount_due),
        "periodStart": iso_utc(invoice.period_start),
        "periodEnd": iso_utc(invoice.period_end),
        "issuedAt": iso_utc(invoice.issued_at),
        "paidAt": iso_utc(invoice.paid_at),
        "voidedAt": iso_utc(invoice.voided_at),
    }


def _invoice_emit(event_type: str, invoice: Invoice, *, now: datetime, endpoints: Endpoints = None, **extra) -> None:
    webhook_event_emit(
        merchant_id=invoice.merchant_id,
        event_type=event_type,
        data={**invoice_event_data(invoice), **extra},
        now=now,
        key=invoice.pk,
        endpoints=endpoints,
    )


def invoice_created_emit(*, invoice: Invoice, now: datetime, endpoints: Endpoints = None) -> None:
    _invoice_emit(WebhookEventType.INVOICE_CREATED, invoice, now=now, endpoints=endpoints)


def invoice_issued_emit(*, invoice: Invoice, now: datetime, endpoints: Endpoints = None) -> None:
    _invoice_emit(WebhookEventType.INVOICE_ISSUED, invoice, now=now, endpoints=endpoints)


def invoice_paid_emit(*, invoice: Invoice, now: datetime, grant_id: str | None = None) -> None:
    """``invoice.paid.v0``; ``grantId`` names the entitlement grant a grant purchase bought (else null), as
    Paygentic's grant purchase documents it."""
    _invoice_emit(WebhookEventType.INVOICE_PAID, invoice, now=now, grantId=grant_id)


def invoice_overdue_emit(*, invoice: Invoice, now: datetime, due_at: datetime) -> None:
    """For receivables: the invoice passed its due date unpaid (once per invoice)."""
    _invoice_emit(WebhookEventType.INVOICE_OVERDUE, invoice, now=now, dueAt=iso_utc(due_at))


def invoice_voided_emit(*, invoice: Invoice, now: datetime, replacement: Invoice | None = None) -> None:
    _invoice_emit(
        WebhookEventType.INVOICE_VOIDED,
        invoice,
        now=now,
        voidReason=invoice.void_reason,
        replacementInvoiceId=replacement.pk if replacement is not None else None,
    )


def credit_note_issued_emit(*, credit_note: CreditNote, now: datetime) -> None:
    webhook_event_emit(
        merchant_id=credit_note.merchant_id,
        event_type=WebhookEventType.CREDIT_NOTE_ISSUED,
        data={
            "creditNoteId": credit_note.pk,
            "number": credit_note.number,
            "invoiceId": credit_note.invoice_id,
            "customerId": credit_note.customer_id,
            "currency": credit_note.currency,
            "subtotal": decimal_string(credit_note.subtotal),
            "tax": decimal_string(credit_note.tax),
            "total": decimal_string(credit_note.total),
            "reason": credit_note.reason,
            "issuedAt": iso_utc(credit_note.issued_at),
        },
        now=now,
        key=credit_note.pk,
    )


def refund_created_emit(
    *,
    merchant_id: str,
    refund_id: str,
    invoice_id: str,
    customer_id: str,
    amount: Decimal,
    currency: str,
    created_at: datetime,
    now: datetime,
    reason: str = "",
) -> None:
    """For receivables: a refund was recorded (``refund_id``: the refund's id, a credit note ``crn_…`` in
    Paygentic's API)."""
    webhook_event_emit(
        merchant_id=merchant_id,
        event_type=WebhookEventType.REFUND_CREATED,
        data={
            "refundId": refund_id,
            "invoiceId": invoice_id,
            "customerId": customer_id,
            "amount": decimal_string(amount),
            "currency": currency,
            "reason": reason,
            "createdAt": iso_utc(created_at),
        },
        now=now,
        key=refund_id,
    )


def payment_recorded_emit(
    *,
    merchant_id: str,
    payment_id: str,
    customer_id: str,
    amount: Decimal,
    currency: str,
    method: str,
    reference: str,
    received_at: datetime,
    allocations: Sequence[tuple[str, Decimal]],
    now: datetime,
) -> None:
    """For receivables: a payment was recorded; ``allocations``: (invoice id, amount applied) pairs."""
    webhook_event_emit(
        merchant_id=merchant_id,
        event_type=WebhookEventType.PAYMENT_RECORDED,
        data={
            "paymentId": payment_id,
            "customerId": customer_id,
            "amount": decimal_string(amount),
            "currency": currency,
            "method": method,
            "reference": reference,
            "receivedAt": iso_utc(received_at),
            "allocations": [
                {"invoiceId": invoice_id, "amount": decimal_string(applied)} for invoice_id, applied in allocations
            ],
        },
        now=now,
        key=payment_id,
    )


def subscription_event_data(subscription: Subscription) -> dict:
    return {
        "subscriptionId": subscription.pk,
        "customerId": subscription.customer_id,
        "planId": subscription.plan_id,
        "status": subscription.status,
        "startedAt": iso_utc(subscription.started_at),
        "endingAt": iso_utc(subscription.ending_at),
        "terminatedAt": iso_utc(subscription.terminated_at),
        "terminationReason": subscription.termination_reason,
    }


def subscription_created_emit(*, subscription: Subscription, now: datetime) -> None:
    webhook_event_emit(
        merchant_id=subscription.merchant_id,
        event_type=WebhookEventType.SUBSCRIPTION_CREATED,
        data=subscription_event_data(subscription),
        now=now,
        key=subscription.pk,
    )


def subscription_terminated_emit(*, subscription: Subscription, now: datetime, endpoints: Endpoints = None) -> None:
    webhook_event_emit(
        merchant_id=subscription.merchant_id,
        event_type=WebhookEventType.SUBSCRIPTION_TERMINATED,
        data=subscription_event_data(subscription),
        now=now,
        key=subscription.pk,
        endpoints=endpoints,
    )

"""Delivery: issued invoices and credit notes e-mailed to the customer, logged per document.

Issuing a document queues its delivery in the issuing transaction (``document_delivery_queue``; a
rolled-back issue e-mails nobody, and the row is the outbox: a send lost with its worker is found by
``document_deliveries_send_due``); the send starts after commit (``document_delivery_send_task``). A send
cannot be rolled back, so it runs outside any transaction: a worker first leases the row (one UPDATE,
so two workers never send it together), sends, then records the result (one UPDATE). A temporary failure
(a 4xx answer, a server that cannot be reached) is retried with exponential back-off; a refusal (5xx) or
the last attempt fails the delivery with the server's answer.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.db.models import Q

from catalog.models import Subscription

from .. import metrics
from ..delivery import archive_copy, delivery_message, merchant_sender, send_error_is_permanent, send_error_text
from ..models import (
    COLLECTION_REASONS,
    OPEN_STATUSES,
    CreditNote,
    DeliveryReason,
    DeliverySettings,
    DeliveryStatus,
    DocumentDelivery,
    Invoice,
    InvoiceError,
    InvoiceStatus,
)

logger = logging.getLogger(__name__)

DELIVERY_MAX_ATTEMPTS = 6
DELIVERY_RETRY_BASE = timedelta(minutes=1)  # 1, 2, 4, 8, 16 minutes: the last attempt ~31 min after the first
# While one worker sends, the delivery is leased: nobody else picks it up until the lease runs out. Longer
# than a send can take (SMTP timeout EMAIL_TIMEOUT, 30 s by default, per connect/command).
SEND_LEASE = timedelta(minutes=5)
TEST_CLOCK_SKIP = "On a test clock: simulated documents and reminders are not e-mailed (a resend sends one)."
SETTLED_SKIP = "The invoice was paid, credited or voided before the message was sent."


def delivery_retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt."""
    return DELIVERY_RETRY_BASE * (2 ** (attempts - 1))


def document_delivery_queue(
    *,
    document: Invoice | CreditNote,
    now: datetime,
    reason: str = DeliveryReason.ISSUED,
    requested_by: str = "",
    values: dict[str, str] | None = None,
) -> DocumentDelivery:
    """Log a delivery of ``document`` and send it once the caller's transaction commits (the caller holds
    the transaction). An ``issued`` delivery exists at most once per document (a constraint); a document
    issued on a test clock is logged as not sent. ``values``: plain template values of this message besides
    the document's (a payment's failure reason)."""
    invoice = document if isinstance(document, Invoice) else None
    note = document if isinstance(document, CreditNote) else None
    subscription_id = invoice.subscription_id if invoice else note.invoice.subscription_id
    simulated = (
        reason in (DeliveryReason.ISSUED, *COLLECTION_REASONS)
        and Subscription.objects.filter(pk=subscription_id, test_clock__isnull=False).exists()
    )
    delivery = DocumentDelivery.objects.create(
        merchant_id=document.merchant_id,
        invoice=invoice,
        credit_note=note,
        reason=reason,
        status=DeliveryStatus.SKIPPED if simulated else DeliveryStatus.QUEUED,
        error=TEST_CLOCK_SKIP if simulated else "",
        requested_by=requested_by,
        values=values or {},
        queued_at=now,
        next_attempt_at=None if simulated else now,
    )
    if not simulated:
        from ..tasks import document_delivery_send_task

        transaction.on_commit(partial(document_delivery_send_task.delay, delivery.pk))
    return delivery


def document_delivery_resend(*, document: Invoice | CreditNote, now: datetime, requested_by: str) -> DocumentDelivery:
    """E-mail an issued (or paid) invoice or a credit note again, to the customer's billing e-mails as they
    are now, whatever the merchant's delivery settings say: a new ``resend`` row of the delivery log."""
    if isinstance(document, Invoice) and document.status not in (InvoiceStatus.ISSUED, InvoiceStatus.PAID):
        raise InvoiceError(f"Invoice {document} is {document.status}; only issued or paid invoices are e-mailed.")
    with transaction.atomic():
        return document_delivery_queue(
            document=document, now=now, reason=DeliveryReason.RESEND, requested_by=requested_by
        )


def _skip_reason(delivery: DocumentDelivery, delivery_settings: DeliverySettings | None) -> str:
    """Why an ``issued`` delivery or a reminder is not to be sent ("" to send it); a resend is always sent."""
    if delivery.reason in COLLECTION_REASONS:
        # Dunning and payment notices stop the moment the invoice is settled, also between queueing a message
        # and sending it.
        invoice = delivery.invoice
        return "" if invoice.status in OPEN_STATUSES and invoice.amount_due > 0 else SETTLED_SKIP
    if delivery.reason != DeliveryReason.ISSUED:
        return ""
    if delivery_settings is not None and not delivery_settings.enabled:
        return "E-mailing documents when issued is off for this merchant (Delivery settings)."
    if (
        delivery.invoice_id
        and delivery.invoice.total == 0
        and not (delivery_settings and delivery_settings.send_zero_total)
    ):
        return "The invoice total is zero; zero-total invoices are not e-mailed (Delivery settings)."
    return ""


def _record(delivery: DocumentDelivery, result: str, **changes) -> DocumentDelivery:
    for name, value in changes.items():
        setattr(delivery, name, value)
    delivery.save(update_fields=list(changes))
    metrics.DOCUMENT_DELIVERY_ATTEMPTS.labels(result=result).inc()
    return delivery


def document_delivery_send(*, delivery_id: int, now: datetime) -> DocumentDelivery:
    """Send one queued delivery that is due and record the result: sent; queued again after
    ``delivery_retry_delay(attempts)`` on a temporary error; failed on a refusal or after
    ``DELIVERY_MAX_ATTEMPTS``; skipped when the merchant's settings say not to e-mail it. A delivery that is
    not due, or being sent by another worker, is returned as it is."""
    claimed = DocumentDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.QUEUED, next_attempt_at__lte=now
    ).update(next_attempt_at=now + SEND_LEASE)
    delivery = DocumentDelivery.objects.select_related(
        "merchant",
        "invoice__merchant",
        "invoice__customer",
        "invoice__subscription",
        "credit_note__merchant",
        "credit_note__customer",
        "credit_note__invoice__customer",
    ).get(pk=delivery_id)
    if not claimed:
        return delivery
    delivery_settings = DeliverySettings.objects.filter(merchant_id=delivery.merchant_id).first()
    skip = _skip_reason(delivery, delivery_settings)
    if skip:
        return _record(delivery, "skipped", status=DeliveryStatus.SKIPPED, error=skip, next_attempt_at=None)
    sender = merchant_sender(delivery.merchant, delivery_settings)
    recipients = delivery.document.customer.billing_recipients
    attempts = delivery.attempts + 1
    try:
        message = delivery_message(delivery, recipients=recipients, sender=sender)
    except Exception as error:  # a template or document that cannot be rendered: the same input fails again
        logger.exception("The e-mail of delivery %s could not be composed", delivery.pk)
        return _record(
            delivery,
            "failed",
            status=DeliveryStatus.FAILED,
            attempts=attempts,
            last_attempt_at=now,
            next_attempt_at=None,
            recipients=recipients,
            sender=sender.from_email,
            error=f"The message could not be composed: {send_error_text(error)}"[:2000],
        )
    sent_fields = {
        "attempts": attempts,
        "last_attempt_at": now,
        "recipients": recipients,
        "sender": sender.from_email,
        "subject": message.subject,
        "message_id": message.extra_headers["Message-ID"],
    }
    try:
        message.send()
    except Exception as error:
        text = send_error_text(error)[:2000]
        if send_error_is_permanent(error) or attempts >= DELIVERY_MAX_ATTEMPTS:
            logger.warning("Delivery %s failed after %s attempt(s): %s", delivery.pk, attempts, text)
            return _record(
                delivery, "failed", status=DeliveryStatus.FAILED, error=text, next_attempt_at=None, **sent_fields
            )
        return _record(
            delivery, "retry", error=text, next_attempt_at=now + delivery_retry_delay(attempts), **sent_fields
        )
    if sender.bcc:
        try:
            archive_copy(message, sender.bcc).send()
        except Exception as error:  # the customer has it; the archive copy is best effort
            logger.warning("The BCC copy of delivery %s was not sent: %s", delivery.pk, send_error_text(error))
    # django-anymail reports the provider's own id, which its tracking events (bounces) carry.
    status = getattr(message, "anymail_status", None)
    provider_id = str(getattr(status, "message_id", "") or "")
    return _record(
        delivery,
        "sent",
        status=DeliveryStatus.SENT,
        sent_at=now,
        error="",
        next_attempt_at=None,
        provider_message_id=provider_id[:255],
        **sent_fields,
    )


def document_deliveries_send_due(*, now: datetime, limit: int = 50) -> list[DocumentDelivery]:
    """Attempt every queued delivery that is due: retries, and sends whose task was lost (beat, every minute)."""
    due = DocumentDelivery.objects.filter(status=DeliveryStatus.QUEUED, next_attempt_at__lte=now).order_by(
        "next_attempt_at", "id"
    )
    return [document_delivery_send(delivery_id=pk, now=now) for pk in list(due.values_list("pk", flat=True)[:limit])]


# What a mail provider's tracking event means for a sent delivery (django-anymail's event types).
PROVIDER_EVENTS = {
    "bounced": DeliveryStatus.BOUNCED,
    "rejected": DeliveryStatus.FAILED,
    "failed": DeliveryStatus.FAILED,
}


def document_delivery_provider_event(*, message_id: str, event_type: str, description: str, now: datetime) -> int:
    """Record a mail provider's report on a sent message (a bounce, a rejection) by its message id;
    returns how many deliveries it changed (0: not ours, or an event that changes nothing)."""
    status = PROVIDER_EVENTS.get(event_type)
    if status is None or not message_id:
        return 0
    with transaction.atomic():
        return DocumentDelivery.objects.filter(
            Q(provider_message_id=message_id) | Q(message_id=message_id), status=DeliveryStatus.SENT
        ).update(
            status=status,
            error=(description or event_type)[:2000],
            bounced_at=now if status == DeliveryStatus.BOUNCED else None,
        )

"""Charging a failed invoice again (payments/README.md, "Retries and the customer's e-mails"): on the merchant's
schedule (the beat task ``payments.invoice_payment_retries_due``) or now, on request (the client's
``POST /v2/invoices/{id}/retryPayment``).

A retry is attempt n + 1 of the invoice through the protocol of ``charges``: claimed in one short transaction
under the invoice's lock (re-checked: open, money due, autoCharge, no attempt in flight), inserted pending under
the unique (invoice, number), on the customer's default method as it is now (a card replaced since is the one
charged), then charged with the key ``meterline-charge-{invoice}-{n + 1}`` and recorded by
``charges.attempt_charge``. Two workers, or the sweep and a request, claiming the same retry: one inserts it,
the other finds it in flight. A paid, credited or voided invoice, or one with nothing due, is never retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from invoicing.models import OPEN_STATUSES, Invoice, InvoiceStatus
from invoicing.receivables.locks import invoices_lock

from . import selectors
from .charges import ChargeClaim, attempt_charge, attempt_insert, chargeable
from .models import AttemptTrigger, IntegrationStatus, PaymentAttempt, PaymentAttemptStatus, Provider
from .providers import PaymentProviderError

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 100
# The client's contract: one requested retry per invoice and minute (a card is not hammered by a loop).
REQUEST_INTERVAL = timedelta(minutes=1)
IN_FLIGHT = (PaymentAttemptStatus.PENDING, PaymentAttemptStatus.PROCESSING)


@dataclass
class RetryRefused(Exception):
    """Why an invoice cannot be charged again now; ``code`` is the client's ``error.code``."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


NOT_CONNECTED = "PAYMENT_PROVIDER_NOT_CONNECTED"
ALREADY_PAID = "PAYMENT_ALREADY_COMPLETED"
NOT_PAYABLE = "INVOICE_NOT_PAYABLE"
AUTO_CHARGE_OFF = "AUTO_CHARGE_OFF"
CONCURRENT = "concurrent_attempt"
PROCESSING = "PAYMENT_PROCESSING"
NO_METHOD = "no_payment_method"
TOO_SOON = "RATE_LIMITED"


def invoice_payment_retry(*, invoice_id: str, now: datetime) -> PaymentAttempt | None:
    """The scheduled retry of one invoice, if it is due (its latest attempt failed and its ``next_retry_at``
    has come): charged and recorded; None when nothing is due or another worker holds it. A retryable
    ``PaymentProviderError`` propagates with the attempt pending (``invoices_auto_charge_due`` resumes it
    after the lease, with the same key)."""
    claim = _retry_claim(invoice_id=invoice_id, now=now, trigger=AttemptTrigger.RETRY)
    if claim is None:
        return None
    return attempt_charge(claim=claim, now=now)


def invoice_payment_retry_now(*, invoice: Invoice, now: datetime, reason: str = "") -> PaymentAttempt:
    """Charge the invoice again now, at the customer's request or finance's (the client's retryPayment): the
    next attempt, whatever the schedule. Raises ``RetryRefused`` when it cannot be (paid, not open, autoCharge
    off, no provider, no method, an attempt in flight, one requested less than a minute ago), and a
    ``PaymentProviderError`` when the provider refused or could not be reached (a retryable one leaves the
    attempt pending). Returns the recorded attempt; the scheduled retries keep their times."""
    claim = _retry_claim(invoice_id=invoice.pk, now=now, trigger=AttemptTrigger.REQUESTED, reason=reason)
    if claim is None:
        raise RetryRefused(CONCURRENT, "Another payment attempt for this invoice is in progress.")
    attempt = attempt_charge(claim=claim, now=now)
    if attempt is None:
        raise RetryRefused(NOT_CONNECTED, "The payment provider was disconnected during the retry.")
    return attempt


@transaction.atomic
def _retry_claim(*, invoice_id: str, now: datetime, trigger: str, reason: str = "") -> ChargeClaim | None:
    requested = trigger == AttemptTrigger.REQUESTED
    invoice = invoices_lock([invoice_id]).get(invoice_id)
    if invoice is None:
        return None
    try:
        _check_retryable(invoice)
    except RetryRefused:
        if requested:
            raise
        return None
    latest = PaymentAttempt.objects.filter(invoice=invoice).order_by("-number").first()
    if latest is not None and latest.status in IN_FLIGHT:
        if requested:
            if latest.status == PaymentAttemptStatus.PROCESSING:
                raise RetryRefused(PROCESSING, "The last payment of this invoice is still being processed.")
            raise RetryRefused(CONCURRENT, "Another payment attempt for this invoice is in progress.")
        return None
    if requested:
        if latest is not None and latest.created_at > now - REQUEST_INTERVAL:
            raise RetryRefused(TOO_SOON, "This invoice was charged less than a minute ago; try again in a minute.")
        if selectors.payment_method_default(customer=invoice.customer) is None:
            raise RetryRefused(
                NO_METHOD, "The customer has no usable saved payment method: send them the invoice's payment link."
            )
    elif latest is None or latest.next_retry_at is None or latest.next_retry_at > now:
        return None  # not due (re-checked under the lock: another worker may have claimed it just now)
    if latest is not None and latest.next_retry_at is not None:
        # This attempt consumes the latest's retry slot (a requested retry too: the next scheduled one is
        # computed again from this attempt's outcome). The column only, not updated_at: the first failure's time.
        PaymentAttempt.objects.filter(pk=latest.pk).update(next_retry_at=None)
    number = latest.number + 1 if latest is not None else 1
    return attempt_insert(invoice=invoice, number=number, trigger=trigger, now=now, requested_reason=reason)


def _check_retryable(invoice: Invoice) -> None:
    if selectors.integration_active(merchant_id=invoice.merchant_id) is None:
        raise RetryRefused(NOT_CONNECTED, "No payment provider is connected for this merchant: connect Stripe first.")
    if invoice.status == InvoiceStatus.PAID:
        raise RetryRefused(ALREADY_PAID, "The invoice is paid.")
    if invoice.status not in OPEN_STATUSES:
        raise RetryRefused(NOT_PAYABLE, f"The invoice is {invoice.get_status_display().lower()}, not open.")
    if invoice.amount_due <= 0:
        raise RetryRefused(ALREADY_PAID, "Nothing is due on the invoice.")
    if not chargeable(invoice):
        raise RetryRefused(AUTO_CHARGE_OFF, "Automatic charge is off for the invoice's subscription.")


def invoices_payment_retry_due(*, now: datetime, limit: int = DEFAULT_BATCH) -> list[PaymentAttempt]:
    """Retry up to ``limit`` invoices whose scheduled retry has come (``payment_retry_due_invoices``), each in
    its own claim, charge and record; a provider error on one is logged and the others go on."""
    attempts = []
    for invoice_id in payment_retry_due_invoices(now=now)[:limit].values_list("pk", flat=True):
        try:
            attempt = invoice_payment_retry(invoice_id=invoice_id, now=now)
        except PaymentProviderError as error:
            logger.warning("payment retry of invoice %s: %s (%s)", invoice_id, error.message, error.code)
            continue
        if attempt is not None:
            attempts.append(attempt)
    return attempts


def payment_retry_due_invoices(*, now: datetime) -> QuerySet[Invoice]:
    """Open invoices with money due of autoCharge subscriptions, of merchants whose Stripe is connected, with
    a failed attempt whose next retry has come (only the latest attempt can carry one). Longest waiting first."""
    due = PaymentAttempt.objects.filter(invoice=OuterRef("pk"), next_retry_at__lte=now)
    return (
        Invoice.objects.filter(
            Exists(due),
            status__in=OPEN_STATUSES,
            amount_due__gt=0,
            subscription__auto_charge=True,
            merchant__payment_integrations__provider=Provider.STRIPE,
            merchant__payment_integrations__status=IntegrationStatus.ACTIVE,
        )
        .order_by("payment_failed_at", "pk")
        .distinct()
    )

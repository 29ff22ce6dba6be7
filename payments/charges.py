"""Automatic charge of issued invoices, exactly once (payments/README.md, "Automatic charge").

The protocol, three steps, no row lock held across the network:

1. **Claim** (one short transaction): lock the invoice (receivables' lock order), re-check it is open with
   money due and of an ``autoCharge`` subscription, and insert attempt 1 as ``pending`` with the amount due,
   the currency and the customer's default method. The unique (invoice, attempt number) decides between two
   workers; the one that finds a pending attempt claimed less than ``CLAIM_LEASE`` ago leaves it to its owner,
   one claimed earlier (its worker died between the call and the record) is resumed.
2. **Charge** (no transaction): an off-session PaymentIntent with the idempotency key
   ``meterline-charge-{invoice}-{attempt}``: the same attempt is the same key, so a resumed attempt, a re-sent
   task or a second worker gets Stripe's first answer back, never a second charge. Stripe forgets a key after
   24 hours: an attempt resumed later than ``IDEMPOTENCY_KEY_LIFETIME`` after its claim first looks for the
   PaymentIntent its first call made (by the attempt's metadata) and records that one if there is one.
3. **Record** (one short transaction, ``attempt_outcome_record``): lock the invoice, then the attempt, and unless
   another worker or a provider event (``payments.webhooks``) recorded it already, write the outcome. Success
   records a ``Payment`` (method card, reference ``pi_…``, idempotency key ``charge-{pi_…}``) through
   ``invoicing.receivables.payment_record``, linked one-to-one to the attempt; a decline flags the invoice
   ``PAYMENT_FAILED`` (``invoice_payment_failed_mark``) with Stripe's reason; ``requires_action`` (3-D Secure)
   is recorded. A failed attempt gets its next retry time from the merchant's schedule (``retry_schedule``),
   and a failed or ``requires_action`` attempt its customer e-mail (``notices``), in the same transaction.

Invoicing never imports this module (layer contract); the beat task ``payments.invoices_auto_charge_due``
finds what to charge. Retries (``payments.retries``) claim attempt n + 1 and then charge and record through
``attempt_charge`` here: the same protocol, the same key scheme.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet

from invoicing.models import OPEN_STATUSES, Invoice
from invoicing.receivables import InvoicePaymentError, invoice_payment_failed_mark, payment_record
from invoicing.receivables.locks import invoices_lock

from . import selectors
from .gateway import integration_provider
from .models import AttemptTrigger, IntegrationStatus, PaymentAttempt, PaymentAttemptStatus, PaymentMethod, Provider
from .notices import attempt_notice_queue
from .providers import IDEMPOTENCY_KEY_LIFETIME, ChargeResult, ChargeStatus, PaymentProviderError
from .retry_schedule import attempt_retry_next_at

logger = logging.getLogger(__name__)

# A pending attempt younger than this belongs to the worker that claimed it (its provider call is under way);
# an older one was left by a worker that died, and is resumed with the same idempotency key. Longer than the
# library's request timeout with its retries.
CLAIM_LEASE = timedelta(minutes=10)
FIRST_ATTEMPT = 1
NO_PAYMENT_METHOD = "no_payment_method"
DEFAULT_BATCH = 100


@dataclass(frozen=True)
class ChargeClaim:
    """A claimed attempt and what to charge: the provider's customer and method references ("" when the
    attempt was recorded failed at the claim, without a method)."""

    attempt: PaymentAttempt
    provider_customer: str
    payment_method: str

    @classmethod
    def of(cls, attempt: PaymentAttempt, method: PaymentMethod | None) -> ChargeClaim:
        if method is None:
            return cls(attempt=attempt, provider_customer="", payment_method="")
        return cls(
            attempt=attempt, provider_customer=method.provider_customer.reference, payment_method=method.reference
        )


def charge_idempotency_key(attempt: PaymentAttempt) -> str:
    return f"meterline-charge-{attempt.invoice_id}-{attempt.number}"


def invoice_auto_charge(*, invoice_id: str, now: datetime) -> PaymentAttempt | None:
    """Charge the invoice's amount due to its customer's default method, off-session, exactly once.

    Returns the attempt (its ``status`` says how it ended), or None when there is nothing to charge (not an
    open invoice of an autoCharge subscription with money due, no connected provider) or another worker holds
    the charge. A retryable ``PaymentProviderError`` (Stripe unreachable, rate limited) propagates with the attempt left
    pending: the next run resumes it once the lease ends, with the same key. A refusal of the request itself
    fails the attempt with Stripe's code."""
    claim = _claim(invoice_id=invoice_id, now=now)
    if claim is None:
        return None
    return attempt_charge(claim=claim, now=now)


def attempt_charge(*, claim: ChargeClaim, now: datetime) -> PaymentAttempt | None:
    """Steps 2 and 3 of a claimed attempt (see the module): charge with the attempt's key, record the outcome.
    A retryable provider error propagates with the attempt left pending (resumed after the lease)."""
    attempt = claim.attempt
    if attempt.status != PaymentAttemptStatus.PENDING:
        return attempt  # recorded at the claim (no payment method)
    integration = selectors.integration_active(merchant_id=attempt.invoice.merchant_id)
    if integration is None:
        return None  # disconnected since the claim: the lease ends and a later run decides
    provider = integration_provider(integration)
    metadata = {"meterline_invoice": attempt.invoice_id, "meterline_attempt": str(attempt.number)}
    try:
        found = None
        if now - attempt.created_at >= IDEMPOTENCY_KEY_LIFETIME:
            # The provider may have forgotten the attempt's key: replaying it could charge a second time, so
            # look for the charge the first call made before calling again.
            found = provider.charge_find(provider_customer=claim.provider_customer, metadata=metadata)
        result = found or provider.invoice_charge(
            provider_customer=claim.provider_customer,
            payment_method=claim.payment_method,
            amount=attempt.amount,
            currency=attempt.currency,
            idempotency_key=charge_idempotency_key(attempt),
            description=f"Invoice {attempt.invoice.number}",
            metadata=metadata,
        )
    except PaymentProviderError as error:
        if error.retryable or error.code == "idempotency_key_in_use":
            # left pending: resumed after the lease with the same key (a 409 means the same charge is still
            # under way at Stripe from the attempt's first call, whose outcome the replay will return)
            raise
        # Stripe refused the request itself (a method removed there, a customer of another account): nothing
        # was charged and the same call would be refused again, so the attempt fails with Stripe's reason.
        result = ChargeResult(
            status=ChargeStatus.FAILED,
            reference="",
            amount=attempt.amount,
            currency=attempt.currency,
            failure_code=error.code or "provider_refused",
            failure_message=error.message,
        )
    return _record(attempt_id=attempt.pk, result=result, now=now)


@transaction.atomic
def _claim(*, invoice_id: str, now: datetime) -> ChargeClaim | None:
    invoice = invoices_lock([invoice_id]).get(invoice_id)
    if invoice is None:
        return None
    integration = selectors.integration_active(merchant_id=invoice.merchant_id)
    if integration is None:
        return None
    attempt = PaymentAttempt.objects.filter(invoice=invoice).order_by("-number").first()
    if attempt is not None:
        if attempt.status != PaymentAttemptStatus.PENDING or attempt.updated_at > now - CLAIM_LEASE:
            return None  # charged already (its retries are payments.retries'), or being charged right now
        # A worker died between its claim and its record: resume the same attempt (same key, same charge),
        # even if the invoice was settled since: Stripe may have taken the money, and replaying the key is
        # how we learn it (recorded as customer credit then).
        attempt.updated_at = now
        attempt.save(update_fields=["updated_at"])
        method = attempt.payment_method
    elif not chargeable(invoice):
        return None
    else:
        return attempt_insert(invoice=invoice, number=FIRST_ATTEMPT, trigger=AttemptTrigger.AUTOMATIC, now=now)
    return ChargeClaim.of(attempt, method)


def chargeable(invoice: Invoice) -> bool:
    """An open invoice with money due, of an autoCharge subscription: what is charged, first or again."""
    return invoice.status in OPEN_STATUSES and invoice.amount_due > 0 and invoice.subscription.auto_charge


def attempt_insert(
    *, invoice: Invoice, number: int, trigger: str, now: datetime, requested_reason: str = ""
) -> ChargeClaim | None:
    """Step 1's insert, under the caller's transaction and invoice lock: attempt ``number`` of the invoice's
    amount due on the customer's default method as it is now, pending; or, without a method, recorded failed
    at once (``no_payment_method``: the invoice flagged, the next retry scheduled, the customer e-mailed).
    None when another worker inserted that number first."""
    method = selectors.payment_method_default(customer=invoice.customer)
    attempt = PaymentAttempt(
        invoice=invoice,
        number=number,
        amount=invoice.amount_due,
        currency=invoice.currency,
        provider=Provider.STRIPE,
        payment_method=method,
        trigger=trigger,
        requested_reason=requested_reason[:500],
        created_at=now,
        updated_at=now,
    )
    if method is None:
        attempt.status = PaymentAttemptStatus.FAILED
        attempt.failure_code = NO_PAYMENT_METHOD
        attempt.failure_message = "The customer has no payment method saved for automatic charges."
        attempt.next_retry_at = attempt_retry_next_at(attempt=attempt, failed_at=now)
    try:
        with transaction.atomic():
            attempt.save(force_insert=True)
    except IntegrityError:
        return None  # claimed by another worker (the invoice lock makes this rare: a second path)
    if method is None:
        invoice_payment_failed_mark(invoice_id=invoice.pk, at=now)
        attempt.notice = attempt_notice_queue(attempt=attempt, invoice=invoice, now=now)
        attempt.save(update_fields=["notice"])
    return ChargeClaim.of(attempt, method)


def _record(*, attempt_id: str, result: ChargeResult, now: datetime) -> PaymentAttempt:
    return attempt_outcome_record(attempt_id=attempt_id, result=result, now=now)[0]


# Which recorded statuses an outcome may replace. The charge call's answer and the provider's events (webhooks,
# in any order, any number of times) all record through here: a success is final (a late failure or 3-D Secure
# event never un-pays) and wins over anything before it (the money was taken); a failure replaces only a status
# that was still open; ``requires_action`` and ``processing`` only what came before them.
_REPLACES = {
    PaymentAttemptStatus.SUCCEEDED: frozenset(PaymentAttemptStatus) - {PaymentAttemptStatus.SUCCEEDED},
    PaymentAttemptStatus.FAILED: frozenset(
        {PaymentAttemptStatus.PENDING, PaymentAttemptStatus.PROCESSING, PaymentAttemptStatus.REQUIRES_ACTION}
    ),
    PaymentAttemptStatus.REQUIRES_ACTION: frozenset({PaymentAttemptStatus.PENDING, PaymentAttemptStatus.PROCESSING}),
    PaymentAttemptStatus.PROCESSING: frozenset({PaymentAttemptStatus.PENDING}),
}


@transaction.atomic
def attempt_outcome_record(*, attempt_id: str, result: ChargeResult, now: datetime) -> tuple[PaymentAttempt, bool]:
    """Record how the attempt's charge ended: from the charge call's answer (step 3) or from a provider event
    about its PaymentIntent (``payments.webhooks``), whichever comes first, as often as it comes. Returns the
    attempt and whether this changed it (False: recorded already, or an outcome older than the recorded one).

    Exactly one ``Payment`` per PaymentIntent: the attempt is locked (after its invoice, receivables' order) and
    linked one-to-one to its payment, whose idempotency key ``charge-{pi_…}`` is unique per merchant."""
    # The lock order of the claim: the invoice (receivables' order), then the attempt. A late record of a worker
    # whose lease ended meets the resuming worker's claim (or a webhook) in the same order, never in a deadlock.
    invoice_id = PaymentAttempt.objects.values_list("invoice_id", flat=True).get(pk=attempt_id)
    invoices_lock([invoice_id])
    attempt = (
        PaymentAttempt.objects.select_for_update(of=("self",))
        .select_related("invoice__customer", "payment_method")
        .get(pk=attempt_id)
    )
    status = PaymentAttemptStatus(result.status.value)
    if attempt.status not in _REPLACES[status]:
        return attempt, False  # recorded by the worker, event or call that came first: same PaymentIntent
    if attempt.reference and result.reference and attempt.reference != result.reference:
        logger.warning("attempt %s is %s, not %s: outcome ignored", attempt.pk, attempt.reference, result.reference)
        return attempt, False
    attempt.reference = result.reference or attempt.reference or None
    attempt.status = status
    attempt.failure_code = result.failure_code
    attempt.failure_message = result.failure_message
    attempt.updated_at = now
    if status is PaymentAttemptStatus.SUCCEEDED:
        attempt.payment = _payment_record(attempt, result=result, now=now)
    elif status is PaymentAttemptStatus.FAILED:
        invoice_payment_failed_mark(invoice_id=attempt.invoice_id, at=now)
        if attempt.invoice.status in OPEN_STATUSES:
            attempt.next_retry_at = attempt_retry_next_at(attempt=attempt, failed_at=now)
    if status is not PaymentAttemptStatus.FAILED:
        attempt.next_retry_at = None  # a failed attempt the customer then paid (on Stripe's page) is not retried
    if attempt.invoice.status in OPEN_STATUSES:  # settled meanwhile: nothing to tell the customer
        # A success queues nothing; an earlier notice of this attempt (3-D Secure, then declined) stays linked
        # unless a new one replaces it.
        attempt.notice = attempt_notice_queue(attempt=attempt, invoice=attempt.invoice, now=now) or attempt.notice
    attempt.save()
    return attempt, True


def _payment_record(attempt: PaymentAttempt, *, result: ChargeResult, now: datetime):
    invoice = attempt.invoice
    kwargs = {
        "customer": invoice.customer,
        "currency": result.currency,
        "amount": result.amount,
        "method": "card",
        "received_at": now,
        "now": now,
        "reference": result.reference,
        "recorded_by": "",
        "idempotency_key": f"charge-{result.reference}",
    }
    try:
        with transaction.atomic():
            return payment_record(invoice_ids=[invoice.pk], **kwargs)
    except InvoicePaymentError as error:
        # Settled meanwhile (paid out of band, credited, voided): the money was taken all the same, so it is
        # recorded against no invoice and becomes the customer's credit, never lost.
        logger.warning("charge %s of invoice %s: %s; recorded as customer credit", result.reference, invoice.pk, error)
        return payment_record(invoice_ids=[], **kwargs)


def invoices_auto_charge_due(*, now: datetime, limit: int = DEFAULT_BATCH) -> list[PaymentAttempt]:
    """Charge up to ``limit`` due invoices (``auto_charge_due_invoices``), each in its own claim, charge and
    record; a provider error on one is logged and the others go on (the pending attempt is resumed later)."""
    attempts = []
    for invoice_id in auto_charge_due_invoices(now=now)[:limit].values_list("pk", flat=True):
        try:
            attempt = invoice_auto_charge(invoice_id=invoice_id, now=now)
        except PaymentProviderError as error:
            logger.warning("auto-charge of invoice %s: %s (%s)", invoice_id, error.message, error.code)
            continue
        if attempt is not None:
            attempts.append(attempt)
    return attempts


def auto_charge_due_invoices(*, now: datetime) -> QuerySet[Invoice]:
    """Of merchants whose Stripe is connected: open invoices with money due of ``autoCharge`` subscriptions,
    issued since it was connected (old invoices are not charged the day a merchant connects), with no attempt
    yet; and invoices in any state with a pending attempt whose lease ended (its worker died, perhaps after
    Stripe charged). Oldest issued first."""
    attempts = PaymentAttempt.objects.filter(invoice=OuterRef("pk"))
    connected_at = F("merchant__payment_integrations__connected_at")
    # A test clock's invoices are issued at the clock's time, which may lie before the connection however recently
    # they were written: they count from when they were written (``created_at``, the real time).
    issued_since_connected = Q(subscription__test_clock__isnull=True, issued_at__gte=connected_at) | Q(
        subscription__test_clock__isnull=False, created_at__gte=connected_at
    )
    never_tried = Q(
        issued_since_connected,
        ~Exists(attempts),
        status__in=OPEN_STATUSES,
        amount_due__gt=0,
        subscription__auto_charge=True,
    )
    # whatever the invoice's state now: the charge may have happened at Stripe
    abandoned = Exists(attempts.filter(status=PaymentAttemptStatus.PENDING, updated_at__lte=now - CLAIM_LEASE))
    return (
        Invoice.objects.filter(
            merchant__payment_integrations__provider=Provider.STRIPE,
            merchant__payment_integrations__status=IntegrationStatus.ACTIVE,
        )
        .filter(never_tried | abandoned)
        .order_by("issued_at", "pk")
    )

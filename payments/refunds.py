"""Refunds of card payments back through the provider (payments/README.md, "Refunds through the provider").

A refund is a credit note settled by refund (``invoicing.services``): in our books it lowers what the invoice
still owes and records the rest as paid back. When the invoice was paid (wholly or partly) by card payments
collected through Stripe (a ``PaymentAttempt``'s ``Payment``, or the ``Payment`` of a hosted payment page the
customer paid: a completed payment-mode ``PaymentSession``), the money goes back the way it came:

1. **Claim**, in the transaction that issues the credit note (invoicing holds the invoice's lock): the amount
   refunded (``CreditNote.refunded``) is allocated over the invoice's card payments, **newest first**, each
   taking at most what it paid on the invoice less what was refunded on it already; one ``ProviderRefund``
   row ``pending`` per payment. The credit note and its claims commit together: no refund is issued in our
   books without its provider part recorded, and none is claimed without a credit note. What the card payments
   cannot take (the invoice was partly paid out of band) is refunded by finance by transfer, as before.
2. **Send**, after commit, outside any transaction: ``refund`` with the row's idempotency key
   (``meterline-refund-{credit note}``, ``-{payment}`` appended when the refund spans several card payments).
3. **Record**, one short transaction: lock the row and, unless recorded already, write the outcome:
   succeeded, processing (Stripe's ``pending``) or failed with the provider's code and message.

Stripe unreachable leaves the row pending: ``provider_refunds_resume_due`` (beat) sends it again after
``CLAIM_LEASE`` with the same key, so a crash between the call and the record, or two workers, never refund
twice; a row resumed after the provider may have forgotten its key (``IDEMPOTENCY_KEY_LIFETIME``) first looks
for the refund its first send made, by the row's id in the refund's metadata. A failed row stays visible to
finance (the invoice page's panel, *Payments → Provider refunds*) and is retried as a new try (``provider_refund_retry``, key suffixed ``-{try}``); a partial unique constraint keeps at
most one try per credit note and payment alive.

Invoicing never imports this module: the API's refund routes (``billing_site/api_urls.py``) and the invoice
admin's credit note page (``billing_site/admin.py``) reach it through hooks of invoicing's own view and admin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum

from catalog.pricing import round_money
from invoicing import services as invoicing_services
from invoicing.models import CreditNote, CreditNoteStatus, InvoiceError, Payment, PaymentAllocation
from invoicing.receivables.locks import invoices_lock

from . import selectors
from .gateway import integration_provider
from .models import (
    LIVE_REFUND_STATUSES,
    PaymentAttemptStatus,
    PaymentSessionMode,
    PaymentSessionStatus,
    Provider,
    ProviderRefund,
    ProviderRefundStatus,
)
from .providers import IDEMPOTENCY_KEY_LIFETIME, PaymentProviderError, RefundResult

logger = logging.getLogger(__name__)

# A pending refund younger than this is being sent by the worker that claimed it; an older one was left by a
# worker that died (or Stripe was unreachable) and is sent again with the same key.
CLAIM_LEASE = timedelta(minutes=10)
DEFAULT_BATCH = 100
NOT_CONNECTED = "provider_not_connected"
MODE_CHANGED = "provider_mode_changed"
# Stripe's refund statuses → ours (requires_action: some payment methods need the customer's bank details)
_STATUS = {
    "succeeded": ProviderRefundStatus.SUCCEEDED,
    "pending": ProviderRefundStatus.PROCESSING,
    "requires_action": ProviderRefundStatus.PROCESSING,
    "failed": ProviderRefundStatus.FAILED,
    "canceled": ProviderRefundStatus.FAILED,
}


class ProviderRefundError(InvoiceError):
    """A refund through the provider that cannot be retried or voided (finance's message)."""


def invoice_refund_create(
    *,
    invoice,
    now: datetime,
    reason: str = "",
    amount: Decimal | None = None,
    idempotency_key: str | None = None,
) -> CreditNote:
    """Refund a paid invoice (invoicing's ``invoice_refund_create``: a credit note settled by refund) and give
    the money back through the provider where card payments collected it. Returns the credit note; its
    ``provider_refunds`` say how each provider part ended. A replay (same ``idempotency_key``) returns the first
    credit note and sends nothing new."""
    return _issue_then_send(
        lambda: invoicing_services.invoice_refund_create(
            invoice=invoice, now=now, reason=reason, amount=amount, idempotency_key=idempotency_key
        ),
        now=now,
    )


def credit_note_issue(**kwargs) -> CreditNote:
    """Invoicing's ``credit_note_issue`` (same arguments); a credit note settled by refund gives the money back
    through the provider as ``invoice_refund_create`` does (the admin's credit note page)."""
    return _issue_then_send(lambda: invoicing_services.credit_note_issue(**kwargs), now=kwargs["now"])


def _issue_then_send(issue: Callable[[], CreditNote], *, now: datetime) -> CreditNote:
    with transaction.atomic():
        note = issue()
        # A replay (same idempotency key) answers a note issued earlier: it was claimed when it was issued, or,
        # issued before refunds went through the provider, was refunded by finance; either way, nothing new.
        if note.issued_at == now:
            provider_refunds_claim(credit_note=note, now=now)
    for refund in note.provider_refunds.filter(status=ProviderRefundStatus.PENDING):
        provider_refund_send(refund_id=refund.pk, now=now)
    return note


def refund_void(*, credit_note: CreditNote, now: datetime, reason: str = "") -> CreditNote:
    """Void a refund (invoicing's ``credit_note_void``), refused once money went back through the provider
    (pending, processing or succeeded there): Stripe cannot take a refund back. A refund whose provider part
    failed can be voided: nothing left the merchant's account."""
    with transaction.atomic():
        invoices_lock([credit_note.invoice_id])
        live = ProviderRefund.objects.filter(credit_note=credit_note, status__in=LIVE_REFUND_STATUSES)
        if live.exists():
            raise ProviderRefundError(
                f"Refund {credit_note.number} was sent back to the customer's card through Stripe; it cannot be voided."
            )
        return invoicing_services.credit_note_void(credit_note=credit_note, now=now, reason=reason)


def card_refund_idempotency_key(*, credit_note_id: str, payment_id: str | None) -> str:
    """The first try's key; a retry appends ``-{try}`` to it."""
    return f"meterline-refund-{credit_note_id}" + (f"-{payment_id}" if payment_id else "")


def provider_refunds_claim(*, credit_note: CreditNote, now: datetime) -> list[ProviderRefund]:
    """Within the transaction that issued ``credit_note`` (its invoice locked): one pending row per card payment
    its refunded amount goes back to, newest payment first. Nothing for a note refunding nothing, one already
    claimed (a replay) or an invoice paid out of band only."""
    if credit_note.refunded <= 0 or credit_note.status != CreditNoteStatus.ISSUED:
        return []
    if credit_note.provider_refunds.exists():
        return list(credit_note.provider_refunds.all())
    portions, left = [], credit_note.refunded
    for allocation in _card_allocations(invoice_id=credit_note.invoice_id):
        take = min(left, _refundable(allocation))
        if take > 0:
            portions.append((allocation.payment, take))
            left -= take
        if left == 0:
            break
    several = len(portions) > 1
    rows = [
        ProviderRefund(
            credit_note=credit_note,
            payment=payment,
            number=1,
            amount=amount,
            currency=payment.currency,
            provider=Provider.STRIPE,
            charge_reference=_provider_charge(payment)[0],
            idempotency_key=card_refund_idempotency_key(
                credit_note_id=credit_note.pk, payment_id=payment.pk if several else None
            ),
            created_at=now,
            updated_at=now,
        )
        for payment, amount in portions
    ]
    for row in rows:
        row.save(force_insert=True)
    if left > 0 and rows:
        logger.info("refund %s: %s %s is refunded out of band", credit_note.number, left, credit_note.currency)
    return rows


def _card_allocations(*, invoice_id: str):
    """The invoice's payments collected through the provider, newest first: an automatic charge's succeeded
    attempt, or a hosted payment page (a completed payment-mode session) the customer paid."""
    charged = Q(
        payment__payment_attempt__status=PaymentAttemptStatus.SUCCEEDED,
        payment__payment_attempt__reference__isnull=False,
    )
    hosted = Q(
        payment__payment_session__mode=PaymentSessionMode.PAYMENT,
        payment__payment_session__status=PaymentSessionStatus.COMPLETED,
    ) & ~Q(payment__payment_session__payment_reference="")
    return (
        PaymentAllocation.objects.filter(charged | hosted, invoice_id=invoice_id)
        .select_related("payment__payment_attempt", "payment__payment_session")
        .order_by("-payment__received_at", "-payment__recorded_at", "-payment_id")
    )


def _provider_charge(payment: Payment) -> tuple[str, str | None]:
    """The provider's payment (Stripe: ``pi_…``) a card payment was taken by, and the mode (test or live) it
    was taken in (None when unknown: an attempt whose method is gone): an automatic charge's attempt, else the
    hosted page the customer paid on (its provider customer's mode)."""
    attempt = getattr(payment, "payment_attempt", None)  # reverse one-to-one: absent raises AttributeError
    if attempt is not None:
        method = attempt.payment_method
        return attempt.reference or "", method.provider_customer.mode if method is not None else None
    session = payment.payment_session
    return session.payment_reference, session.provider_customer.mode


def _refundable(allocation: PaymentAllocation) -> Decimal:
    """What the payment paid on this invoice less what went (or is going) back on it already."""
    refunded = ProviderRefund.objects.filter(
        payment_id=allocation.payment_id, status__in=LIVE_REFUND_STATUSES
    ).aggregate(s=Sum("amount"))["s"] or Decimal(0)
    payment = allocation.payment
    return max(min(allocation.amount, payment.amount - round_money(refunded, payment.currency)), Decimal(0))


def provider_refund_send(*, refund_id: str, now: datetime) -> ProviderRefund:
    """Send a pending row to the provider (no transaction held) and record the answer. A retryable provider
    error (Stripe unreachable, rate limited, the same key still in flight) leaves it pending for the sweep;
    any other refusal, or no connected provider of the payment's mode, fails it with the reason."""
    refund = ProviderRefund.objects.select_related(
        "payment__payment_attempt__payment_method__provider_customer", "payment__payment_session__provider_customer"
    ).get(pk=refund_id)
    if refund.status != ProviderRefundStatus.PENDING:
        return refund
    integration = selectors.integration_active(merchant_id=refund.payment.merchant_id)
    if integration is None:
        return _record_failure(refund_id, NOT_CONNECTED, "No payment provider is connected: connect Stripe.", now=now)
    _, mode = _provider_charge(refund.payment)
    if mode is not None and mode != integration.mode:
        message = f"The card was charged in {mode} mode; Stripe is connected in {integration.mode}."
        return _record_failure(refund_id, MODE_CHANGED, message, now=now)
    provider = integration_provider(integration)
    metadata = {"meterline_refund": refund.pk}
    try:
        found = None
        if now - refund.created_at >= IDEMPOTENCY_KEY_LIFETIME:
            # The provider may have forgotten the row's key: look for the refund the first call made.
            found = provider.refund_find(charge_reference=refund.charge_reference, metadata=metadata)
        result = found or provider.refund(
            charge_reference=refund.charge_reference,
            amount=refund.amount,
            currency=refund.currency,
            idempotency_key=refund.idempotency_key,
            metadata=metadata,
        )
    except PaymentProviderError as error:
        if error.retryable or error.code == "idempotency_key_in_use":
            logger.warning("refund %s left pending: %s (%s)", refund.pk, error.message, error.code)
            return refund
        return _record_failure(refund_id, error.code or "provider_refused", error.message, now=now)
    return _record(refund_id, result=result, now=now)


@transaction.atomic
def _record(refund_id: str, *, result: RefundResult, now: datetime) -> ProviderRefund:
    refund = ProviderRefund.objects.select_for_update().get(pk=refund_id)
    if refund.status != ProviderRefundStatus.PENDING:
        return refund  # recorded by a worker that raced us: the same refund at Stripe (same key)
    refund.reference = result.reference or None
    refund.status = _STATUS.get(result.status, ProviderRefundStatus.PROCESSING)
    if refund.status == ProviderRefundStatus.FAILED:
        refund.failure_code = f"refund_{result.status}"
        refund.failure_message = f"Stripe answered the refund {result.status}."
    refund.updated_at = now
    refund.save(update_fields=["reference", "status", "failure_code", "failure_message", "updated_at"])
    return refund


@transaction.atomic
def _record_failure(refund_id: str, code: str, message: str, *, now: datetime) -> ProviderRefund:
    refund = ProviderRefund.objects.select_for_update().get(pk=refund_id)
    if refund.status != ProviderRefundStatus.PENDING:
        return refund
    refund.status = ProviderRefundStatus.FAILED
    refund.failure_code, refund.failure_message, refund.updated_at = code, message, now
    refund.save(update_fields=["status", "failure_code", "failure_message", "updated_at"])
    logger.warning("refund %s failed: %s (%s)", refund.pk, message, code)
    return refund


def provider_refund_retry(*, refund: ProviderRefund, now: datetime) -> ProviderRefund:
    """Try a failed provider refund again (finance, once the cause is fixed): a new try with its own key, for
    the same amount, refused when it is not the latest try, when its credit note was voided or when the card
    payment has less left to refund. Returns the new try, sent."""
    with transaction.atomic():
        invoices_lock([refund.credit_note.invoice_id])
        failed = ProviderRefund.objects.select_for_update().select_related("credit_note", "payment").get(pk=refund.pk)
        if failed.status != ProviderRefundStatus.FAILED:
            raise ProviderRefundError(f"Only a failed refund is retried; this one is {failed.get_status_display()}.")
        latest = ProviderRefund.objects.filter(credit_note=failed.credit_note, payment=failed.payment).order_by(
            "-number"
        )
        if latest.first().pk != failed.pk:
            raise ProviderRefundError("A later try of this refund exists; retry that one.")
        if failed.credit_note.status != CreditNoteStatus.ISSUED:
            raise ProviderRefundError(f"Refund {failed.credit_note.number} was voided; nothing to send.")
        allocation = PaymentAllocation.objects.select_related("payment").get(
            invoice_id=failed.credit_note.invoice_id, payment=failed.payment
        )
        if _refundable(allocation) < failed.amount:
            raise ProviderRefundError("The card payment has less left to refund than this refund's amount.")
        number = failed.number + 1
        first = ProviderRefund.objects.get(credit_note=failed.credit_note, payment=failed.payment, number=1)
        retry = ProviderRefund(
            credit_note=failed.credit_note,
            payment=failed.payment,
            number=number,
            amount=failed.amount,
            currency=failed.currency,
            provider=failed.provider,
            charge_reference=failed.charge_reference,
            idempotency_key=f"{first.idempotency_key}-{number}",
            created_at=now,
            updated_at=now,
        )
        retry.save(force_insert=True)
    return provider_refund_send(refund_id=retry.pk, now=now)


def provider_refunds_resume_due(*, now: datetime, limit: int = DEFAULT_BATCH) -> list[ProviderRefund]:
    """Send again the pending refunds whose lease ended (Stripe was unreachable, or a worker died between the
    call and the record), each taken by a conditional update so two sweeps never send one twice at once."""
    sent = []
    due = ProviderRefund.objects.filter(status=ProviderRefundStatus.PENDING, updated_at__lte=now - CLAIM_LEASE)
    for refund_id in due.order_by("created_at", "pk").values_list("pk", flat=True)[:limit]:
        taken = ProviderRefund.objects.filter(
            pk=refund_id, status=ProviderRefundStatus.PENDING, updated_at__lte=now - CLAIM_LEASE
        ).update(updated_at=now)
        if taken:
            sent.append(provider_refund_send(refund_id=refund_id, now=now))
    return sent

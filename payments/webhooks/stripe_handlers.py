"""Stripe's events, one handler per type (``STRIPE_HANDLERS``), each in its own short transaction(s), each
safe to run again and to meet the events out of order (Stripe delivers at least once, in no set order):

- ``payment_intent.succeeded`` / ``.payment_failed`` / ``.requires_action``: the outcome of an automatic charge,
  recorded on its attempt through ``charges.attempt_outcome_record`` (the path the charge call's own answer
  takes, so the webhook and the call converge on one attempt and one ``Payment``; a success is final);
- ``charge.refunded``: the refunded total Stripe reports, beside what Meterline's refund credit notes record;
- ``charge.dispute.created``: the charge is flagged disputed (no money moves here);
- ``checkout.session.completed``: a setup session is completed and the customer's methods synced; a
  payment-mode session (and ``checkout.session.async_payment_succeeded``, its bank debit cleared) is recorded
  by ``payments.checkout`` (one payment, whether the webhook or Stripe's return page comes first);
- ``checkout.session.expired``: our pending session of either mode becomes ``expired``.

Every other type is kept and acknowledged, ``ignored``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from catalog.pricing.currency import format_money

from .. import selectors
from ..charges import attempt_outcome_record
from ..checkout import checkout_session_completed as checkout_session_completed_record
from ..checkout import checkout_session_expired as checkout_session_expired_record
from ..gateway import integration_provider
from ..models import MerchantIntegration, PaymentAttempt, PaymentSession, PaymentSessionMode
from ..providers import ChargeResult, ChargeStatus, amount_from_minor_units
from ..services import payment_method_default_from_setup, payment_methods_sync, payment_session_complete
from .base import EventHandler, Handled, ParsedEvent, ignored


def _attempt(integration: MerchantIntegration, *, reference: str | None, metadata=None) -> PaymentAttempt | None:
    return selectors.attempt_for_provider_payment(
        merchant_id=integration.merchant_id, reference=reference or "", metadata=metadata
    )


def _intent_outcome(integration: MerchantIntegration, intent: dict[str, Any], status: ChargeStatus, now) -> Handled:
    attempt = _attempt(integration, reference=intent.get("id"), metadata=intent.get("metadata"))
    if attempt is None:
        return ignored(f"no automatic charge of ours is PaymentIntent {intent.get('id')}")
    error = intent.get("last_payment_error") or {} if status is ChargeStatus.FAILED else {}
    result = ChargeResult(
        status=status,
        reference=intent["id"],
        amount=amount_from_minor_units(intent.get("amount_received") or intent["amount"], attempt.currency)
        if status is ChargeStatus.SUCCEEDED
        else attempt.amount,
        currency=attempt.currency,
        failure_code=error.get("decline_code") or error.get("code") or "",
        failure_message=error.get("message") or "",
    )
    attempt, changed = attempt_outcome_record(attempt_id=attempt.pk, result=result, now=now)
    related = {"invoice_id": attempt.invoice_id, "attempt_id": attempt.pk}
    if not changed:
        return ignored(f"attempt {attempt.number} is {attempt.status} already", **related)
    said = f"attempt {attempt.number} {attempt.status}"
    if attempt.payment_id:
        said += f", payment {attempt.payment_id} recorded"
    if attempt.failure_code:
        said += f" ({attempt.failure_code})"
    return Handled(outcome=said, **related)


def payment_intent_succeeded(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """The charge took the money: the attempt succeeds and one payment is recorded (once, whoever comes first:
    this event or the charge call's answer). Settles ``processing`` (bank debits) and a pending attempt whose
    call has not returned."""
    return _intent_outcome(integration, event.object, ChargeStatus.SUCCEEDED, now)


def payment_intent_payment_failed(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """Declined: the attempt fails with Stripe's decline code and message and the open invoice is flagged
    ``PAYMENT_FAILED``; never after a success (a paid invoice stays paid)."""
    return _intent_outcome(integration, event.object, ChargeStatus.FAILED, now)


def payment_intent_requires_action(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """The bank wants the customer to authenticate (3-D Secure): the attempt waits, ``requires_action``."""
    return _intent_outcome(integration, event.object, ChargeStatus.REQUIRES_ACTION, now)


def charge_refunded(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """Stripe refunded (part of) a charge of ours: its refunded total is kept on the attempt (it only grows) and
    set beside what Meterline's refund credit notes of the invoice paid back. Nothing else is written: a refund
    made at Stripe's dashboard without a credit note is shown to finance as not yet recorded, never turned
    into a credit note here (its lines and tax are finance's decision)."""
    charge = event.object
    found = _attempt(integration, reference=charge.get("payment_intent"))
    if found is None:
        return ignored(f"no automatic charge of ours is PaymentIntent {charge.get('payment_intent')}")
    with transaction.atomic():
        attempt = PaymentAttempt.objects.select_for_update().get(pk=found.pk)
        refunded = amount_from_minor_units(int(charge.get("amount_refunded") or 0), attempt.currency)
        if refunded > attempt.provider_refunded:
            attempt.provider_refunded = refunded
            attempt.provider_refunded_at = now
            attempt.save(update_fields=["provider_refunded", "provider_refunded_at"])
        recorded = selectors.invoice_refunds_recorded(invoice_id=attempt.invoice_id)
    total, currency = attempt.provider_refunded, attempt.currency
    said = (
        f"refunded at Stripe: {format_money(total, currency)}; refund credit notes: {format_money(recorded, currency)}"
    )
    if recorded < total:
        said += f"; {format_money(total - recorded, currency)} not recorded as a refund credit note yet"
    return Handled(outcome=said, invoice_id=attempt.invoice_id, attempt_id=attempt.pk)


def charge_dispute_created(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """The customer disputed a charge of ours with their bank: the attempt (and so its invoice's page) is
    flagged disputed with Stripe's dispute id and reason, once. No payment is changed: the dispute's outcome
    (won, lost) decides what finance records."""
    dispute = event.object
    found = _attempt(integration, reference=dispute.get("payment_intent"))
    if found is None:
        return ignored(f"no automatic charge of ours is PaymentIntent {dispute.get('payment_intent')}")
    with transaction.atomic():
        attempt = PaymentAttempt.objects.select_for_update().get(pk=found.pk)
        related = {"invoice_id": attempt.invoice_id, "attempt_id": attempt.pk}
        if attempt.disputed_at is not None:
            return ignored(f"attempt {attempt.number} disputed already ({attempt.dispute_reference})", **related)
        attempt.disputed_at = now
        attempt.dispute_reference = str(dispute.get("id") or "")[:100]
        attempt.dispute_reason = str(dispute.get("reason") or "")[:100]
        attempt.save(update_fields=["disputed_at", "dispute_reference", "dispute_reason"])
    amount = amount_from_minor_units(int(dispute.get("amount") or 0), attempt.currency)
    return Handled(
        outcome=f"disputed ({attempt.dispute_reason or 'no reason given'}): {format_money(amount, attempt.currency)}",
        **related,
    )


def _setup_payment_method(integration: MerchantIntegration, setup_intent: str | dict[str, Any] | None) -> str:
    """The method a setup session's SetupIntent saved (the event carries the intent's id, or the intent when
    expanded): read from Stripe, outside any transaction."""
    if isinstance(setup_intent, dict):
        method = setup_intent.get("payment_method")
        return (method.get("id", "") if isinstance(method, dict) else method) or ""
    if not setup_intent:
        return ""
    return integration_provider(integration).setup_intent_payment_method(reference=setup_intent)


def checkout_session_completed(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """A hosted page finished. Setup mode: the ``PaymentSession`` is completed and the customer's saved methods
    are read from Stripe (the card saved there becomes chargeable and the customer's default). Payment
    mode: ``checkout_session_payment_mode``."""
    session = event.object
    if session.get("mode") == PaymentSessionMode.PAYMENT:
        return checkout_session_payment_mode(integration=integration, event=event, now=now)
    if session.get("mode") != PaymentSessionMode.SETUP:
        return ignored(f"a {session.get('mode')} session")
    found = (
        PaymentSession.objects.filter(merchant_id=integration.merchant_id, reference=session.get("id"))
        .select_related("customer")
        .first()
    )
    if found is None:
        return ignored(f"no setup session of ours is {session.get('id')}")
    completed = payment_session_complete(session=found, now=now)
    # After the session's transaction: a Stripe call is never made inside one. If Stripe cannot be reached the
    # error is recorded on the event and the delivery answered 503: Stripe delivers it again, and the (repeated)
    # sync runs then.
    payment_methods_sync(customer=found.customer, now=now)
    default = None
    saved = _setup_payment_method(integration, session.get("setup_intent"))
    if saved:
        default = payment_method_default_from_setup(session=found, payment_method=saved)
    state = "completed" if completed else f"{found.status} already"
    chosen = f"; {default.pk} is the default" if default is not None else ""
    return Handled(outcome=f"setup session {found.pk} {state}; payment methods synced{chosen}")


def checkout_session_payment_mode(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """A payment-mode Checkout Session (hosted payment of an invoice, Invoice 0, a purchase) completed, or its
    bank debit cleared (``checkout.session.async_payment_succeeded``): recorded by ``payments.checkout``, the
    path Stripe's return page takes too, so the two converge on one payment."""
    session = event.object
    if session.get("mode") != PaymentSessionMode.PAYMENT:
        return ignored(f"a {session.get('mode')} session")
    checkout_session_completed_record(integration=integration, session=session, now=now)
    row = (
        PaymentSession.objects.filter(merchant_id=integration.merchant_id, reference=session.get("id"))
        .only("id", "status", "invoice_id", "payment_id")
        .first()
    )
    if row is None:
        return ignored(f"no payment session of ours is {session.get('id')}")
    said = f"payment session {row.pk} {row.status}"
    if row.payment_id:
        said += f", payment {row.payment_id}"
    return Handled(outcome=said, invoice_id=row.invoice_id)


def checkout_session_expired(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    """A hosted page (either mode) ended unused: our pending ``PaymentSession`` becomes ``expired``
    (``payments.checkout.checkout_session_expired``); a completed one stays completed."""
    row = checkout_session_expired_record(integration=integration, session=event.object, now=now)
    if row is None:
        return ignored(f"no session of ours is {event.object.get('id')}")
    return Handled(outcome=f"{row.mode} session {row.pk} {row.status}", invoice_id=row.invoice_id)


STRIPE_HANDLERS: dict[str, EventHandler] = {
    "payment_intent.succeeded": payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_payment_failed,
    "payment_intent.requires_action": payment_intent_requires_action,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": charge_dispute_created,
    "checkout.session.completed": checkout_session_completed,
    "checkout.session.async_payment_succeeded": checkout_session_payment_mode,
    "checkout.session.expired": checkout_session_expired,
}

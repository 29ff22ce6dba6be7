"""Hosted payment of an invoice through Stripe Checkout in payment mode (payments/README.md, "Hosted checkout").

Three ways in, one way to record:

- ``invoice_checkout_create`` opens a Checkout Session for the invoice's amount due (the API's ``hosted_link``,
  and each press of the Pay button on the invoice's long-lived pay link): Stripe first, with the idempotency key
  ``meterline-session-{ps id}``, then our ``PaymentSession`` row (invoice, amount, currency) in a short
  transaction. The session and its PaymentIntent carry ``meterline_invoice`` and ``meterline_payment_session``
  in their metadata, so a webhook finds the row from either object.
- ``checkout_session_completed`` records what the customer paid: the webhook dispatcher calls it for
  ``checkout.session.completed`` (payment mode), and the success page (``checkout_session_refresh``) calls it
  with the session it retrieved, so the customer sees "Paid" even before the webhook arrives.
- Exactly once, by constraints: the row is locked (after the invoice, receivables' lock order) and records
  one ``Payment`` (method card, reference ``pi_…``, idempotency key ``charge-{pi_…}``, unique per merchant,
  the key the auto-charge uses too), linked one-to-one to the row. The webhook, its replays and the success
  page converge on that one payment. Paying Invoice 0 of a ``pending_payment`` subscription activates it
  through receivables (``invoice_paid_effects``), as an out-of-band payment does.

No provider call is made inside a transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse

from core.ids import new_public_id
from invoicing.calculation import subscription_now
from invoicing.models import OPEN_STATUSES, Invoice, InvoiceStatus, Payment
from invoicing.models import PaymentMethod as ReceivedBy
from invoicing.receivables import InvoicePaymentError, payment_record
from invoicing.receivables.locks import invoices_lock

from . import selectors
from .gateway import integration_provider
from .models import MerchantIntegration, PaymentSession, PaymentSessionMode, PaymentSessionStatus
from .notices import checkout_link_notice_queue
from .providers import amount_from_minor_units
from .services import SESSION_MAX_LIFETIME, provider_customer_ensure

logger = logging.getLogger(__name__)

# The invoice's pay link (the subscription's checkoutUrl, the document's "Pay now") lives as long as the
# client documents a payment link lives; each press of its Pay button opens a fresh Checkout Session
# (Stripe's live 24 hours).
PAY_LINK_MAX_AGE = timedelta(days=30)
PAY_LINK_SALT = "payments.invoice-pay-link"
RETURN_SALT = "payments.checkout-return"
RETURN_MAX_AGE = timedelta(days=2)


class CheckoutRefused(Exception):
    """The invoice cannot be paid on a hosted page; ``code`` is the client's (``INVOICE_NOT_LINKABLE_STATUS``,
    ``INVOICE_NO_BALANCE``; ``INVOICE_ALREADY_PAID`` for a paid invoice, as the out-of-band path answers)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


def invoice_checkout_refusal(invoice: Invoice) -> CheckoutRefused | None:
    if invoice.status == InvoiceStatus.PAID:
        return CheckoutRefused(f"Invoice {invoice} is already paid.", code="INVOICE_ALREADY_PAID")
    if invoice.status not in OPEN_STATUSES:
        return CheckoutRefused(
            f"Invoice {invoice} is {invoice.status}; only an issued invoice can be paid online.",
            code="INVOICE_NOT_LINKABLE_STATUS",
        )
    if invoice.amount_due <= 0:
        return CheckoutRefused(f"Invoice {invoice} has nothing left to pay.", code="INVOICE_NO_BALANCE")
    return None


# Signed links (no login): the token names one invoice (pay link) or one session (Stripe's return).


def invoice_pay_token(invoice_id: str) -> str:
    return signing.dumps(invoice_id, salt=PAY_LINK_SALT)


def invoice_from_pay_token(token: str) -> Invoice | None:
    """The invoice a valid pay-link token younger than 30 days names; None when tampered, expired or unknown."""
    try:
        invoice_id = signing.loads(token, salt=PAY_LINK_SALT, max_age=PAY_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    return Invoice.objects.select_related("customer", "merchant").filter(pk=invoice_id).first()


def invoice_pay_url(invoice: Invoice) -> str:
    return settings.METERLINE_PUBLIC_URL + reverse("invoice-pay", args=[invoice_pay_token(invoice.pk)])


def invoice_pay_link(invoice: Invoice) -> str | None:
    """The long-lived link where the customer pays ``invoice`` online, when it can be: an open invoice with
    money due, of a merchant whose Stripe is connected. What invoicing shows through its pay-link hook
    (``invoicing.pay_links``), registered by ``PaymentsConfig.ready``."""
    if invoice_checkout_refusal(invoice) is not None:
        return None
    if selectors.integration_active(merchant_id=invoice.merchant_id) is None:
        return None
    return invoice_pay_url(invoice)


def checkout_return_url(session_id: str) -> str:
    token = signing.dumps(session_id, salt=RETURN_SALT)
    return settings.METERLINE_PUBLIC_URL + reverse("checkout-return", args=[token])


def session_from_return_token(token: str) -> PaymentSession | None:
    try:
        session_id = signing.loads(token, salt=RETURN_SALT, max_age=RETURN_MAX_AGE)
    except signing.BadSignature:
        return None
    return PaymentSession.objects.select_related("invoice").filter(pk=session_id).first()


# Opening a session


def invoice_checkout_create(
    *,
    invoice: Invoice,
    now: datetime,
    success_url: str = "",
    failure_url: str = "",
    metadata: dict[str, Any] | None = None,
    notify: bool = False,
) -> PaymentSession:
    """A Stripe Checkout Session (payment mode) for what is due on ``invoice`` now, recorded as our
    ``PaymentSession`` (``ps_…``) linked to the invoice. Stripe sends the customer back to our return page
    (which settles the session, then goes on to ``success_url`` if given); a cancel goes to ``failure_url``,
    else the return page. ``notify``: the page's address is e-mailed to the customer, queued in the
    transaction that records the session (so once per session; the pay link's own visits do not e-mail).

    Refuses ``CheckoutRefused`` (the invoice), ``PaymentsNotConnected`` (no active Stripe) and raises
    ``PaymentProviderError`` when Stripe refuses or cannot be reached (nothing recorded then)."""
    refusal = invoice_checkout_refusal(invoice)
    if refusal is not None:
        raise refusal
    customer = invoice.customer
    provider_customer = provider_customer_ensure(customer=customer, now=now)
    session_id = new_public_id("ps")
    landing = checkout_return_url(session_id)
    ids = {"meterline_invoice": invoice.pk, "meterline_payment_session": session_id}
    hosted = integration_provider(provider_customer.integration).session_create(
        mode=PaymentSessionMode.PAYMENT,
        provider_customer=provider_customer.reference,
        currency=invoice.currency,
        amount=invoice.amount_due,
        description=f"Invoice {invoice.number}" if invoice.number else f"Invoice {invoice.pk}",
        success_url=landing,
        cancel_url=failure_url or landing,
        expires_at=now + SESSION_MAX_LIFETIME,
        idempotency_key=f"meterline-session-{session_id}",
        metadata={**ids, "meterline_customer": customer.pk},
    )
    with transaction.atomic():
        row = PaymentSession.objects.create(
            id=session_id,
            merchant_id=invoice.merchant_id,
            customer=customer,
            provider_customer=provider_customer,
            mode=PaymentSessionMode.PAYMENT,
            invoice=invoice,
            amount=invoice.amount_due,
            currency=invoice.currency,
            reference=hosted.reference,
            url=hosted.url,
            success_redirect_url=success_url,
            failure_redirect_url=failure_url,
            metadata=metadata or {},
            expires_at=hosted.expires_at,
            created_at=now,
            updated_at=now,
        )
        if notify:
            checkout_link_notice_queue(session=row, invoice=invoice, now=now)
        return row


# Settling a session


def _reference(value: Any) -> str:
    """Stripe sends ``payment_intent`` as an id, or as the object when expanded."""
    if isinstance(value, dict):
        return value.get("id") or ""
    return value or ""


def _session_row(*, integration: MerchantIntegration, session: dict) -> PaymentSession | None:
    rows = PaymentSession.objects.filter(merchant_id=integration.merchant_id, mode=PaymentSessionMode.PAYMENT)
    row = rows.filter(reference=session.get("id") or "").first()
    if row is None:  # not ours by its cs_… id: our id in its metadata (a session recorded under another id?)
        ours = (session.get("metadata") or {}).get("meterline_payment_session")
        row = rows.filter(pk=ours).first() if ours else None
    return row


def checkout_session_completed(*, integration: MerchantIntegration, session: dict, now: datetime) -> None:
    """Record what the customer paid on a payment-mode Checkout Session: ``session`` is Stripe's session
    object (the ``data.object`` of ``checkout.session.completed``, or what the success page retrieved) from the
    account of ``integration``.

    Paid (``payment_status`` ``paid``): the session becomes ``completed`` and one ``Payment`` of the session's
    amount is recorded for its invoice (reference ``pi_…``; an invoice settled meanwhile leaves the money as
    customer credit, never lost); paying Invoice 0 activates a ``pending_payment`` subscription. Complete but
    not yet paid (a bank debit on its way): ``processing``. A session of another mode, of another merchant or
    unknown here is ignored (logged). Safe to call any number of times, concurrently: one payment."""
    if session.get("mode") != PaymentSessionMode.PAYMENT:
        return
    row = _session_row(integration=integration, session=session)
    if row is None:
        logger.warning("checkout session %s of integration %s is not ours; ignored", session.get("id"), integration.pk)
        return
    if session.get("status") != "complete":
        return
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        _mark_processing(row.pk, now=now)
        return
    intent = _reference(session.get("payment_intent"))
    currency = (session.get("currency") or row.currency).upper()
    amount = (
        amount_from_minor_units(session["amount_total"], currency)
        if session.get("amount_total") is not None
        else row.amount
    )
    with transaction.atomic():
        if row.invoice_id:
            invoices_lock([row.invoice_id])  # receivables' lock order: the invoice, then our row
        row = (
            PaymentSession.objects.select_for_update(of=("self",))
            .select_related("invoice__subscription")
            .get(pk=row.pk)
        )
        if row.payment_id is not None:
            return  # recorded already (the webhook and the success page, or a replay)
        row.payment = _payment_record(row, amount=amount, currency=currency, intent=intent, now=now)
        row.payment_reference = intent
        row.status = PaymentSessionStatus.COMPLETED
        row.completed_at = row.updated_at = now
        row.save(update_fields=["payment", "payment_reference", "status", "completed_at", "updated_at"])


def _payment_record(row: PaymentSession, *, amount, currency: str, intent: str, now: datetime) -> Payment:
    invoice = row.invoice
    received_at = subscription_now(invoice.subscription, now) if invoice.subscription_id else now
    kwargs = {
        "customer": row.customer,
        "currency": currency,
        "amount": amount,
        "method": ReceivedBy.CARD,
        "received_at": received_at,
        "now": now,
        "reference": intent or row.reference,
        "recorded_by": "",
        "idempotency_key": f"charge-{intent or row.reference}",
    }
    try:
        with transaction.atomic():
            return payment_record(invoice_ids=[invoice.pk], **kwargs)
    except InvoicePaymentError as error:
        # Settled meanwhile (paid out of band or in another session, credited, voided): the customer paid all
        # the same, so the money is recorded against no invoice and becomes the customer's credit.
        logger.warning("checkout %s of invoice %s: %s; recorded as customer credit", row.pk, invoice.pk, error)
        return payment_record(invoice_ids=[], **kwargs)


def _mark_processing(session_id: str, *, now: datetime) -> None:
    PaymentSession.objects.filter(pk=session_id, status=PaymentSessionStatus.PENDING).update(
        status=PaymentSessionStatus.PROCESSING, updated_at=now
    )


def checkout_session_refresh(*, session: PaymentSession, now: datetime) -> PaymentSession:
    """Ask Stripe how ``session`` stands and record it (the success page: the customer is back, the webhook
    may not be): a paid session is settled through ``checkout_session_completed``; one Stripe expired is
    ``expired``. Returns the row as it is now. ``PaymentProviderError`` when Stripe cannot be reached."""
    if session.status == PaymentSessionStatus.COMPLETED or session.mode != PaymentSessionMode.PAYMENT:
        return session
    integration = selectors.integration_active(merchant_id=session.merchant_id)
    if integration is None:
        return session
    found = integration_provider(integration).session_retrieve(reference=session.reference)
    if found.get("status") == "expired":
        checkout_session_expired(integration=integration, session=found, now=now)
    else:
        checkout_session_completed(integration=integration, session=found, now=now)
    return PaymentSession.objects.select_related("invoice").get(pk=session.pk)


def checkout_session_expired(
    *, integration: MerchantIntegration, session: dict, now: datetime
) -> PaymentSession | None:
    """Stripe expired a Checkout Session (``checkout.session.expired``, or the return page finding it so): our
    row of either mode (the integration's merchant's, by ``cs_…``, else by the id in its metadata) goes from
    ``pending`` to ``expired``, once; a completed or processing one is left as it is (the money or the card
    came first). Returns the row as it is now; None when the session is not ours."""
    rows = PaymentSession.objects.filter(merchant_id=integration.merchant_id)
    row = rows.filter(reference=session.get("id") or "").first()
    if row is None:
        metadata = session.get("metadata") or {}
        ours = metadata.get("meterline_payment_session") or metadata.get("meterline_session")
        row = rows.filter(pk=ours).first() if ours else None
    if row is None:
        return None
    PaymentSession.objects.filter(pk=row.pk, status=PaymentSessionStatus.PENDING).update(
        status=PaymentSessionStatus.EXPIRED, updated_at=now
    )
    return PaymentSession.objects.get(pk=row.pk)

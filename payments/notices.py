"""The customer's e-mails about a charge of their invoice (payments/README.md, "Retries and the customer's
e-mails"): a failed attempt, with the reason in plain words and when the card is tried again; an attempt the
bank wants the customer to confirm (3-D Secure). Both link to the invoice's signed public page, where the
customer pays. And the link to a hosted payment page opened for the customer (the API's ``hosted_link``),
queued by ``checkout.invoice_checkout_create`` in the transaction that records the session: one per session.

They go through invoicing's delivery log (``document_delivery_queue``: the customer's billing e-mails, the
merchant's sender and templates, retried on SMTP errors, not sent once the invoice is settled) and are queued
by ``charges._record`` in the transaction that records the attempt's outcome, which runs once per attempt:
``PaymentAttempt.notice`` (one-to-one) is the one e-mail of that attempt.
"""

from __future__ import annotations

from datetime import datetime

from invoicing.documents import DATE
from invoicing.models import DeliveryReason, DocumentDelivery, Invoice
from invoicing.services import document_delivery_queue

from .models import PaymentAttempt, PaymentAttemptStatus, PaymentSession

# Stripe's decline codes as a customer reads them (https://docs.stripe.com/declines/codes). Codes Stripe asks
# not to reveal to the customer (lost, stolen, fraudulent, pickup) read as a generic decline.
GENERIC_DECLINE = (
    "Your bank declined the payment without giving a reason. Please contact your bank or use another card."
)
FAILURE_REASONS = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "The card's security code (CVC) is incorrect.",
    "incorrect_number": "The card number is incorrect.",
    "card_velocity_exceeded": "Your card has reached its spending limit.",
    "withdrawal_count_limit_exceeded": "Your card has reached its spending limit.",
    "card_not_supported": "Your card does not support this kind of payment.",
    "currency_not_supported": "Your card does not support payments in this currency.",
    "processing_error": "An error occurred while your card was being charged. It is worth trying again.",
    "authentication_required": "Your bank asks you to confirm this payment yourself (for example with 3-D Secure).",
    "do_not_honor": GENERIC_DECLINE,
    "generic_decline": GENERIC_DECLINE,
    "card_declined": GENERIC_DECLINE,
    "no_payment_method": "No card or bank account is saved for automatic payments.",
    "resource_missing": "The saved card or bank account can no longer be charged.",
}


def failure_reason_text(code: str) -> str:
    """Why a charge failed, in the customer's words (a code we do not know reads as a generic decline)."""
    return FAILURE_REASONS.get(code, GENERIC_DECLINE)


def attempt_notice_queue(*, attempt: PaymentAttempt, invoice: Invoice, now: datetime) -> DocumentDelivery | None:
    """Queue the e-mail of a recorded attempt that failed or needs the customer's action (the caller holds the
    transaction that records it; sent after commit); None for any other outcome."""
    method = str(attempt.payment_method.label) if attempt.payment_method else ""
    if attempt.status == PaymentAttemptStatus.FAILED:
        reason = DeliveryReason.PAYMENT_FAILED
        values = {
            "failure_reason": failure_reason_text(attempt.failure_code),
            "payment_method": method,
            "next_retry_date": f"{attempt.next_retry_at:{DATE}}" if attempt.next_retry_at else "",
        }
    elif attempt.status == PaymentAttemptStatus.REQUIRES_ACTION:
        reason = DeliveryReason.PAYMENT_ACTION
        values = {"payment_method": method}
    else:
        return None
    return document_delivery_queue(document=invoice, now=now, reason=reason, values=values)


def checkout_link_notice_queue(*, session: PaymentSession, invoice: Invoice, now: datetime) -> DocumentDelivery:
    """Queue the e-mail carrying a payment-mode session's page to the customer's billing e-mails (the caller
    holds the transaction that records the session; sent after commit, not once the invoice is settled)."""
    values = {"payment_url": session.url, "payment_url_expires": f"{session.expires_at:{DATE} %H:%M} UTC"}
    return document_delivery_queue(document=invoice, now=now, reason=DeliveryReason.PAYMENT_LINK, values=values)

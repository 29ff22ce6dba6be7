"""The customer's e-mails about charges (payments/notices.py), through a real SMTP server (aiosmtpd on
127.0.0.1): one per failed attempt with the reason in plain words, the next retry day and the invoice's signed
link to pay; one at once when the bank asks for 3-D Secure; to the customer's billing e-mails; exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from invoicing.delivery import document_from_token
from invoicing.models import DeliveryReason, DeliveryStatus, DocumentDelivery, MailTemplate
from invoicing.receivables import invoice_pay_in_full
from invoicing.services import document_delivery_send
from invoicing.services.delivery import SETTLED_SKIP
from payments.charges import invoice_auto_charge
from payments.models import PaymentAttempt
from payments.notices import GENERIC_DECLINE, failure_reason_text
from payments.retries import invoice_payment_retry, invoices_payment_retry_due

from .test_charges import auto_charged

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def billed(merchant, now, card="pm_card_chargeCustomerFail"):
    invoice = auto_charged(merchant, now, card=card)
    invoice.customer.billing_emails = "ap@acme.example, cfo@acme.example"
    invoice.customer.save()
    return invoice


def notices(invoice) -> list[tuple[int, str, str]]:
    """(attempt, e-mail reason, e-mail status) per attempt of the invoice."""
    return [
        (a.number, a.notice.reason if a.notice else "", a.notice.status if a.notice else "")
        for a in PaymentAttempt.objects.filter(invoice=invoice).select_related("notice").order_by("number")
    ]


def test_a_declined_charge_e_mails_the_reason_the_next_retry_and_the_link_to_pay(
    stripe_connected,
    stripe_server,
    merchant,
    now,
    smtp,
    django_capture_on_commit_callbacks,
):
    invoice = billed(merchant, now)

    with django_capture_on_commit_callbacks(execute=True):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)

    assert notices(invoice) == [(1, DeliveryReason.PAYMENT_FAILED, DeliveryStatus.SENT)]
    (received,) = smtp.received
    assert received.rcpt_tos == ["ap@acme.example", "cfo@acme.example"]
    message = received.message
    assert message["Subject"] == f"Payment failed: invoice {invoice.number} from {merchant.name} ($123.45)"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"Why: {GENERIC_DECLINE}" in text
    assert "on Visa •••• 0341" in text
    assert f"we will try your saved payment method again on {now + 3 * DAY:%b %d, %Y}" in text
    link = next(word for word in text.split() if word.startswith("https://billing.neural.example/"))
    assert document_from_token(link.rstrip("/").rsplit("/", 1)[-1]).pk == invoice.pk  # the signed public page
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Pay now" in html and link in html
    assert [part.get_content_type() for part in message.iter_attachments()] == ["application/pdf"]


def test_each_retry_e_mails_once_and_the_last_says_no_more_retries(
    stripe_connected,
    stripe_server,
    merchant,
    now,
    smtp,
    django_capture_on_commit_callbacks,
):
    invoice = billed(merchant, now)
    with django_capture_on_commit_callbacks(execute=True):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)
        for day in (3, 5, 7):
            invoices_payment_retry_due(now=now + day * DAY)
            invoice_payment_retry(invoice_id=invoice.pk, now=now + day * DAY)  # run twice: nothing more
        invoice_auto_charge(invoice_id=invoice.pk, now=now + 8 * DAY)

    assert [row[0] for row in notices(invoice)] == [1, 2, 3, 4]
    assert {row[1:] for row in notices(invoice)} == {(DeliveryReason.PAYMENT_FAILED, DeliveryStatus.SENT)}
    assert len(smtp.received) == 4
    texts = [r.message.get_body(preferencelist=("plain",)).get_content() for r in smtp.received]
    for text, day in zip(texts[:3], (3, 5, 7), strict=True):
        assert f"again on {now + day * DAY:%b %d, %Y}" in text
    assert "try your saved payment method again" not in texts[-1]


def test_a_card_needing_3d_secure_e_mails_the_link_at_once(
    stripe_connected,
    stripe_server,
    merchant,
    now,
    smtp,
    django_capture_on_commit_callbacks,
):
    invoice = billed(merchant, now, card="pm_card_visa")
    stripe_server.state.behaviours[invoice.customer.payment_methods.get().reference] = "authenticate"

    with django_capture_on_commit_callbacks(execute=True):
        attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    assert attempt.status == "requires_action" and attempt.next_retry_at is None
    assert notices(invoice) == [(1, DeliveryReason.PAYMENT_ACTION, DeliveryStatus.SENT)]
    (received,) = smtp.received
    assert received.message["Subject"].startswith(f"Please confirm your payment of invoice {invoice.number}")
    text = received.message.get_body(preferencelist=("plain",)).get_content()
    assert "Your bank asks you to confirm the payment" in text and "Pay now: https://billing.neural.example/" in text


def test_a_notice_queued_before_the_invoice_was_paid_is_not_sent(
    stripe_connected,
    stripe_server,
    merchant,
    now,
    smtp,  # noqa: F811
):
    invoice = billed(merchant, now)
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)  # queued, its send not run yet
    invoice_pay_in_full(invoice=invoice, at=now + timedelta(minutes=1))

    delivery = document_delivery_send(delivery_id=attempt.notice_id, now=now + timedelta(minutes=2))

    assert (delivery.status, delivery.error) == (DeliveryStatus.SKIPPED, SETTLED_SKIP)
    assert smtp.received == []


def test_the_merchants_own_wording_is_used(
    stripe_connected,
    stripe_server,
    merchant,
    now,
    smtp,
    django_capture_on_commit_callbacks,
):
    MailTemplate.objects.create(
        merchant=merchant,
        kind="payment_failed",
        subject="{{ number }}: {{ failure_reason }}",
        body_text="Pay {{ amount_due }} at {{ view_url }}",
        body_html="<p>{{ failure_reason }}</p>",
    )
    invoice = billed(merchant, now, card=None)

    with django_capture_on_commit_callbacks(execute=True):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)

    (received,) = smtp.received
    assert received.message["Subject"] == f"{invoice.number}: {failure_reason_text('no_payment_method')}"


def test_one_e_mail_per_attempt_by_constraint(stripe_connected, stripe_server, merchant, now):
    invoice = billed(merchant, now)
    first = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    second = invoice_payment_retry(invoice_id=invoice.pk, now=now + 3 * DAY)
    assert DocumentDelivery.objects.filter(invoice=invoice, reason=DeliveryReason.PAYMENT_FAILED).count() == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.filter(pk=second.pk).update(notice=first.notice_id)


def test_failure_codes_read_in_plain_words():
    assert failure_reason_text("insufficient_funds") == "Your card has insufficient funds."
    assert failure_reason_text("expired_card") == "Your card has expired."
    # codes Stripe asks not to show the customer, and unknown ones, read as a generic decline
    assert failure_reason_text("stolen_card") == GENERIC_DECLINE == failure_reason_text("something_new")

"""``hosted_link`` e-mails the page it opens (the client: each call sends one), through invoicing's delivery log
and a real SMTP server (aiosmtpd on 127.0.0.1): to the customer's billing e-mails, with Stripe's page and when it
closes, once per call; the pay link's own visits e-mail nothing."""

from __future__ import annotations

import pytest
from django.utils import timezone

from invoicing.delivery import document_from_token
from invoicing.models import DeliveryReason, DeliveryStatus, DocumentDelivery, MailTemplate
from invoicing.receivables import invoice_pay_in_full
from invoicing.services import document_delivery_send
from invoicing.services.delivery import SETTLED_SKIP
from payments.checkout import invoice_checkout_create
from payments.models import PaymentSession
from tests.invoicing.receivables import account, issued

pytestmark = pytest.mark.django_db


def billed(merchant, now, amount="75.50"):
    invoice = issued(account(merchant), amount, now=now)
    invoice.customer.billing_emails = "ap@acme.example, cfo@acme.example"
    invoice.customer.save()
    return invoice


def hosted_link(api_client, invoice):
    response = api_client.post(f"/v2/invoices/{invoice.pk}/payment", {"method": "hosted_link"}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_each_hosted_link_call_e_mails_its_page_to_the_billing_e_mails(
    api_client, stripe_connected, stripe_server, merchant, now, smtp, django_capture_on_commit_callbacks
):
    invoice = billed(merchant, now)

    with django_capture_on_commit_callbacks(execute=True):
        first = hosted_link(api_client, invoice)
        second = hosted_link(api_client, invoice)

    deliveries = list(DocumentDelivery.objects.filter(invoice=invoice, reason="pay_link").order_by("pk"))
    assert [(d.reason, d.status) for d in deliveries] == [(DeliveryReason.PAYMENT_LINK, DeliveryStatus.SENT)] * 2
    assert [d.values["payment_url"] for d in deliveries] == [first["paymentUrl"], second["paymentUrl"]]
    assert len(smtp.received) == 2
    received = smtp.received[0]
    assert received.rcpt_tos == ["ap@acme.example", "cfo@acme.example"]
    message = received.message
    assert message["Subject"] == f"Pay invoice {invoice.number} from {merchant.name} online ($75.50)"
    text = message.get_body(preferencelist=("plain",)).get_content()
    session = PaymentSession.objects.get(pk=first["paymentSessionId"])
    assert f"Pay now: {session.url}" in text
    assert f"This page is open until {session.expires_at:%b %d, %Y %H:%M} UTC." in text
    link = next(word for word in text.split() if word.startswith("https://billing.neural.example/documents/"))
    assert document_from_token(link.rstrip("/").rsplit("/", 1)[-1]).pk == invoice.pk
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "Pay now" in html and session.url in html
    assert [part.get_content_type() for part in message.iter_attachments()] == ["application/pdf"]
    second_text = smtp.received[1].message.get_body(preferencelist=("plain",)).get_content()
    assert f"Pay now: {second['paymentUrl']}" in second_text


def test_the_pay_links_visits_and_a_refused_call_e_mail_nothing(
    api_client, stripe_connected, stripe_server, merchant, now, smtp, django_capture_on_commit_callbacks
):
    invoice = billed(merchant, now)
    paid = billed(merchant, now, "5.00")
    invoice_pay_in_full(invoice=paid, at=now)

    with django_capture_on_commit_callbacks(execute=True):
        invoice_checkout_create(invoice=invoice, now=now)  # what a visit of the invoice's pay link does
        refused = api_client.post(f"/v2/invoices/{paid.pk}/payment", {"method": "hosted_link"}, format="json")

    assert refused.status_code == 409
    assert not DocumentDelivery.objects.filter(reason=DeliveryReason.PAYMENT_LINK).exists()
    assert smtp.received == []


def test_an_invoice_settled_before_the_send_is_not_e_mailed_and_the_merchants_wording_is_used(
    api_client, stripe_connected, stripe_server, merchant, now, smtp, django_capture_on_commit_callbacks
):
    MailTemplate.objects.create(
        merchant=merchant,
        kind="payment_link",
        subject="Your link, {{ customer_name }}",
        body_text="Pay {{ amount_due }} at {{ payment_url }}",
        body_html="<p>Pay at {{ payment_url }}</p>",
    )
    settled, worded = billed(merchant, now), billed(merchant, now, "12.00")

    hosted_link(api_client, settled)  # queued; the send runs after the invoice was paid
    invoice_pay_in_full(invoice=settled, at=now)
    with django_capture_on_commit_callbacks(execute=True):
        answer = hosted_link(api_client, worded)

    delivery = DocumentDelivery.objects.get(invoice=settled, reason="pay_link")
    document_delivery_send(delivery_id=delivery.pk, now=timezone.now())
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error) == (DeliveryStatus.SKIPPED, SETTLED_SKIP)
    [received] = smtp.received
    assert received.message["Subject"] == "Your link, " + worded.customer.name
    assert received.message.get_body(preferencelist=("plain",)).get_content().strip() == (
        f"Pay $12.00 at {answer['paymentUrl']}"
    )

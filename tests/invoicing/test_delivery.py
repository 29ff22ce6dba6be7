"""Delivery: an issued invoice or credit note is e-mailed to the customer's billing addresses through a
real SMTP server (aiosmtpd on 127.0.0.1), with the PDF attached, from the merchant's sender; the delivery
log records sent, failed (with the server's answer), retried, skipped and bounced deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse

from catalog.models import PaymentTerm
from invoicing.models import (
    DeliveryReason,
    DeliverySettings,
    DeliveryStatus,
    DocumentDelivery,
    Invoice,
    InvoiceKind,
    MailTemplate,
)
from invoicing.services import (
    DELIVERY_MAX_ATTEMPTS,
    billing_run_execute,
    credit_note_issue,
    delivery_retry_delay,
    document_deliveries_send_due,
    document_delivery_provider_event,
    document_delivery_resend,
    document_delivery_send,
    invoice_finalize,
    subscription_start,
    test_clock_create,
)
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def closed_port(settings):
    """Django's SMTP backend pointed at a port nobody listens on."""
    from tests.invoicing.smtp_server import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


@pytest.fixture
def customer(seller):
    seller.email = "hello@neural.example"
    seller.save()
    DeliverySettings.objects.create(
        merchant=seller,
        from_name="Neural Labs Billing",
        from_email="invoices@neural.example",
        reply_to="ar@neural.example",
        bcc="archive@neural.example",
    )
    return CustomerFactory(
        merchant=seller, name="Acme Corp", email="it@acme.example", billing_emails="ap@acme.example, cfo@acme.example"
    )


def _draft(customer) -> Invoice:
    """A recurring January draft of 49.00 + usage, 10 % tax, 14 days' terms (nothing issued before it)."""
    plan = PlanFactory(merchant=customer.merchant, product__merchant=customer.merchant, default_tax_rate=Decimal("10"))
    fee_price(plan, "49.00", term=PaymentTerm.IN_ARREARS, name="Platform fee")
    price = metered_price(plan, "0.000002", name="Input tokens")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    subscription.payment_term_days = 14
    subscription.save()
    record_usage(customer, price.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_234_567)
    billing_run_execute(as_of=FEB_1)
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)


@pytest.fixture
def draft(customer) -> Invoice:
    return _draft(customer)


def _issue(draft, django_capture_on_commit_callbacks) -> Invoice:
    """Issue ``draft`` and run what its commit starts (the send task runs eagerly in tests)."""
    with django_capture_on_commit_callbacks(execute=True):
        return invoice_finalize(invoice=draft, now=FEB_1)


# -- sent through SMTP ---------------------------------------------------------------------------------


def test_issuing_an_invoice_e_mails_it_with_the_pdf_from_the_merchants_sender(
    smtp, draft, django_capture_on_commit_callbacks, client
):
    invoice = _issue(draft, django_capture_on_commit_callbacks)

    received, archive = smtp.received
    message = received.message
    assert message["From"] == "Neural Labs Billing <invoices@neural.example>"
    assert message["To"] == "ap@acme.example, cfo@acme.example"
    assert message["Reply-To"] == "ar@neural.example"
    assert received.mail_from == "invoices@neural.example"
    assert received.rcpt_tos == ["ap@acme.example", "cfo@acme.example"]
    # The merchant's BCC gets its own copy of the same message.
    assert archive.rcpt_tos == ["archive@neural.example"]
    assert archive.message["X-Meterline-Copy-Of"] == "ap@acme.example, cfo@acme.example"
    assert archive.message["Subject"] == message["Subject"]
    assert message["Subject"] == "Invoice NLE-2026-000001 from Neural Labs: $56.62 due Feb 15, 2026"
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert "NLE-2026-000001" in body
        assert "$56.62" in body
        assert "Feb 15, 2026" in body
    view_url = next(word for word in text.split() if word.startswith("https://billing.neural.example/documents/"))
    assert f'href="{view_url}"' in html
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "NLE-2026-000001.pdf"
    assert attachment.get_content().startswith(b"%PDF")

    delivery = DocumentDelivery.objects.get(invoice=invoice)
    assert (delivery.reason, delivery.status, delivery.attempts, delivery.error) == (
        DeliveryReason.ISSUED,
        DeliveryStatus.SENT,
        1,
        "",
    )
    assert delivery.recipients == ["ap@acme.example", "cfo@acme.example"]
    assert delivery.message_id == message["Message-ID"]
    assert delivery.subject == message["Subject"]
    assert delivery.next_attempt_at is None

    # The link opens the invoice without a login.
    page = client.get(urlsplit(view_url).path)
    assert page.status_code == 200
    assert "NLE-2026-000001" in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"
    pdf = client.get(urlsplit(view_url).path + "/pdf")
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")


def test_without_billing_e_mails_or_settings_the_customers_e_mail_gets_it_from_the_default_sender(
    smtp, seller, django_capture_on_commit_callbacks, settings
):
    settings.DEFAULT_FROM_EMAIL = "billing@meterline.example"
    seller.email = "hello@neural.example"
    seller.save()
    draft = _draft(CustomerFactory(merchant=seller, name="Solo", email="solo@example.com"))

    _issue(draft, django_capture_on_commit_callbacks)

    [received] = smtp.received
    assert received.message["From"] == "Neural Labs <billing@meterline.example>"
    assert received.message["To"] == "solo@example.com"
    assert received.message["Reply-To"] == "hello@neural.example"


def test_issuing_a_credit_note_e_mails_it(smtp, draft, django_capture_on_commit_callbacks):
    invoice = invoice_finalize(invoice=draft, now=FEB_1)  # its own send never starts: no commit in a test

    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_issue(invoice=invoice, now=NOW, reason="Outage on Jan 9")

    received, _archive = smtp.received
    message = received.message
    assert (
        message["Subject"] == f"Credit note {note.number} from Neural Labs: $56.62 credited on invoice NLE-2026-000001"
    )
    assert "Reason: Outage on Jan 9" in message.get_body(("plain",)).get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"{note.number}.pdf"
    assert attachment.get_content().startswith(b"%PDF")
    assert DocumentDelivery.objects.get(credit_note=note).status == DeliveryStatus.SENT


def test_a_refused_recipient_fails_the_delivery_with_the_servers_answer(
    smtp, customer, django_capture_on_commit_callbacks
):
    customer.billing_emails = "ap@acme.example"
    customer.save()
    smtp.handler.refuse.add("ap@acme.example")

    invoice = _issue(_draft(customer), django_capture_on_commit_callbacks)

    delivery = DocumentDelivery.objects.get(invoice=invoice)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert delivery.error == "ap@acme.example: 550 5.1.1 <ap@acme.example>: Recipient address rejected: User unknown"
    assert delivery.next_attempt_at is None
    assert smtp.received == []


def test_a_temporary_refusal_is_retried_with_back_off_and_then_sent(smtp, draft):
    invoice = invoice_finalize(invoice=draft, now=FEB_1)
    delivery = DocumentDelivery.objects.get(invoice=invoice)
    smtp.handler.defer_next = 1

    first = document_delivery_send(delivery_id=delivery.pk, now=NOW)

    assert (first.status, first.attempts) == (DeliveryStatus.QUEUED, 1)
    assert first.error == "SMTPDataError: 451 4.3.0 Mail server temporarily unavailable, try again later"
    assert first.next_attempt_at == NOW + delivery_retry_delay(1) == NOW + timedelta(minutes=1)
    # Not due yet: the beat sweep leaves it.
    assert [d.status for d in document_deliveries_send_due(now=NOW + timedelta(seconds=59))] == []

    [second] = document_deliveries_send_due(now=NOW + timedelta(minutes=1))

    assert (second.status, second.attempts, second.error) == (DeliveryStatus.SENT, 2, "")
    assert second.sent_at == NOW + timedelta(minutes=1)
    assert [r.rcpt_tos for r in smtp.received] == [["ap@acme.example", "cfo@acme.example"], ["archive@neural.example"]]


def test_a_server_that_cannot_be_reached_is_retried_until_the_last_attempt_fails(closed_port, draft):
    invoice = invoice_finalize(invoice=draft, now=FEB_1)
    delivery = DocumentDelivery.objects.get(invoice=invoice)
    at = NOW
    waits = []
    for _ in range(DELIVERY_MAX_ATTEMPTS - 1):
        delivery = document_delivery_send(delivery_id=delivery.pk, now=at)
        assert delivery.status == DeliveryStatus.QUEUED
        waits.append(delivery.next_attempt_at - at)
        at = delivery.next_attempt_at

    delivery = document_delivery_send(delivery_id=delivery.pk, now=at)

    assert waits == [timedelta(minutes=minutes) for minutes in (1, 2, 4, 8, 16)]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, DELIVERY_MAX_ATTEMPTS)
    assert delivery.error.startswith("ConnectionRefusedError")
    assert delivery.next_attempt_at is None


def test_a_delivery_being_sent_is_not_sent_again_by_a_second_worker(smtp, draft):
    invoice = invoice_finalize(invoice=draft, now=FEB_1)
    delivery = DocumentDelivery.objects.get(invoice=invoice)
    # The first worker's lease (taken when it started) still runs: the second finds nothing due.
    DocumentDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=NOW + timedelta(minutes=5))

    again = document_delivery_send(delivery_id=delivery.pk, now=NOW)

    assert (again.status, again.attempts) == (DeliveryStatus.QUEUED, 0)
    assert smtp.received == []


def test_resend_sends_again_as_a_new_row_of_the_log(smtp, draft, django_capture_on_commit_callbacks):
    invoice = _issue(draft, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        resend = document_delivery_resend(document=invoice, now=NOW, requested_by="finance")

    customer_copies = [r.message for r in smtp.received if r.rcpt_tos != ["archive@neural.example"]]
    assert len(customer_copies) == 2
    assert customer_copies[0]["Message-ID"] != customer_copies[1]["Message-ID"]
    assert list(invoice.deliveries.order_by("queued_at").values_list("reason", "status", "requested_by")) == [
        (DeliveryReason.ISSUED, DeliveryStatus.SENT, ""),
        (DeliveryReason.RESEND, DeliveryStatus.SENT, "finance"),
    ]
    assert resend.reason == DeliveryReason.RESEND


def test_resend_from_the_admin(smtp, draft, django_capture_on_commit_callbacks, client):
    invoice = invoice_finalize(invoice=draft, now=FEB_1)
    client.force_login(get_user_model().objects.create_superuser("finance", "f@example.com", "pw"))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:invoicing_invoice_changelist"),
            {"action": "action_resend", "_selected_action": [invoice.pk]},
        )

    assert response.status_code == 302
    assert [r.message["To"] for r in smtp.received] == ["ap@acme.example, cfo@acme.example", "archive@neural.example"]
    page = client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "E-mail deliveries" in page and "Resent" in page and "ap@acme.example, cfo@acme.example" in page


def test_one_issue_queues_exactly_one_delivery(draft):
    invoice = invoice_finalize(invoice=draft, now=FEB_1)

    with pytest.raises(IntegrityError), transaction.atomic():
        DocumentDelivery.objects.create(
            merchant=invoice.merchant, invoice=invoice, reason=DeliveryReason.ISSUED, queued_at=NOW
        )
    assert invoice.deliveries.count() == 1


def test_a_rolled_back_issue_queues_and_sends_nothing(smtp, draft, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            invoice_finalize(invoice=draft, now=FEB_1)
            raise RuntimeError("the caller's transaction fails after the issue")

    assert callbacks == []
    assert DocumentDelivery.objects.count() == 0
    assert smtp.received == []
    draft.refresh_from_db()
    assert draft.number is None


# -- not sent ------------------------------------------------------------------------------------------


def test_an_invoice_issued_on_a_test_clock_is_logged_not_sent(smtp, customer, django_capture_on_commit_callbacks):
    draft = _draft(customer)
    subscription = draft.subscription
    subscription.test_clock = test_clock_create(merchant=customer.merchant, current_time=FEB_1, now=NOW)
    subscription.save()

    invoice = _issue(draft, django_capture_on_commit_callbacks)

    delivery = DocumentDelivery.objects.get(invoice=invoice)
    assert delivery.status == DeliveryStatus.SKIPPED
    assert "test clock" in delivery.error
    assert smtp.received == []


def test_a_merchant_who_turned_delivery_off_gets_a_skipped_row(smtp, draft, django_capture_on_commit_callbacks):
    DeliverySettings.objects.filter(merchant=draft.merchant).update(enabled=False)

    invoice = _issue(draft, django_capture_on_commit_callbacks)

    delivery = DocumentDelivery.objects.get(invoice=invoice)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SKIPPED, 0)
    assert "off for this merchant" in delivery.error
    assert smtp.received == []


# -- templates -----------------------------------------------------------------------------------------


def test_the_merchants_own_template_is_used(smtp, draft, django_capture_on_commit_callbacks):
    MailTemplate.objects.create(
        merchant=draft.merchant,
        kind="invoice",
        subject="{{ merchant_name|upper }} invoice {{ number }}",
        body_text="Pay {{ amount_due }} by {{ due_date }}: {{ view_url }}",
        body_html="<p>Pay <b>{{ amount_due }}</b> — {{ customer_name }}</p>",
    )
    draft.customer.name = "Acme <Corp>"
    draft.customer.save()

    _issue(draft, django_capture_on_commit_callbacks)

    message = smtp.received[0].message
    assert message["Subject"] == "NEURAL LABS invoice NLE-2026-000001"
    assert message.get_body(("plain",)).get_content().startswith("Pay $56.62 by Feb 15, 2026: https://")
    assert "<p>Pay <b>$56.62</b> — Acme &lt;Corp&gt;</p>" in message.get_body(("html",)).get_content()


@pytest.mark.parametrize(
    "source",
    [
        "{{ number.__class__ }}",
        "{% load static %}{% static 'x' %}",
        "{% include 'invoicing/document.html' %}",
        "{% debug %}",
        "{% url 'admin:index' %}",
        "{% if number %}unclosed",
    ],
)
def test_a_template_outside_the_sandbox_is_refused(seller, source):
    template = MailTemplate(merchant=seller, kind="invoice", subject="Invoice", body_text=source, body_html="<p></p>")

    with pytest.raises(Exception) as refused:
        template.full_clean()

    assert "body_text" in refused.value.message_dict
    assert "Not a valid template" in refused.value.message_dict["body_text"][0]


def test_a_template_reaches_only_the_plain_values_it_is_given():
    from invoicing.mail_templates import mail_render

    rendered = mail_render(
        subject="{{ number.upper }}",
        body_text="[{{ settings.SECRET_KEY }}{{ invoice.customer }}{{ request.user }}]",
        body_html="<b>{{ number|lower }}</b>",
        context={"number": "nle-1"},
    )

    assert (rendered.subject, rendered.body_text, rendered.body_html) == ("NLE-1", "[]", "<b>nle-1</b>")


# -- the customer's link -------------------------------------------------------------------------------


def test_a_tampered_or_expired_link_is_not_found(draft, client, monkeypatch, settings):
    from django.core import signing

    from invoicing.delivery import document_link_token

    invoice = invoice_finalize(invoice=draft, now=FEB_1)
    token = document_link_token(invoice)
    assert client.get(f"/documents/{token}").status_code == 200
    assert client.get(f"/documents/{token[:-2]}xx").status_code == 404
    assert client.post(f"/documents/{token}").status_code == 405

    real_time = signing.time.time
    monkeypatch.setattr(
        signing.time, "time", lambda: real_time() - (settings.METERLINE_DOCUMENT_LINK_MAX_AGE_DAYS * 86400 + 60)
    )
    expired = document_link_token(invoice)
    monkeypatch.undo()

    assert client.get(f"/documents/{expired}").status_code == 404
    assert client.get(f"/documents/{expired}/pdf").status_code == 404


# -- bounces -------------------------------------------------------------------------------------------


def test_a_bounce_reported_by_the_mail_provider_marks_the_delivery_bounced(
    smtp, draft, django_capture_on_commit_callbacks
):
    invoice = _issue(draft, django_capture_on_commit_callbacks)
    delivery = DocumentDelivery.objects.get(invoice=invoice)

    changed = document_delivery_provider_event(
        message_id=delivery.message_id, event_type="bounced", description="550 mailbox full", now=NOW
    )
    ignored = document_delivery_provider_event(message_id="<other@x>", event_type="bounced", description="", now=NOW)

    delivery.refresh_from_db()
    assert (changed, ignored) == (1, 0)
    assert (delivery.status, delivery.error, delivery.bounced_at) == (DeliveryStatus.BOUNCED, "550 mailbox full", NOW)

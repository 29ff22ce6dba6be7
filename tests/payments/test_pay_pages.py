"""The customer's pages without a login (payments/public_views.py): the invoice's pay link shows what is due
and opens a fresh Stripe Checkout Session each time its Pay button is pressed (never on a mere visit), Stripe's return settles the payment before the webhook, and the
invoice's document page shows "Pay now" when the invoice can be paid online."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from invoicing.delivery import document_links
from invoicing.models import InvoiceStatus, Payment
from invoicing.receivables import invoice_pay_in_full
from payments.checkout import checkout_return_url, invoice_checkout_create, invoice_pay_url
from payments.models import PaymentSession
from payments.services import integration_disconnect
from tests.invoicing.receivables import account, issued

from .conftest import invoice_of_pay_link

pytestmark = pytest.mark.django_db

SESSIONS = "/v1/checkout/sessions"


def path_of(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def invoice(merchant, now):
    return issued(account(merchant), "80.00", now=now)


def test_a_visit_of_the_pay_link_shows_a_pay_button_and_calls_nobody(stripe_connected, stripe_server, invoice, client):
    link = path_of(invoice_pay_url(invoice))

    page = client.get(link)
    again = client.head(link)

    html = page.content.decode()
    assert (page.status_code, again.status_code) == (200, 200)
    assert '<form method="post">' in html and "Pay $80.00</button>" in html
    assert page["Cache-Control"] == "private, no-store"
    # a mail scanner or link preview opening the link opens no session
    assert stripe_server.calls("POST", SESSIONS) == [] and not PaymentSession.objects.exists()


def test_each_press_of_pay_opens_a_fresh_checkout_session(stripe_connected, stripe_server, invoice):
    client = Client(enforce_csrf_checks=True)
    link = path_of(invoice_pay_url(invoice))
    page = client.get(link)
    [token] = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())

    first = client.post(link, {"csrfmiddlewaretoken": token})
    second = client.post(link, {"csrfmiddlewaretoken": token})
    forged = Client(enforce_csrf_checks=True).post(link)

    sessions = list(PaymentSession.objects.order_by("created_at", "id"))
    assert [first.status_code, second.status_code, forged.status_code] == [303, 303, 403]
    assert {first["Location"], second["Location"]} == {session.url for session in sessions}
    assert first["Location"] != second["Location"] and len(stripe_server.calls("POST", SESSIONS)) == 2
    assert all(s.invoice_id == invoice.pk and s.amount == invoice.amount_due for s in sessions)
    assert first["Cache-Control"] == "private, no-store"


def test_a_paid_invoice_an_unconnected_merchant_and_a_bad_link(stripe_connected, stripe_server, invoice, client, now):
    link = path_of(invoice_pay_url(invoice))
    integration_disconnect(integration=stripe_connected, now=now)
    unavailable = client.get(link)
    pressed_unavailable = client.post(link)
    invoice_pay_in_full(invoice=invoice, at=now)

    paid = client.get(link)
    pressed_paid = client.post(link)
    tampered = client.get(link[:-3] + "xyz")

    for response in (unavailable, pressed_unavailable):
        assert (response.status_code, "Online payment unavailable" in response.content.decode()) == (200, True)
    for response in (paid, pressed_paid):
        html = response.content.decode()
        assert (response.status_code, '<h1 class="paid">Paid</h1>' in html, "<form" in html) == (200, True, False)
    assert tampered.status_code == 404
    assert client.put(link).status_code == 405
    assert stripe_server.calls("POST", SESSIONS) == []


def test_stripe_unreachable_asks_the_customer_to_try_again(stripe_connected, stripe_server, invoice, client, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there

    response = client.post(path_of(invoice_pay_url(invoice)))

    assert response.status_code == 502 and "Please try again" in response.content.decode()
    assert not PaymentSession.objects.exists()


def test_coming_back_from_stripe_shows_paid_and_records_the_payment_once(
    stripe_connected, stripe_server, invoice, client, now
):
    session = invoice_checkout_create(invoice=invoice, now=now)
    back = path_of(checkout_return_url(session.pk))
    before = client.get(back)
    stripe_server.customer_pays_session(session.reference)

    after = client.get(back)
    reloaded = client.get(back)

    assert "Not paid" in before.content.decode()
    assert '<h1 class="paid">Paid</h1>' in after.content.decode() and reloaded.status_code == 200
    assert Payment.objects.count() == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert client.get(back[:-3] + "xyz").status_code == 404


def test_coming_back_goes_on_to_the_merchants_success_address(stripe_connected, stripe_server, invoice, client, now):
    session = invoice_checkout_create(invoice=invoice, now=now, success_url="https://shop.example.com/thanks")
    stripe_server.customer_pays_session(session.reference)

    response = client.get(path_of(checkout_return_url(session.pk)))

    assert (response.status_code, response["Location"]) == (303, "https://shop.example.com/thanks")


def test_the_document_page_offers_pay_now_while_the_invoice_can_be_paid_online(
    stripe_connected, stripe_server, invoice, client, now
):
    view_url, pdf_url = document_links(invoice)

    payable = client.get(path_of(view_url)).content.decode()
    integration_disconnect(integration=stripe_connected, now=now)
    unconnected = client.get(path_of(view_url)).content.decode()

    [pay_now] = re.findall(r'<a class="pay-now" href="([^"]+)"', payable)
    assert invoice_of_pay_link(pay_now) == invoice and "Pay now" in payable
    assert "Pay now" not in unconnected
    assert client.get(path_of(pdf_url)).status_code == 200


def test_a_paid_invoice_has_no_pay_now(stripe_connected, stripe_server, invoice, client, now):
    invoice_pay_in_full(invoice=invoice, at=now)

    page = client.get(path_of(document_links(invoice)[0])).content.decode()

    assert "Pay now" not in page and "PAID" in page

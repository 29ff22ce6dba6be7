"""Hosted payment of an invoice (payments/checkout.py) against the local Stripe server through the real
``stripe`` library: the Checkout Session sent, the completed session recorded as exactly one payment whoever
reports it (the webhook function, its replays, the success page), Invoice 0's activation, the pay link."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.core import signing

from catalog.models import Subscription, SubscriptionStatus
from invoicing.models import CustomerCreditEntry, Invoice, InvoiceKind, InvoiceStatus, Payment
from invoicing.pay_links import invoice_pay_link
from invoicing.receivables import invoice_pay_in_full
from payments.checkout import (
    CheckoutRefused,
    checkout_session_completed,
    checkout_session_refresh,
    invoice_checkout_create,
    invoice_from_pay_token,
    invoice_pay_token,
)
from payments.errors import PaymentsNotConnected
from payments.models import PaymentSession, PaymentSessionStatus
from payments.services import integration_disconnect, integration_upsert
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued

from .conftest import SECRET_KEY, invoice_of_pay_link

pytestmark = pytest.mark.django_db

SESSIONS = "/v1/checkout/sessions"


def open_invoice(merchant, now, amount: str = "123.45") -> Invoice:
    return issued(account(merchant), amount, now=now)


def paid_on_stripe(stripe_server, session: PaymentSession) -> dict:
    return stripe_server.customer_pays_session(session.reference)


def test_a_checkout_session_is_opened_for_the_amount_due_with_our_ids_in_its_metadata(
    stripe_connected, stripe_server, merchant, now
):
    invoice = open_invoice(merchant, now)

    session = invoice_checkout_create(invoice=invoice, now=now)

    [sent] = stripe_server.calls("POST", SESSIONS)
    ids = {"meterline_invoice": invoice.pk, "meterline_payment_session": session.pk}
    assert sent.params["mode"] == "payment"
    assert sent.params["line_items[0][price_data][unit_amount]"] == "12345"
    assert sent.params["line_items[0][price_data][currency]"] == "usd"
    assert sent.params["line_items[0][price_data][product_data][name]"] == f"Invoice {invoice.number}"
    assert sent.params["customer"] == session.provider_customer.reference
    for key, value in ids.items():
        assert sent.params[f"metadata[{key}]"] == value
        assert sent.params[f"payment_intent_data[metadata][{key}]"] == value
    assert sent.idempotency_key == f"meterline-session-{session.pk}"
    assert sent.params["success_url"].startswith("http://127.0.0.1:8000/pay/return/")
    assert (session.mode, session.status, session.invoice_id) == ("payment", "pending", invoice.pk)
    assert (session.amount, session.currency) == (Decimal("123.45"), "USD")
    assert session.url == stripe_server.state.sessions[session.reference]["url"]


def test_the_completed_session_records_one_card_payment_and_the_invoice_is_paid(
    stripe_connected, stripe_server, merchant, now
):
    invoice = open_invoice(merchant, now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    completed = paid_on_stripe(stripe_server, session)

    checkout_session_completed(integration=stripe_connected, session=completed, now=now)

    session.refresh_from_db()
    invoice.refresh_from_db()
    payment = Payment.objects.get()
    assert (session.status, session.completed_at, session.payment_id) == ("completed", now, payment.pk)
    assert session.payment_reference == completed["payment_intent"]
    assert (payment.amount, payment.method, payment.reference) == (Decimal("123.45"), "card", session.payment_reference)
    assert payment.idempotency_key == f"charge-{session.payment_reference}"
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)


def test_the_webhook_its_replays_and_the_success_page_record_one_payment(
    stripe_connected, stripe_server, merchant, now
):
    invoice = open_invoice(merchant, now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    completed = paid_on_stripe(stripe_server, session)

    refreshed = checkout_session_refresh(session=session, now=now)  # the customer is back first
    checkout_session_completed(integration=stripe_connected, session=completed, now=now)  # then the webhook
    checkout_session_completed(integration=stripe_connected, session=completed, now=now)  # and its replay
    again = checkout_session_refresh(session=refreshed, now=now)  # the page reloaded

    assert Payment.objects.count() == 1
    assert (refreshed.status, again.status) == ("completed", "completed")
    assert not CustomerCreditEntry.objects.exists()
    assert len(stripe_server.calls("GET", f"{SESSIONS}/{session.reference}")) == 1  # completed: no more calls


def test_paying_invoice_0_activates_the_pending_subscription(stripe_connected, stripe_server, merchant, now):
    invoice = open_invoice(merchant, now)
    Invoice.objects.filter(pk=invoice.pk).update(kind=InvoiceKind.OPENING)
    Subscription.objects.filter(pk=invoice.subscription_id).update(status=SubscriptionStatus.PENDING_PAYMENT)
    invoice.refresh_from_db()
    session = invoice_checkout_create(invoice=invoice, now=now)

    checkout_session_completed(integration=stripe_connected, session=paid_on_stripe(stripe_server, session), now=now)

    assert Subscription.objects.get(pk=invoice.subscription_id).status == SubscriptionStatus.ACTIVE
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID


def test_an_invoice_paid_out_of_band_meanwhile_keeps_the_card_money_as_customer_credit(
    stripe_connected, stripe_server, merchant, now
):
    invoice = open_invoice(merchant, now, "50.00")
    session = invoice_checkout_create(invoice=invoice, now=now)
    invoice_pay_in_full(invoice=invoice, at=now)

    checkout_session_completed(integration=stripe_connected, session=paid_on_stripe(stripe_server, session), now=now)

    card = Payment.objects.get(method="card")
    assert card.allocations.count() == 0
    assert CustomerCreditEntry.objects.get(payment=card).amount == Decimal("50.00")


def test_a_session_not_paid_yet_another_mode_or_another_merchants_changes_nothing(
    stripe_connected, stripe_server, merchant, now
):
    invoice = open_invoice(merchant, now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    open_session = stripe_server.state.sessions[session.reference]
    others = integration_upsert(merchant=MerchantFactory(), provider="stripe", now=now, secret_key=SECRET_KEY)

    checkout_session_completed(integration=stripe_connected, session=open_session, now=now)
    checkout_session_completed(integration=stripe_connected, session={**open_session, "mode": "setup"}, now=now)
    completed = paid_on_stripe(stripe_server, session)
    checkout_session_completed(integration=others, session=completed, now=now)

    session.refresh_from_db()
    assert (session.status, Payment.objects.count()) == ("pending", 0)


def test_a_complete_session_whose_debit_is_on_its_way_is_processing(stripe_connected, stripe_server, merchant, now):
    invoice = open_invoice(merchant, now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    completed = {**paid_on_stripe(stripe_server, session), "payment_status": "unpaid"}

    checkout_session_completed(integration=stripe_connected, session=completed, now=now)

    session.refresh_from_db()
    assert (session.status, Payment.objects.count()) == ("processing", 0)


def test_an_expired_session_is_marked_expired_by_the_return_page(stripe_connected, stripe_server, merchant, now):
    session = invoice_checkout_create(invoice=open_invoice(merchant, now), now=now)
    stripe_server.state.sessions[session.reference]["status"] = "expired"

    assert checkout_session_refresh(session=session, now=now).status == PaymentSessionStatus.EXPIRED


def test_what_cannot_be_paid_online_is_refused_before_stripe_is_called(stripe_connected, stripe_server, merchant, now):
    paid = open_invoice(merchant, now)
    invoice_pay_in_full(invoice=paid, at=now)
    paid.refresh_from_db()
    nothing_due = open_invoice(merchant, now)
    Invoice.objects.filter(pk=nothing_due.pk).update(amount_due=0)
    nothing_due.refresh_from_db()

    codes = []
    for invoice in (paid, nothing_due):
        with pytest.raises(CheckoutRefused) as refused:
            invoice_checkout_create(invoice=invoice, now=now)
        codes.append(refused.value.code)

    assert codes == ["INVOICE_ALREADY_PAID", "INVOICE_NO_BALANCE"]
    assert stripe_server.calls("POST", SESSIONS) == []


def test_without_a_connected_stripe_no_session_is_opened(stripe_connected, stripe_server, merchant, now):
    invoice = open_invoice(merchant, now)
    integration_disconnect(integration=stripe_connected, now=now)

    with pytest.raises(PaymentsNotConnected):
        invoice_checkout_create(invoice=invoice, now=now)
    assert invoice_pay_link(invoice) is None


def test_the_pay_link_names_one_invoice_for_30_days(stripe_connected, merchant, now, settings):
    invoice = open_invoice(merchant, now)
    token = invoice_pay_token(invoice.pk)

    assert invoice_of_pay_link(invoice_pay_link(invoice)) == invoice
    assert invoice_from_pay_token(token) == invoice
    assert invoice_from_pay_token(token + "x") is None
    assert invoice_from_pay_token(signing.dumps(invoice.pk, salt="another-salt")) is None


def test_a_pay_link_older_than_30_days_opens_nothing(merchant, now, monkeypatch):
    invoice = open_invoice(merchant, now)

    def signed_days_ago(days: int) -> str:
        # a token as it was signed ``days`` ago (Django's signer stamps the current time)
        with monkeypatch.context() as patched:
            stamp = signing.b62_encode(int(time.time()) - days * 86400)
            patched.setattr(signing.TimestampSigner, "timestamp", lambda self: stamp)
            return invoice_pay_token(invoice.pk)

    assert invoice_from_pay_token(signed_days_ago(29)) == invoice
    assert invoice_from_pay_token(signed_days_ago(31)) is None

"""Refunds of hosted-checkout card payments back through Stripe (payments/refunds.py): a payment recorded from a
completed payment-mode session (the customer paid on Stripe Checkout, reference ``pi_…``) is refunded to its
PaymentIntent, as an automatic charge's is; the mode check uses the session's provider customer. Against the
local Stripe server through the real ``stripe`` library."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.models import CreditNote, InvoiceStatus
from payments.checkout import checkout_session_completed, invoice_checkout_create
from payments.services import integration_upsert
from tests.invoicing.receivables import account, issued

pytestmark = pytest.mark.django_db

REFUNDS = "/v1/refunds"


def paid_on_checkout(merchant, integration, stripe_server, now, amount="80.00"):
    """An invoice the customer paid on Stripe Checkout (the webhook's record of the completed session)."""
    invoice = issued(account(merchant), amount, now=now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    completed = stripe_server.customer_pays_session(session.reference)
    checkout_session_completed(integration=integration, session=completed, now=now)
    session.refresh_from_db()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and session.payment_reference.startswith("pi_")
    return invoice, session


def refund(api_client, invoice, body=None):
    return api_client.post(f"/v2/invoices/{invoice.pk}/refunds", body or {}, format="json")


def test_a_hosted_checkout_payment_is_refunded_to_its_payment_intent(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice, session = paid_on_checkout(merchant, stripe_connected, stripe_server, now)

    response = refund(api_client, invoice, {"reason": "duplicate", "amount": "30.00"})

    assert response.status_code == 201, response.content
    note = CreditNote.objects.get(pk=response.json()["id"])
    [sent] = stripe_server.calls("POST", REFUNDS)
    assert (sent.params["payment_intent"], sent.params["amount"]) == (session.payment_reference, "3000")
    assert sent.idempotency_key == f"meterline-refund-{note.pk}"
    [row] = note.provider_refunds.all()
    assert (row.status, row.amount, row.payment_id, row.charge_reference) == (
        "succeeded",
        Decimal("30.00"),
        session.payment_id,
        session.payment_reference,
    )


def test_a_hosted_payment_taken_in_test_mode_is_not_refunded_through_live_keys(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice, session = paid_on_checkout(merchant, stripe_connected, stripe_server, now)
    assert session.provider_customer.mode == "test"
    integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key="sk_live_meterline_0123456789")

    response = refund(api_client, invoice)

    assert response.status_code == 201
    [row] = CreditNote.objects.get(pk=response.json()["id"]).provider_refunds.all()
    assert (row.status, row.failure_code) == ("failed", "provider_mode_changed")
    assert stripe_server.calls("POST", REFUNDS) == []


def test_a_session_not_completed_is_not_a_card_payment_to_refund(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice = issued(account(merchant), "20.00", now=now)
    invoice_checkout_create(invoice=invoice, now=now)  # opened, never paid; the invoice is paid by transfer
    paid = api_client.post(f"/v2/invoices/{invoice.pk}/payment", {"method": "out_of_band"}, format="json")
    assert paid.status_code == 200

    response = refund(api_client, invoice)

    assert response.status_code == 201
    assert not CreditNote.objects.get(pk=response.json()["id"]).provider_refunds.exists()
    assert stripe_server.calls("POST", REFUNDS) == []

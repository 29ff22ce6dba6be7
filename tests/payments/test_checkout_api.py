"""Hosted payment on the wire: ``POST /v2/invoices/{id}/payment`` with ``hosted_link``, ``GET /v0/paymentSessions``
and the subscription's ``checkoutUrl`` for Invoice 0, through DRF's client and through the unmodified
paygentic-sdk 0.6.3 against a live server, with Stripe played by the local server."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from paygentic_sdk import Paygentic, errors, models
from rest_framework.test import APIClient

from catalog.models import Subscription, SubscriptionStatus
from catalog.services import api_key_create
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, Payment
from payments.checkout import checkout_session_completed
from payments.models import PaymentSession
from payments.services import integration_upsert, payment_session_setup_create
from tests.api_billing.factories import CustomerFactory, TestClockFactory, llm_plan
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued

from .conftest import SECRET_KEY, invoice_of_pay_link

pytestmark = pytest.mark.django_db

SESSIONS = "/v1/checkout/sessions"
JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)


def pay(api_client, invoice_id: str, method: str = "hosted_link"):
    return api_client.post(f"/v2/invoices/{invoice_id}/payment", {"method": method}, format="json")


def pending_subscription(api_client, merchant) -> dict:
    """POST /v0/subscriptions on a plan with an in-advance fee: Invoice 0 of 49.00 USD, pending_payment."""
    customer = CustomerFactory(merchant=merchant, name="Acme Inc", time_zone="UTC")
    clock = TestClockFactory(merchant=merchant, current_time=JAN_1)
    body = {
        "name": "Acme - Pro",
        "planId": llm_plan(merchant).id,
        "customerId": customer.id,
        "startedAt": "2025-01-01T00:00:00Z",
        "testClockId": clock.id,
        "autoCharge": False,
        "taxExempt": False,
        "elapsedPeriodBilling": "none",
    }
    response = api_client.post("/v0/subscriptions", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_hosted_link_answers_a_new_checkout_session_for_the_amount_due(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice = issued(account(merchant), "75.50", now=now)

    response = pay(api_client, invoice.pk)

    body = response.json()
    session = PaymentSession.objects.get()
    assert response.status_code == 200
    assert (body["method"], body["provider"], body["paymentSessionId"]) == ("hosted_link", "stripe", session.pk)
    assert body["paymentUrl"] == session.url and session.url.startswith("https://checkout.stripe.com/")
    assert (body["invoice"]["id"], body["invoice"]["status"]) == (invoice.pk, "ISSUED")
    models.HostedLinkPaymentResult.model_validate(body)
    [sent] = stripe_server.calls("POST", SESSIONS)
    assert sent.params["line_items[0][price_data][unit_amount]"] == "7550"
    assert sent.params["metadata[meterline_payment_session]"] == session.pk


def test_each_hosted_link_call_opens_a_new_session(api_client, stripe_connected, stripe_server, merchant, now):
    invoice = issued(account(merchant), "10.00", now=now)

    first, second = pay(api_client, invoice.pk).json(), pay(api_client, invoice.pk).json()

    assert first["paymentSessionId"] != second["paymentSessionId"]
    assert PaymentSession.objects.filter(invoice=invoice).count() == 2


def test_hosted_link_refusals(api_client, stripe_server, merchant, now):
    invoice = issued(account(merchant), "10.00", now=now)
    unconnected = pay(api_client, invoice.pk)
    integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
    nothing_due = issued(account(merchant), "10.00", now=now)
    Invoice.objects.filter(pk=nothing_due.pk).update(amount_due=0)
    other = issued(account(MerchantFactory()), "10.00", now=now)

    assert (unconnected.status_code, unconnected.json()["code"]) == (422, "MERCHANT_NO_PAYMENT_ACCOUNT")
    assert (pay(api_client, nothing_due.pk).status_code, pay(api_client, nothing_due.pk).json()["code"]) == (
        422,
        "INVOICE_NO_BALANCE",
    )
    assert pay(api_client, other.pk).status_code == 404
    assert pay(api_client, invoice.pk, method="by_pigeon").status_code == 400
    assert stripe_server.calls("POST", SESSIONS) == []


def test_stripe_unreachable_is_a_502_and_records_nothing(api_client, stripe_connected, merchant, now, settings):
    invoice = issued(account(merchant), "10.00", now=now)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"

    response = pay(api_client, invoice.pk)

    assert (response.status_code, response.json()["code"]) == (502, "PAYMENT_PROVIDER_ERROR")
    assert not PaymentSession.objects.exists()


def test_out_of_band_still_pays_through_the_same_route(api_client, stripe_connected, merchant, now):
    invoice = issued(account(merchant), "10.00", now=now)

    response = pay(api_client, invoice.pk, method="out_of_band")

    assert (response.status_code, response.json()["method"], response.json()["invoice"]["status"]) == (
        200,
        "out_of_band",
        "PAID",
    )


def test_payment_sessions_are_listed_newest_first_with_filters(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice = issued(account(merchant), "20.00", now=now)
    setup = payment_session_setup_create(customer=invoice.customer, now=now)
    paying = PaymentSession.objects.get(pk=pay(api_client, invoice.pk).json()["paymentSessionId"])
    checkout_session_completed(
        integration=stripe_connected, session=stripe_server.customer_pays_session(paying.reference), now=now
    )
    paying.refresh_from_db()

    listed = api_client.get("/v0/paymentSessions").json()
    completed = api_client.get("/v0/paymentSessions?status=completed").json()
    setups = api_client.get("/v0/paymentSessions?entityType=customer").json()
    of_subscription = api_client.get(f"/v0/paymentSessions?subscriptionId={invoice.subscription_id}").json()

    assert [row["id"] for row in listed["data"]] == [paying.pk, setup.pk]  # the API opened it at the real time
    assert listed["object"] == "list" and listed["pagination"]["total"] == 2
    row = next(row for row in listed["data"] if row["id"] == paying.pk)
    assert row == {
        "object": "payment_session",
        "id": paying.pk,
        "entityType": "invoice",
        "entityId": invoice.pk,
        "entityLabel": invoice.number,
        "amount": "20.00",
        "currency": "USD",
        "status": "completed",
        "providerPaymentRef": paying.payment_reference,
        "merchantPaymentAccountId": None,
        "createdAt": row["createdAt"],
        "updatedAt": row["updatedAt"],
        "completedAt": "2026-03-01T12:00:00Z",
    }
    assert [r["id"] for r in completed["data"]] == [paying.pk]
    assert [(r["id"], r["entityType"], r["amount"]) for r in setups["data"]] == [(setup.pk, "customer", "0.00")]
    assert [r["id"] for r in of_subscription["data"]] == [paying.pk]
    assert api_client.get(f"/v0/paymentSessions/{paying.pk}").json() == row


def test_payment_sessions_bad_filters_and_other_merchants(api_client, stripe_connected, stripe_server, merchant, now):
    other = MerchantFactory()
    integration_upsert(merchant=other, provider="stripe", now=now, secret_key=SECRET_KEY)
    theirs = payment_session_setup_create(customer=account(other).customer, now=now)

    assert api_client.get("/v0/paymentSessions?status=lost").status_code == 400
    assert api_client.get("/v0/paymentSessions?entityType=planet").status_code == 400
    assert api_client.get(f"/v0/paymentSessions?merchantId={other.pk}").status_code == 403
    assert api_client.get("/v0/paymentSessions").json()["data"] == []
    assert api_client.get(f"/v0/paymentSessions/{theirs.pk}").status_code == 404
    # An id is matched as sent: a space is nobody's id (no session), not a blank refused with a 400.
    assert api_client.get("/v0/paymentSessions?customerId=+").json()["data"] == []


def test_invoice_0_checkout_url_is_our_pay_link_and_paying_activates_the_subscription(
    api_client, stripe_connected, stripe_server, merchant, client, now
):
    subscription = pending_subscription(api_client, merchant)
    opening = Invoice.objects.get(subscription_id=subscription["id"], kind=InvoiceKind.OPENING)

    payment = subscription["payment"]
    visit = client.post(urlsplit(payment["checkoutUrl"]).path)  # the pay link's Pay button
    session = PaymentSession.objects.get()
    checkout_session_completed(
        integration=stripe_connected, session=stripe_server.customer_pays_session(session.reference), now=now
    )

    assert invoice_of_pay_link(payment["checkoutUrl"]) == opening
    assert payment["paymentSessionId"] == opening.pk
    assert (visit.status_code, visit["Location"]) == (303, session.url)
    assert Subscription.objects.get(pk=subscription["id"]).status == SubscriptionStatus.ACTIVE
    assert api_client.get(f"/v0/subscriptions/{subscription['id']}").json()["payment"]["status"] == "paid"
    assert Payment.objects.get().received_at == JAN_1  # the subscription's (test clock's) time
    listed = api_client.get(f"/v0/paymentSessions?entityType=subscription&subscriptionId={subscription['id']}")
    assert [(r["entityType"], r["entityId"]) for r in listed.json()["data"]] == [("subscription", subscription["id"])]


def test_without_stripe_invoice_0_still_links_to_the_admin(api_client, merchant):
    subscription = pending_subscription(api_client, merchant)

    assert "/admin/invoicing/invoice/" in subscription["payment"]["checkoutUrl"]


@pytest.mark.django_db(transaction=True)
def test_hosted_link_and_payment_sessions_through_the_paygentic_client(live_server, stripe_server):
    # given
    now = datetime.now(UTC)
    merchant = MerchantFactory()
    integration = integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
    invoice = issued(account(merchant), "33.30", now=now)
    unlinkable = issued(account(merchant), "5.00", now=now)
    Invoice.objects.filter(pk=unlinkable.pk).update(status=InvoiceStatus.VOID)
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when
        linked = sdk.invoices_v2.record_invoice_payment(id=invoice.pk, method="hosted_link")
        session = PaymentSession.objects.get(pk=linked.payment_session_id)
        checkout_session_completed(
            integration=integration, session=stripe_server.customer_pays_session(session.reference), now=now
        )
        listed = sdk.payment_sessions.list_payment_sessions(request={"merchant_id": merchant.pk, "status": "completed"})
        with pytest.raises(errors.UnprocessableEntityError) as refused:
            sdk.invoices_v2.record_invoice_payment(id=unlinkable.pk, method="hosted_link")
        paid = sdk.invoices_v2.get(id=invoice.pk)

    # then
    assert isinstance(linked, models.HostedLinkPaymentResult)
    assert (linked.provider, linked.payment_url, linked.invoice.id) == ("stripe", session.url, invoice.pk)
    assert [(s.id, s.entity_type, s.amount, s.status) for s in listed.data] == [
        (session.pk, "invoice", "33.30", "completed")
    ]
    assert listed.data[0].provider_payment_ref.startswith("pi_")
    assert refused.value.data.code == "INVOICE_NOT_LINKABLE_STATUS"
    assert paid.status == "PAID"


def test_another_merchants_key_cannot_pay_our_invoice(stripe_connected, merchant, now):
    invoice = issued(account(merchant), "10.00", now=now)
    _, key = api_key_create(merchant=MerchantFactory(), name="other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert pay(other, invoice.pk).status_code == 404

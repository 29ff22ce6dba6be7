"""Purchases pay the same way as any invoice: a grant purchase's payment session and a top-up's ``paymentUrl``
are the invoice's pay link when the merchant's Stripe is connected, and paying on Stripe Checkout creates the
grant or the credit (``invoice_paid_effects``), through the same ``checkout_session_completed``."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from catalog.models import FeatureType
from catalog.services import feature_create
from invoicing.models import Invoice
from payments.checkout import checkout_session_completed
from payments.models import PaymentSession
from tests.factories import BillableMetricFactory, CustomerFactory, PlanFactory, ProductFactory, SubscriptionFactory
from wallets.models import Wallet

from .conftest import invoice_of_pay_link

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(merchant):
    customer = CustomerFactory(merchant=merchant, currency="USD")
    product = ProductFactory(merchant=merchant)
    SubscriptionFactory(plan=PlanFactory(product=product, merchant=merchant), merchant=merchant, customer=customer)
    return customer


def pay_through_the_link(client, stripe_server, integration, url: str, now) -> None:
    """The customer opens the link, presses Pay, pays on Stripe's page, and Stripe's webhook arrives."""
    assert client.get(urlsplit(url).path).status_code == 200
    assert client.post(urlsplit(url).path).status_code == 303
    session = PaymentSession.objects.latest("created_at")
    checkout_session_completed(
        integration=integration, session=stripe_server.customer_pays_session(session.reference), now=now
    )


def test_a_grant_purchase_is_paid_on_stripe_and_the_grant_appears(
    api_client, client, stripe_connected, stripe_server, merchant, customer, now
):
    product = customer.subscriptions.get().plan.product
    metric = BillableMetricFactory(product=product, event_type="llm.completion", value_property="$.tokens")
    feature = feature_create(
        merchant=merchant,
        product=product,
        key="tokens",
        name="Tokens",
        type=FeatureType.METERED,
        billable_metric=metric,
    )
    entitlement = api_client.post(
        "/v1/entitlements",
        {"customerId": customer.pk, "featureId": feature.pk, "template": {"type": "metered"}},
        format="json",
    ).json()["id"]
    body = {"amount": 500, "price": "12.50", "idempotencyKey": "buy-1"}

    purchase = api_client.post(f"/v1/entitlements/{entitlement}/grants/purchase", body, format="json").json()
    invoice = Invoice.objects.get(pk=purchase["invoiceId"])
    [session] = purchase["paymentSessions"]
    pay_through_the_link(client, stripe_server, stripe_connected, session["url"], now)

    assert invoice_of_pay_link(session["url"]) == invoice and session["amount"] == 1250
    assert api_client.get(f"/v1/entitlements/{entitlement}").json()["balance"] == 500


def test_a_top_up_is_paid_on_stripe_and_the_credit_appears(
    api_client, client, stripe_connected, stripe_server, customer, now
):
    body = {"amount": "100", "currency": "USD", "idempotencyKey": "buy-1"}

    answer = api_client.post(f"/v0/customers/{customer.pk}/topUps", body, format="json").json()
    invoice = Invoice.objects.get(pk=answer["invoiceId"])
    pay_through_the_link(client, stripe_server, stripe_connected, answer["paymentUrl"], now)

    assert invoice_of_pay_link(answer["paymentUrl"]) == invoice
    assert Wallet.objects.get(customer=customer, currency="USD").balance == Decimal(100)
    again = api_client.post(f"/v0/customers/{customer.pk}/topUps", body, format="json").json()
    assert (again["status"], again["paymentUrl"]) == ("credited", None)


def test_without_stripe_a_top_up_has_no_payment_url(api_client, customer):
    body = {"amount": "100", "currency": "USD", "idempotencyKey": "buy-1"}

    answer = api_client.post(f"/v0/customers/{customer.pk}/topUps", body, format="json").json()

    assert (answer["status"], answer["paymentUrl"]) == ("pending_payment", None)

"""POST /v2/invoices/oneOff: a one-off invoice for a customer (set-up work, add-ons, SLA credits)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from paygentic_sdk.models import Invoice as ClientInvoice

from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind, ManualLineItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub(api_client, subscribe, plan):
    return subscribe(plan).json()


def _body(customer, **extra):
    return {
        "customerId": customer.id,
        "currency": "USD",
        "lines": [
            {"displayName": "Set-up work", "description": "SSO integration", "quantity": "4", "unitPrice": "125.00"},
            {"displayName": "SLA credit", "description": "March outage", "quantity": 1, "unitPrice": "-50.00"},
        ],
        **extra,
    }


def test_one_off_invoice_is_issued_with_its_lines(api_client, sub, customer):
    response = api_client.post("/v2/invoices/oneOff", _body(customer), format="json", HTTP_IDEMPOTENCY_KEY="o1")
    again = api_client.post("/v2/invoices/oneOff", _body(customer), format="json", HTTP_IDEMPOTENCY_KEY="o1")
    other = api_client.post(
        "/v2/invoices/oneOff",
        _body(customer, currency="USD", lines=[_body(customer)["lines"][0]]),
        format="json",
        HTTP_IDEMPOTENCY_KEY="o1",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    ClientInvoice.model_validate(body)
    invoice = Invoice.objects.get(pk=body["id"])
    assert (invoice.kind, invoice.status, invoice.subscription_id) == (
        InvoiceKind.ONE_OFF,
        InvoiceStatus.ISSUED,
        sub["id"],
    )
    assert invoice.number
    # 4 × 125.00 = 500.00, 1 × −50.00 = −50.00
    lines = invoice.lines.filter(kind=LineKind.MANUAL).order_by("position")
    assert [(line.amount, line.explanation["text"]) for line in lines] == [
        (Decimal("500.00"), "4 × 125 = 500.00"),
        (Decimal("-50.00"), "1 × -50 = -50.00"),
    ]
    assert invoice.subtotal == Decimal("450.00")
    assert invoice.total == invoice.subtotal + invoice.tax
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert ManualLineItem.objects.filter(invoice=invoice).count() == 2


def test_credit_only_invoice_owes_nothing(api_client, sub, customer):
    body = {
        "customerId": customer.id,
        "currency": "USD",
        "lines": [{"displayName": "SLA credit", "quantity": 1, "unitPrice": "-100"}],
    }

    response = api_client.post("/v2/invoices/oneOff", body, format="json")

    assert response.status_code == 201, response.json()
    invoice = Invoice.objects.get(pk=response.json()["id"])
    assert invoice.subtotal == Decimal("-100.00")
    assert invoice.amount_due == Decimal("0")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": [{"displayName": "x", "quantity": "0", "unitPrice": "1"}]}, "lines[0].quantity"),
    ],
)
def test_bad_one_off_is_a_400(api_client, sub, customer, change, field):
    response = api_client.post("/v2/invoices/oneOff", _body(customer, **change), format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_customer_without_subscription_conflicts(api_client, customer):
    response = api_client.post("/v2/invoices/oneOff", _body(customer), format="json")

    assert (response.status_code, response.json()["code"]) == (409, "NO_BILLING_SUBSCRIPTION")


def test_currency_must_be_the_subscriptions(api_client, sub, customer):
    named = api_client.post(
        "/v2/invoices/oneOff", _body(customer, currency="EUR", subscriptionId=sub["id"]), format="json"
    )
    unnamed = api_client.post("/v2/invoices/oneOff", _body(customer, currency="EUR"), format="json")

    assert (named.status_code, named.json()["errors"][0]["field"]) == (400, "currency")
    assert (unnamed.status_code, unnamed.json()["code"]) == (409, "NO_BILLING_SUBSCRIPTION")

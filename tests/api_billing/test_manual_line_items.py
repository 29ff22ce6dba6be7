"""POST /v2/invoices/lineItems: manual lines on the next invoice (exactly once) or on a draft; idempotency;
bounds; the unmodified client's LineItem shape."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk.models import LineItem

from invoicing.models import Invoice, InvoiceKind, InvoiceLine, InvoiceStatus, LineKind, ManualLineItem

from .factories import record_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub(api_client, subscribe, plan, customer):
    body = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{body['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    return body


def _workshop(sub_id, **extra):
    return {
        "subscriptionId": sub_id,
        "displayName": "Onboarding workshop",
        "description": "Two half-day sessions",
        "currency": "USD",
        "quantity": 2,
        "unitPrice": "150.00",
        **extra,
    }


def test_line_waits_for_the_next_invoice_and_is_billed_once(api_client, sub, clock):
    # given
    created = api_client.post("/v2/invoices/lineItems", _workshop(sub["id"]), format="json", HTTP_IDEMPOTENCY_KEY="w1")
    # when
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P2M1D"}, format="json")
    # then
    assert created.status_code == 201
    item = LineItem.model_validate(created.json())
    assert (item.type, item.status, item.subtotal, item.quantity, item.unit_price) == (
        "manual",
        "pending",
        "300.00",
        "2",
        "150",
    )
    recurring = Invoice.objects.filter(subscription_id=sub["id"], kind=InvoiceKind.RECURRING).order_by("period_start")
    january, february = list(recurring)
    manual = InvoiceLine.objects.filter(kind=LineKind.MANUAL)
    assert [(line.invoice_id, line.amount, line.quantity, line.unit_price) for line in manual] == [
        (january.id, Decimal("300.00"), Decimal(2), Decimal("150.00"))
    ]
    assert manual.get().description == "Onboarding workshop — Two half-day sessions"
    assert manual.get().explanation["text"] == "2 × 150 = 300.00"
    # January: 3,000,000 tokens × 0.000002 = 6.00, February's fee 49.00, the workshop 300.00
    assert january.subtotal == Decimal("355.00")
    assert february.subtotal == Decimal("49.00")
    assert ManualLineItem.objects.get().invoice_id == january.id
    read = api_client.get("/v2/invoices/lineItems", {"invoiceId": january.id}).json()
    assert "manual" in [row["type"] for row in read["data"]]


def test_replay_returns_the_first_item_and_another_body_conflicts(api_client, sub):
    first = api_client.post("/v2/invoices/lineItems", _workshop(sub["id"]), format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = api_client.post("/v2/invoices/lineItems", _workshop(sub["id"]), format="json", HTTP_IDEMPOTENCY_KEY="k")
    by_body = api_client.post("/v2/invoices/lineItems", _workshop(sub["id"], idempotencyKey="k"), format="json")
    other = api_client.post(
        "/v2/invoices/lineItems", _workshop(sub["id"], quantity=3), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    mismatch = api_client.post(
        "/v2/invoices/lineItems", _workshop(sub["id"], idempotencyKey="x"), format="json", HTTP_IDEMPOTENCY_KEY="y"
    )

    assert (first.status_code, again.status_code, by_body.status_code) == (201, 200, 200)
    assert first.json()["id"] == again.json()["id"] == by_body.json()["id"]
    assert other.status_code == 409
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert mismatch.status_code == 400
    assert ManualLineItem.objects.count() == 1


def test_credit_on_a_draft_recomputes_it(api_client, sub, clock):
    # given: February 1st, January's invoice is a draft in its grace period
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M"}, format="json")
    january = Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)
    assert january.status == InvoiceStatus.DRAFT
    before = january.total
    # when: an SLA credit of 1 × −25.00
    body = {
        "invoiceId": january.id,
        "displayName": "SLA credit",
        "currency": "USD",
        "quantity": "1",
        "unitPrice": "-25.00",
    }
    response = api_client.post("/v2/invoices/lineItems", body, format="json")
    # then
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "invoiced"
    assert response.json()["total"] == "-25.00"
    january.refresh_from_db()
    assert january.total == before - Decimal("25.00")
    assert january.lines.filter(kind=LineKind.MANUAL).get().amount == Decimal("-25.00")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": "1000000001"}, "quantity"),
        ({"unitPrice": "-1000000001"}, "unitPrice"),
        ({"quantity": "1000000000", "unitPrice": "1000000000"}, "unitPrice"),
        ({"currency": "EUR"}, "currency"),
        ({"unitPrice": "1e400"}, "unitPrice"),
        ({"invoiceId": "inv_x"}, "subscriptionId"),
    ],
)
def test_out_of_bounds_is_a_400(api_client, sub, extra, field):
    response = api_client.post("/v2/invoices/lineItems", _workshop(sub["id"], **extra), format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert not ManualLineItem.objects.exists()


def test_issued_invoice_refuses_a_line(api_client, sub, clock):
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M1D"}, format="json")
    january = Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)
    body = {"invoiceId": january.id, "displayName": "Late", "currency": "USD", "quantity": 1, "unitPrice": "5"}

    response = api_client.post("/v2/invoices/lineItems", body, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "INVOICE_NOT_DRAFT"


def test_another_merchants_subscription_is_not_found(other_client, sub):
    response = other_client.post("/v2/invoices/lineItems", _workshop(sub["id"]), format="json")

    assert response.status_code == 404


def test_pending_line_is_listed_with_the_pending_ledger_lines(api_client, sub):
    api_client.post("/v2/invoices/lineItems", _workshop(sub["id"]), format="json")

    body = api_client.get("/v2/invoices/lineItems", {"subscriptionId": sub["id"], "status": "pending"}).json()

    manual = [row for row in body["data"] if row["type"] == "manual"]
    assert [(row["status"], row["subtotal"], row["quantity"], row["unitPrice"]) for row in manual] == [
        ("pending", "300", "2", "150")
    ]

"""POST /v1/entitlements/{id}/grants/purchase: an invoice now, the grant when the invoice is paid."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from paygentic_sdk import models as pg

from invoicing.models import Invoice, InvoiceKind, InvoiceStatus
from invoicing.services import invoice_finalize, invoice_mark_paid, invoice_void
from wallets.entitlements import grant_purchase_fulfil, grant_purchase_record
from wallets.models import Entitlement

pytestmark = pytest.mark.django_db


@pytest.fixture
def entitlement_id(api_client, customer, metered_feature, subscription):
    body = {"customerId": customer.pk, "featureId": metered_feature.pk, "template": {"type": "metered"}}
    return api_client.post("/v1/entitlements", body, format="json").json()["id"]


def _purchase(api_client, entitlement_id, **overrides):
    body = {"amount": 500, "price": "12.50", "idempotencyKey": "buy-1", **overrides}
    return api_client.post(f"/v1/entitlements/{entitlement_id}/grants/purchase", body, format="json")


def _balance(api_client, entitlement_id):
    return api_client.get(f"/v1/entitlements/{entitlement_id}").json()["balance"]


def test_purchase_issues_an_invoice_and_pay_creates_the_grant(api_client, entitlement_id):
    response = _purchase(api_client, entitlement_id)

    assert response.status_code == 201
    purchase = pg.PurchaseGrantResponse.model_validate(response.json())
    assert (purchase.entitlement_id, purchase.grant_amount, purchase.price, purchase.currency, purchase.object) == (
        entitlement_id,
        500,
        "12.5",
        "USD",
        "grant_purchase",
    )
    assert purchase.payment_sessions[0].amount == 1250
    invoice = Invoice.objects.get(pk=purchase.invoice_id)
    assert (invoice.kind, invoice.status, invoice.total) == (InvoiceKind.CREDIT_PURCHASE, InvoiceStatus.ISSUED, 12.5)
    assert _balance(api_client, entitlement_id) == 0  # nothing before payment

    paid = api_client.post(f"/v2/invoices/{invoice.pk}/payment", {"method": "out_of_band"}, format="json")

    assert paid.status_code == 200
    assert _balance(api_client, entitlement_id) == 500
    grants = api_client.get(f"/v1/entitlements/{entitlement_id}/grants").json()["data"]
    assert [(g["amount"], g["idempotencyKey"]) for g in grants] == [(500, "purchase:buy-1")]


def test_invoice_mark_paid_also_creates_the_grant_once(api_client, entitlement_id):
    invoice = Invoice.objects.get(pk=_purchase(api_client, entitlement_id).json()["invoiceId"])

    invoice_mark_paid(invoice=invoice, now=timezone.now())

    assert _balance(api_client, entitlement_id) == 500
    assert api_client.get(f"/v1/entitlements/{entitlement_id}/grants").json()["pagination"]["total"] == 1


def test_a_retry_returns_the_same_invoice(api_client, entitlement_id):
    first = _purchase(api_client, entitlement_id)
    retry = _purchase(api_client, entitlement_id)
    other_price = _purchase(api_client, entitlement_id, price="13")

    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert Invoice.objects.filter(kind=InvoiceKind.CREDIT_PURCHASE).count() == 1
    assert other_price.status_code == 409


@pytest.mark.parametrize("price", ["0.49", "4503599.63", "1.0000000001", "abc"])
def test_price_bounds(api_client, entitlement_id, price):
    response = _purchase(api_client, entitlement_id, price=price)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["price"]


def test_without_a_subscription_to_bill_under_it_is_a_409(api_client, customer, metered_feature):
    body = {"customerId": customer.pk, "featureId": metered_feature.pk, "template": {"type": "metered"}}
    entitlement_id = api_client.post("/v1/entitlements", body, format="json").json()["id"]

    response = _purchase(api_client, entitlement_id)

    assert response.status_code == 409
    assert response.json()["code"] == "NO_BILLING_SUBSCRIPTION"


def test_another_merchants_entitlement_is_404(rival_client, entitlement_id):
    assert _purchase(rival_client, entitlement_id).status_code == 404


def test_a_purchase_with_its_min_rollover_above_the_max_is_a_400(api_client, entitlement_id):
    response = _purchase(api_client, entitlement_id, resetMinRollover=10, resetMaxRollover=5)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["resetMinRollover"]


def test_a_purchase_recorded_with_crossed_rollover_bounds_is_still_fulfilled(api_client, entitlement_id):
    grant_purchase_record(
        entitlement=Entitlement.objects.get(pk=entitlement_id),
        idempotency_key="legacy",
        invoice_ref="inv_legacy",
        amount=Decimal(40),
        price=Decimal("2"),
        currency="USD",
        reset_max_rollover=Decimal(5),
        reset_min_rollover=Decimal(10),
    )

    grant = grant_purchase_fulfil(invoice_ref="inv_legacy", now=timezone.now())

    assert (grant.amount, grant.reset_min_rollover, grant.reset_max_rollover) == (Decimal(40), Decimal(5), Decimal(5))


def test_a_voided_and_reissued_purchase_invoice_grants_when_the_reissue_is_paid(api_client, entitlement_id):
    invoice = Invoice.objects.get(pk=_purchase(api_client, entitlement_id).json()["invoiceId"])
    replacement = invoice_void(invoice=invoice, now=timezone.now(), reissue=True)
    reissue = invoice_finalize(invoice=replacement, now=timezone.now())

    assert reissue.total == invoice.total  # 12.50, at the rate it was sold at
    invoice_mark_paid(invoice=reissue, now=timezone.now())

    assert _balance(api_client, entitlement_id) == 500
    assert api_client.get(f"/v1/entitlements/{entitlement_id}/grants").json()["pagination"]["total"] == 1

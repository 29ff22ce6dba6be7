"""/v2/invoices/{id}/refunds: the client's shapes through DRF's APIClient and the unmodified paygentic-sdk."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors
from paygentic_sdk.models import InvoiceRefund, InvoiceRefundList

from catalog.services import api_key_create
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus
from invoicing.receivables import invoice_pay_in_full
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued

from .factories import record_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid(api_client, subscribe, plan, customer, clock):
    sub = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M1D"}, format="json")
    january = Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)
    api_client.post(f"/v2/invoices/{january.id}/payment", {"method": "out_of_band"}, format="json")
    january.refresh_from_db()
    return january


def test_full_refund_list_and_void(api_client, paid):
    created = api_client.post(f"/v2/invoices/{paid.id}/refunds", {"reason": "churned"}, format="json")
    again = api_client.post(f"/v2/invoices/{paid.id}/refunds", {}, format="json")
    listed = api_client.get(f"/v2/invoices/{paid.id}/refunds")

    assert created.status_code == 201
    refund = InvoiceRefund.model_validate(created.json())
    assert refund.id.startswith("crn_")
    assert (refund.total, refund.status, refund.reason) == (f"{paid.total:.2f}", "ISSUED", "churned")
    assert Decimal(refund.amount) + Decimal(refund.tax_amount) == Decimal(refund.total)
    assert again.status_code == 400 and again.json()["message"]
    assert [row.id for row in InvoiceRefundList.model_validate(listed.json()).data] == [refund.id]
    paid.refresh_from_db()
    assert paid.status == InvoiceStatus.PAID  # the invoice stays PAID

    voided = api_client.post(
        f"/v2/invoices/{paid.id}/refunds/{refund.id}/void", {"reason": "sent twice"}, format="json"
    )
    twice = api_client.post(f"/v2/invoices/{paid.id}/refunds/{refund.id}/void", {}, format="json")
    assert voided.status_code == 200
    assert (voided.json()["status"], twice.status_code) == ("VOIDED", 400)
    assert api_client.post(f"/v2/invoices/{paid.id}/refunds", {}, format="json").status_code == 201


def test_partial_refund_extension_and_idempotency_key(api_client, paid):
    first = api_client.post(
        f"/v2/invoices/{paid.id}/refunds", {"amount": "1.00"}, format="json", HTTP_IDEMPOTENCY_KEY="r-1"
    )
    replay = api_client.post(
        f"/v2/invoices/{paid.id}/refunds", {"amount": "1.00"}, format="json", HTTP_IDEMPOTENCY_KEY="r-1"
    )
    assert first.status_code == replay.status_code == 201
    assert (first.json()["id"], first.json()["amount"]) == (replay.json()["id"], "1.00")
    assert len(api_client.get(f"/v2/invoices/{paid.id}/refunds").json()["data"]) == 1


def test_refunds_of_an_unpaid_or_unknown_invoice(api_client, other_client, paid):
    assert other_client.get(f"/v2/invoices/{paid.id}/refunds").status_code == 404
    assert api_client.post("/v2/invoices/inv_nope/refunds", {}, format="json").status_code == 404
    assert api_client.post(f"/v2/invoices/{paid.id}/refunds/crn_nope/void", {}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_refunds_lists_and_voids(live_server):
    merchant = MerchantFactory(name="Refunding Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    subscription = account(merchant)
    invoice = issued(subscription, "100.00", tax_rate="10")
    unpaid = issued(subscription, "5.00", day=1)
    invoice_pay_in_full(invoice=invoice, at=datetime(2026, 1, 2, tzinfo=UTC))
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        refund = sdk.invoices_v2.create_invoice_refund(id=invoice.id, reason="duplicate charge")
        listed = sdk.invoices_v2.list_invoice_refunds(id=invoice.id)
        voided = sdk.invoices_v2.void_invoice_refund(id=invoice.id, refund_id=refund.id, reason="kept")
        with pytest.raises(errors.BadRequest):
            sdk.invoices_v2.create_invoice_refund(id=unpaid.id)
    assert (refund.total, refund.tax_amount, refund.status) == ("110.00", "10.00", "ISSUED")
    assert [row.id for row in listed.data] == [refund.id]
    assert (voided.status, voided.voided_at is not None) == ("VOIDED", True)

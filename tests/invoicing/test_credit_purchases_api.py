"""Top-ups and reserved capacity through the API (DRF APIClient): each issues a one-off invoice; the credit
appears when the invoice is paid (POST /v2/invoices/{id}/payment), or at once for a trusted customer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceKind
from tests.factories import BillableMetricFactory, CustomerFactory, PlanFactory, SubscriptionFactory
from wallets.models import CreditPurchase, EntryKind, LedgerEntry, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(merchant):
    customer = CustomerFactory(merchant=merchant, name="Fintech Ledger", currency="USD")
    SubscriptionFactory(plan=PlanFactory(merchant=merchant), merchant=merchant, customer=customer)
    return customer


def _balance(customer) -> Decimal:
    wallet = Wallet.objects.filter(customer=customer, currency="USD").first()
    return wallet.balance if wallet else Decimal(0)


def test_a_top_up_answers_its_invoice_and_credits_when_the_invoice_is_paid(api_client, customer):
    body = {"amount": "100", "currency": "USD", "idempotencyKey": "buy-1"}
    first = api_client.post(f"/v0/customers/{customer.pk}/topUps", body, format="json")
    again = api_client.post(f"/v0/customers/{customer.pk}/topUps", body, format="json")

    assert (first.status_code, again.status_code) == (201, 200), first.content
    answer = first.json()
    invoice = Invoice.objects.get(kind=InvoiceKind.CREDIT_PURCHASE)
    assert again.json() == answer
    # the top-up's keys as before (the entry's own are null until the credit exists) and the purchase's
    assert {k: answer[k] for k in ("object", "id", "kind", "amount", "reference", "balance", "balanceAfter")} == {
        "object": "ledger_entry",
        "id": None,
        "kind": "top_up",
        "amount": "100",
        "reference": invoice.pk,
        "balance": "0",
        "balanceAfter": None,
    }
    assert {k: answer[k] for k in ("status", "invoiceId", "invoiceNumber", "price", "purchaseId")} == {
        "status": "pending_payment",
        "invoiceId": invoice.pk,
        "invoiceNumber": invoice.number,
        "price": "100",
        "purchaseId": CreditPurchase.objects.get().pk,
    }
    assert _balance(customer) == 0

    paid = api_client.post(f"/v2/invoices/{invoice.pk}/payment", {"method": "out_of_band"}, format="json")
    assert paid.status_code in (200, 201), paid.content
    assert _balance(customer) == Decimal(100)

    replay = api_client.post(f"/v0/customers/{customer.pk}/topUps", body, format="json").json()
    entry = LedgerEntry.objects.get(kind=EntryKind.TOP_UP)
    assert {k: replay[k] for k in ("id", "status", "balanceAfter", "reference", "invoiceId")} == {
        "id": entry.pk,
        "status": "credited",
        "balanceAfter": "100",
        "reference": invoice.pk,
        "invoiceId": invoice.pk,
    }


def test_a_trusted_customer_is_credited_at_once(api_client, customer):
    changed = api_client.patch(f"/v0/customers/{customer.pk}", {"creditBeforePayment": True}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["creditBeforePayment"] is True

    answer = api_client.post(
        f"/v0/customers/{customer.pk}/topUps", {"amount": "40", "idempotencyKey": "t-1"}, format="json"
    ).json()
    assert (answer["status"], answer["balance"], answer["balanceAfter"]) == ("credited", "40", "40")
    assert Invoice.objects.get(pk=answer["invoiceId"]).amount_due == Decimal("40.00")


def test_a_key_reused_for_another_amount_is_409_and_a_named_invoice_is_refused(api_client, customer):
    url = f"/v0/customers/{customer.pk}/topUps"
    api_client.post(url, {"amount": "10", "idempotencyKey": "k"}, format="json")
    reused = api_client.post(url, {"amount": "11", "idempotencyKey": "k"}, format="json")
    named = api_client.post(url, {"amount": "10", "idempotencyKey": "k2", "purchaseInvoiceId": "inv_1"}, format="json")

    assert (reused.status_code, reused.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert named.status_code == 400
    assert [e["field"] for e in named.json()["errors"]] == ["purchaseInvoiceId"]
    assert Invoice.objects.count() == 1


def test_a_customer_without_a_subscription_in_the_currency_is_409(api_client, merchant):
    lonely = CustomerFactory(merchant=merchant, currency="USD")
    refused = api_client.post(
        f"/v0/customers/{lonely.pk}/topUps", {"amount": "10", "idempotencyKey": "k"}, format="json"
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "NO_BILLING_SUBSCRIPTION")
    assert not Invoice.objects.exists()


def test_reserved_capacity_at_40_percent_off(api_client, customer, merchant):
    compute = BillableMetricFactory(merchant=merchant, name="Query compute")
    url = f"/v0/customers/{customer.pk}/reservedCapacity"
    body = {"amount": "5000", "discountPercent": "40", "metricIds": [compute.pk], "idempotencyKey": "rc-1"}

    answer = api_client.post(url, body, format="json")

    # 5,000 × (100 − 40) / 100 = 3,000.00 invoiced; 5,000 of compute credit once paid
    assert answer.status_code == 201, answer.content
    invoice = Invoice.objects.get(pk=answer.json()["invoiceId"])
    assert (invoice.total, answer.json()["price"], answer.json()["kind"]) == (
        Decimal("3000.00"),
        "3000",
        "reserved_purchase",
    )
    assert answer.json()["metricIds"] == [compute.pk]
    api_client.post(f"/v2/invoices/{invoice.pk}/payment", {"method": "out_of_band"}, format="json")
    wallet = Wallet.objects.get(customer=customer, currency="USD")
    assert (wallet.balance, wallet.reserved_credit) == (Decimal(5000), Decimal(5000))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "10", "metricIds": ["bm_x"], "idempotencyKey": "k"}, "price"),  # neither price nor discount
        (
            {"amount": "10", "price": "6", "discountPercent": "40", "metricIds": ["bm_x"], "idempotencyKey": "k"},
            "price",
        ),
        ({"amount": "10", "price": "6", "metricIds": [], "idempotencyKey": "k"}, "metricIds"),
        ({"amount": "10", "discountPercent": "100", "metricIds": ["bm_x"], "idempotencyKey": "k"}, "discountPercent"),
        ({"amount": "10", "price": "6.001", "metricIds": ["bm_x"], "idempotencyKey": "k"}, "price"),
    ],
)
def test_reserved_capacity_refusals_name_the_field(api_client, customer, merchant, body, field):
    compute = BillableMetricFactory(merchant=merchant)
    body = {**body, "metricIds": [compute.pk for _ in body["metricIds"]]}
    refused = api_client.post(f"/v0/customers/{customer.pk}/reservedCapacity", body, format="json")
    assert refused.status_code == 400, refused.content
    assert field in [e["field"] for e in refused.json()["errors"]]
    assert not Invoice.objects.exists()


def test_an_unknown_metric_is_400(api_client, customer):
    refused = api_client.post(
        f"/v0/customers/{customer.pk}/reservedCapacity",
        {"amount": "10", "price": "6", "metricIds": ["bm_nope"], "idempotencyKey": "k"},
        format="json",
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "INVALID_CREDIT")
    assert not Invoice.objects.exists()

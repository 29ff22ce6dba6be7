"""The customer page sells top-ups and reserved capacity through the API's service: an invoice issued now,
the credit when it is paid; the lot's page links its invoice. A viewer can do neither."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from invoicing.models import Invoice, InvoiceKind
from invoicing.receivables import invoice_pay_in_full
from tests.factories import BillableMetricFactory, CustomerFactory, PlanFactory, SubscriptionFactory
from wallets.models import CreditLot, CreditPurchase, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(merchant):
    customer = CustomerFactory(merchant=merchant, name="Fintech Ledger", currency="USD")
    SubscriptionFactory(plan=PlanFactory(merchant=merchant), merchant=merchant, customer=customer)
    return customer


def test_selling_reserved_capacity_at_40_percent_off_issues_a_600_invoice(billing_admin_client, customer, merchant):
    compute = BillableMetricFactory(merchant=merchant, name="Query compute")
    url = reverse("admin:catalog_customer_reserved_capacity", args=[quote(customer.pk)])
    assert billing_admin_client.get(url).status_code == 200

    response = billing_admin_client.post(
        url,
        {
            "amount": "1000",
            "currency": "USD",
            "metrics": [compute.pk],
            "discount_percent": "40",
            "idempotency_key": "admin-k1",
        },
    )

    invoice = Invoice.objects.get(kind=InvoiceKind.CREDIT_PURCHASE)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)])
    assert (invoice.total, invoice.amount_due) == (Decimal("600.00"), Decimal("600.00"))
    assert not Wallet.objects.filter(customer=customer).exists()  # nothing credited before payment

    invoice_pay_in_full(invoice=invoice, at=timezone.now())
    lot = CreditLot.objects.get(pk=CreditPurchase.objects.get().lot_id)
    assert (lot.original_amount, lot.price_paid, lot.metric_ids) == (Decimal(1000), Decimal(600), [compute.pk])
    page = billing_admin_client.get(reverse("admin:wallets_creditlot_change", args=[quote(lot.pk)])).content.decode()
    assert reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)]) in page


def test_a_sale_naming_neither_price_nor_discount_shows_the_error(billing_admin_client, customer, merchant):
    compute = BillableMetricFactory(merchant=merchant)
    url = reverse("admin:catalog_customer_reserved_capacity", args=[quote(customer.pk)])
    response = billing_admin_client.post(
        url, {"amount": "10", "currency": "USD", "metrics": [compute.pk], "idempotency_key": "admin-k2"}
    )
    assert response.status_code == 200
    assert "Give either a price or a discount." in response.content.decode()
    assert not Invoice.objects.exists()


def test_a_top_up_sale_is_invoiced_at_its_value(billing_admin_client, customer):
    url = reverse("admin:catalog_customer_credit_top_up", args=[quote(customer.pk)])
    response = billing_admin_client.post(url, {"amount": "250", "currency": "USD", "idempotency_key": "admin-k3"})
    assert response.status_code == 302
    invoice = Invoice.objects.get(kind=InvoiceKind.CREDIT_PURCHASE)
    assert invoice.total == Decimal("250.00")
    assert (
        billing_admin_client.get(reverse("admin:catalog_customer_change", args=[quote(customer.pk)])).status_code == 200
    )


def test_a_viewer_cannot_sell_credit(viewer_client, customer):
    for name in ("catalog_customer_credit_top_up", "catalog_customer_reserved_capacity"):
        url = reverse(f"admin:{name}", args=[quote(customer.pk)])
        assert viewer_client.post(url, {"amount": "10", "currency": "USD", "idempotency_key": "k"}).status_code == 403
    page = viewer_client.get(reverse("admin:catalog_customer_change", args=[quote(customer.pk)])).content.decode()
    assert "customer-sell-top-up" not in page
    assert not Invoice.objects.exists()

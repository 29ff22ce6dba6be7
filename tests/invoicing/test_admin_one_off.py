"""The customer page's "Issue a one-off invoice": finance issues one through the same service as the API; a
viewer sees no button and a forged post is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.roles import BILLING_ADMIN, BILLING_VIEWER
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus
from tests.invoicing.receivables import account
from tests.invoicing.test_admin_receivables import client_in

pytestmark = pytest.mark.django_db


def _form(customer, key="admin_k1"):
    return {
        "currency": "USD",
        "subscription": "",
        "idempotency_key": key,
        "line1_name": "Data migration (set-up)",
        "line1_quantity": "3",
        "line1_unit_price": "400",
        "line2_name": "SLA credit",
        "line2_quantity": "1",
        "line2_unit_price": "-75.50",
    }


def test_finance_issues_a_one_off_invoice_once(seller):
    subscription = account(seller)
    customer = subscription.customer
    finance = client_in(BILLING_ADMIN, "finance")
    page = finance.get(reverse("admin:catalog_customer_change", args=[quote(customer.pk)])).content.decode()
    url = reverse("admin:catalog_customer_one_off_invoice", args=[quote(customer.pk)])

    assert 'id="customer-one-off-invoice"' in page
    assert finance.get(url).status_code == 200
    first = finance.post(url, _form(customer))
    again = finance.post(url, _form(customer))  # a double submit of the same form

    invoice = Invoice.objects.get(kind=InvoiceKind.ONE_OFF)
    assert first.status_code == again.status_code == 302
    # 3 × 400 = 1,200.00, 1 × −75.50 = −75.50 → 1,124.50 before tax
    assert (invoice.status, invoice.subtotal) == (InvoiceStatus.ISSUED, Decimal("1124.50"))


def test_viewer_cannot_issue_one(seller):
    subscription = account(seller)
    viewer = client_in(BILLING_VIEWER, "viewer")
    customer = subscription.customer
    page = viewer.get(reverse("admin:catalog_customer_change", args=[quote(customer.pk)])).content.decode()

    response = viewer.post(
        reverse("admin:catalog_customer_one_off_invoice", args=[quote(customer.pk)]), _form(customer)
    )

    assert 'id="customer-one-off-invoice"' not in page
    assert response.status_code == 403
    assert not Invoice.objects.filter(kind=InvoiceKind.ONE_OFF).exists()

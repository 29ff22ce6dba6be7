"""Finance's pages: invoice page and actions, HTML and PDF documents, CSV export, runs, customer preview."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from catalog.models import PaymentTerm
from invoicing.models import BillingRun, CreditNote, Invoice, InvoiceKind, InvoiceStatus
from invoicing.services import billing_run_execute, credit_note_issue, invoice_finalize, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_superuser("finance", "finance@example.com", "pw-finance-123")
    client.force_login(user)
    return client


@pytest.fixture
def issued(seller):
    seller.address_line1 = "1 Model Street"
    seller.city = "San Francisco"
    seller.country = "US"
    seller.save()
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", default_tax_rate=Decimal("10"))
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee")
    price = metered_price(plan, "0.000002", name="Input tokens")
    customer = CustomerFactory(merchant=seller, name="Acme Corp", address_line1="9 Customer Road", city="Berlin")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, price.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_234_567)
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    return invoice_finalize(invoice=invoice, now=FEB_1)


def test_invoice_page_shows_lines_with_breakdowns(staff_client, issued):
    response = staff_client.get(reverse("admin:invoicing_invoice_change", args=[issued.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "NLE-2026-000002" in body
    assert "1,234,567 tokens × $0.000002 = $2.469134" in body
    assert "Late usage not billed" in body


def test_invoice_html_and_pdf(staff_client, issued):
    html = staff_client.get(reverse("admin:invoicing_invoice_html", args=[issued.pk])).content.decode()
    for expected in (
        "NLE-2026-000002",
        "1 Model Street",
        "Acme Corp",
        "9 Customer Road",
        "$2.47",
        "$49.00",
        "$5.15",
        "$56.62",
    ):
        assert expected in html
    response = staff_client.get(reverse("admin:invoicing_invoice_pdf", args=[issued.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="NLE-2026-000002.pdf"'
    assert response.content.startswith(b"%PDF")


def test_credit_note_pdf(staff_client, issued):
    note = credit_note_issue(invoice=issued, now=FEB_1, reason="outage")
    response = staff_client.get(reverse("admin:invoicing_creditnote_pdf", args=[note.pk]))
    assert response.content.startswith(b"%PDF")
    assert response["Content-Disposition"] == 'attachment; filename="CN-2026-000001.pdf"'


def test_actions_mark_paid_and_credit(staff_client, issued):
    url = reverse("admin:invoicing_invoice_changelist")
    staff_client.post(url, {"action": "action_mark_paid", "_selected_action": [issued.pk]})
    issued.refresh_from_db()
    assert issued.status == InvoiceStatus.PAID
    staff_client.post(
        url,
        {
            "action": "action_credit_note",
            "_selected_action": [issued.pk],
            "post": "yes",
            "scope": "all",
            "reason": "Goodwill",
        },
    )
    assert CreditNote.objects.get(invoice=issued).total == issued.total


def test_csv_export_for_a_period(staff_client, issued):
    response = staff_client.get(reverse("admin:invoicing_invoice_export") + "?start=2026-01-01&end=2026-02-01")
    rows = response.content.decode().splitlines()
    assert rows[0].startswith("number,id,status,kind")
    assert len(rows) == 3  # the opening and the recurring invoice of January
    assert rows[2].startswith("NLE-2026-000002,") and rows[2].endswith(",USD,51.47,5.15,56.62,56.62")


def test_run_billing_now_button_records_a_run(staff_client, issued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:invoicing_run_billing"), {"reason": "Month-end rerun"})
    run = BillingRun.objects.latest("pk")
    assert response.status_code == 302 and response.url == reverse("admin:invoicing_billingrun_change", args=[run.pk])
    assert (run.trigger, run.requested_by, run.note) == ("admin", "finance", "Month-end rerun")
    page = staff_client.get(reverse("admin:invoicing_billingrun_changelist")).content.decode()
    assert "Run billing now" in page


def test_customer_page_shows_upcoming_invoice(staff_client, issued):
    response = staff_client.get(reverse("admin:catalog_customer_change", args=[issued.customer_id]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "Upcoming invoice" in body
    assert "Platform fee" in body
    assert "Late usage not billed" in body

"""Invoice CSV export by issue date ([start, end) on issued_at), beside the export by period."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.models import PaymentTerm
from invoicing.models import Invoice, InvoiceKind
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
FEB_3 = datetime(2026, 2, 3, 15, 30, tzinfo=UTC)
EXPORT = reverse("admin:invoicing_invoice_export")


@pytest.fixture
def invoices(seller):
    """An opening invoice issued Jan 1, a February draft, and January's recurring invoice issued Feb 3."""
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", currency="USD")
    fee_price(plan, "49.00", term=PaymentTerm.IN_ARREARS, name="Platform fee")
    customer = CustomerFactory(merchant=seller, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    billing_run_execute(as_of=FEB_1)
    recurring = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    return invoice_finalize(invoice=recurring, now=FEB_3)


def _rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_export_by_issue_date_lists_the_invoices_issued_in_the_range(superuser_client, invoices):
    response = superuser_client.get(EXPORT, {"by": "issued", "start": "2026-02-01", "end": "2026-03-01"})

    assert response["Content-Disposition"] == 'attachment; filename="invoices-issued-2026-02-01-2026-03-01.csv"'
    rows = _rows(response)
    assert [(row["number"], row["issued_at"], row["total"]) for row in rows] == [
        (invoices.number, "2026-02-03T15:30:00+00:00", "49.00")
    ]


def test_the_end_date_is_not_included(superuser_client, invoices):
    response = superuser_client.get(EXPORT, {"by": "issued", "start": "2026-02-01", "end": "2026-02-03"})

    assert _rows(response) == []


def test_export_by_period_is_unchanged(superuser_client, invoices):
    response = superuser_client.get(EXPORT, {"start": "2026-01-01", "end": "2026-02-01"})

    rows = _rows(response)
    assert [row["number"] for row in rows] == [invoices.number]
    assert Decimal(rows[0]["amount_due"]) == Decimal("49.00")


def test_a_missing_date_is_refused_with_a_message(superuser_client, invoices):
    response = superuser_client.get(EXPORT, {"by": "issued", "start": "2026-02-01"}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Give the issue dates as ?start=YYYY-MM-DD&end=YYYY-MM-DD (end after start)."
    ]


def test_the_invoice_list_offers_date_pickers_for_the_export(superuser_client, invoices):
    page = superuser_client.get(reverse("admin:invoicing_invoice_changelist")).content.decode()

    assert f'<form method="get" action="{EXPORT}" id="export-by-issue-date"' in page
    assert '<input type="hidden" name="by" value="issued">' in page
    assert '<input type="date" name="start" required>' in page
    assert '<input type="date" name="end" required>' in page

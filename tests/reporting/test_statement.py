"""The customer statement: balances that reconcile, every kind of movement, the page and the PDF."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from catalog.models import StaffMerchantAccess
from invoicing.models import OPEN_STATUSES, Invoice, InvoiceStatus
from invoicing.receivables import customer_credit_balance, payment_record
from invoicing.services import credit_note_issue, invoice_void
from reporting.statement import customer_statement
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued

pytestmark = pytest.mark.django_db


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, 0, tzinfo=UTC)


def _pay(customer, amount: str, when: datetime, invoice: Invoice | None = None):
    return payment_record(
        customer=customer,
        currency="USD",
        amount=Decimal(amount),
        method="bank_transfer",
        received_at=when,
        now=when,
        invoice_ids=None if invoice is None else [invoice.pk],
        reference=f"wire {amount}",
    )


def _credit(invoice: Invoice, amount: str, when: datetime, settlement: str = "customer_credit"):
    line = invoice.lines.get(description="Line 1")
    return credit_note_issue(invoice=invoice, now=when, amounts={line.pk: Decimal(amount)}, settlement=settlement)


@pytest.fixture
def history():
    """January: invoice A 100, 30 paid. February: invoice B 50, 20 credited on A (off its amount due), the
    rest of A (50) paid, 10 of A refunded, 5 of A credited to the customer's balance, 60 paid on B (10 over),
    invoice V 40 issued (taking the 15 of credit) and voided (giving it back). March: invoice C 25 (the 15 of credit applied at issue)."""
    subscription = account(MerchantFactory(), payment_term_days=14)
    customer = subscription.customer
    a = issued(subscription, "100.00", now=at(1, 5))
    _pay(customer, "30.00", at(1, 20), a)
    b = issued(subscription, "50.00", now=at(2, 1), day=1)
    _credit(a, "20.00", at(2, 3))
    _pay(customer, "50.00", at(2, 5), a)
    _credit(Invoice.objects.get(pk=a.pk), "10.00", at(2, 6), settlement="refund")
    _credit(Invoice.objects.get(pk=a.pk), "5.00", at(2, 7))
    _pay(customer, "60.00", at(2, 8), b)
    v = issued(subscription, "40.00", now=at(2, 9), day=2)
    invoice_void(invoice=v, now=at(2, 10))
    issued(subscription, "25.00", now=at(3, 2), day=3)
    return customer


def test_february_reconciles_opening_invoices_payments_credits_refunds_closing(history):
    # when
    (usd,) = customer_statement(
        customer=history, start=at(2, 1).replace(hour=0), end=at(3, 1).replace(hour=0)
    ).currencies

    # then
    assert usd.opening == Decimal("70.00")  # 100 invoiced − 30 paid in January
    assert [(line.kind, str(line.amount)) for line in usd.lines] == [
        ("invoice", "50.00"),
        ("credit_note", "-20.00"),
        ("payment", "-50.00"),
        ("credit_note", "-10.00"),
        ("refund", "10.00"),
        ("credit_note", "-5.00"),
        ("payment", "-60.00"),
        ("invoice", "40.00"),
        ("invoice_void", "-40.00"),
    ]
    assert (usd.invoiced, usd.paid, usd.credited, usd.refunded) == (
        Decimal("50.00"),
        Decimal("110.00"),
        Decimal("35.00"),
        Decimal("10.00"),
    )
    assert usd.opening + usd.invoiced - usd.paid - usd.credited + usd.refunded == usd.closing
    assert usd.closing == Decimal("-15.00")  # the customer holds 5 (credit note) + 10 (overpayment) of credit
    assert (usd.credit_opening, usd.credit_closing) == (Decimal("0.00"), Decimal("15.00"))
    # V took the 15 of credit at issue and gave it back when voided: neither moved the balance
    assert [str(line.amount) for line in usd.credit_lines] == ["5.00", "10.00", "-15.00", "15.00"]


def test_closing_balance_today_is_the_amounts_due_less_the_customer_credit(history):
    # given: March's invoice C took the 15 of credit; 10 of it is still due
    due = Invoice.objects.filter(customer=history, status__in=OPEN_STATUSES).aggregate(s=Sum("amount_due"))["s"]

    # when
    (usd,) = customer_statement(customer=history, start=at(1, 1), end=at(12, 31)).currencies

    # then
    assert usd.opening == Decimal("0.00")
    assert usd.closing == Decimal(due) - customer_credit_balance(customer_id=history.pk, currency="USD")
    assert usd.closing == Decimal("10.00")
    march = customer_statement(customer=history, start=at(3, 1), end=at(12, 31)).currencies[0]
    assert (march.opening, march.closing) == (Decimal("-15.00"), Decimal("10.00"))
    assert [str(line.amount) for line in march.credit_lines] == ["-15.00"]  # applied to C: no balance move


def test_the_page_and_the_pdf_for_a_viewer_and_a_post_changes_nothing(history, billing_viewer):
    client = Client()
    client.force_login(billing_viewer)
    url = reverse("admin:catalog_customer_statement", args=[quote(history.pk)])

    page = client.get(url, {"start": "2026-02-01", "end": "2026-03-01"})
    pdf = client.get(url + "pdf/", {"start": "2026-02-01", "end": "2026-03-01"})
    customer_page = client.get(reverse("admin:catalog_customer_change", args=[quote(history.pk)]))

    assert page.status_code == 200
    body = page.content.decode()
    assert "Opening balance" in body and "70.00" in body and "-15.00" in body
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf["Content-Disposition"] == f'attachment; filename="statement-{history.pk}-2026-02-01-2026-02-28.pdf"'
    assert url in customer_page.content.decode()
    assert client.post(url).status_code == 405
    assert client.post(url + "pdf/").status_code == 405
    assert Invoice.objects.filter(customer=history).exclude(status=InvoiceStatus.VOID).count() == 3


def test_staff_bound_to_another_merchant_gets_404_and_staff_without_invoice_view_403(
    history, billing_viewer, staff_without_roles
):
    StaffMerchantAccess.objects.create(user=billing_viewer, merchant=MerchantFactory())
    url = reverse("admin:catalog_customer_statement", args=[quote(history.pk)])
    bound, plain = Client(), Client()
    bound.force_login(billing_viewer)
    plain.force_login(staff_without_roles)

    assert bound.get(url).status_code == 404
    assert bound.get(url + "pdf/").status_code == 404
    assert plain.get(url).status_code == 403


def test_a_statement_is_a_fixed_number_of_queries(history, django_assert_num_queries):
    # 5 opening sums (invoices, prepaid lines, payments, credit notes, credit) + 4 lists in the range
    with django_assert_num_queries(9):
        customer_statement(customer=history, start=at(2, 1), end=at(12, 31))
    with django_assert_num_queries(9):
        customer_statement(customer=history, start=at(1, 1), end=at(2, 1))

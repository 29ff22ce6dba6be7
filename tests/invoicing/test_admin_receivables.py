"""Finance's receivables in the admin, through Django's test client: payments recorded on the invoice and
customer pages (partial, over, several invoices) through ``payment_record``, customer credit shown per
currency, the credit note's settlement choice on a paid invoice, and a viewer who sees no button and whose
forged posts are refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from catalog.roles import BILLING_ADMIN, BILLING_VIEWER, billing_roles_sync
from invoicing.models import CreditNote, Invoice, InvoiceStatus, Payment
from invoicing.receivables import customer_credit_balance, payment_record
from tests.invoicing.receivables import account, issued

pytestmark = pytest.mark.django_db

JAN_2 = datetime(2026, 1, 2, tzinfo=UTC)
FEB_3 = datetime(2026, 2, 3, 10, 0, tzinfo=UTC)


def client_in(group: str, username: str) -> Client:
    billing_roles_sync()
    user = User.objects.create_user(username, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finance() -> Client:
    return client_in(BILLING_ADMIN, "finance")


@pytest.fixture
def viewer() -> Client:
    return client_in(BILLING_VIEWER, "viewer")


@pytest.fixture
def subscription(seller):
    return account(seller)


def invoice_page(invoice: Invoice) -> str:
    return reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)])


def readonly(page: str, field: str) -> str:
    """The text of read-only field ``field`` on an admin change page."""
    return re.search(r'<div class="readonly">(.*?)</div>', page.split(f"field-{field}", 1)[1]).group(1)


def record_url(invoice: Invoice) -> str:
    return reverse("admin:invoicing_invoice_record_payment", args=[quote(invoice.pk)])


def customer_page(customer) -> str:
    return reverse("admin:catalog_customer_change", args=[quote(customer.pk)])


def customer_record_url(customer) -> str:
    return reverse("admin:catalog_customer_record_payment", args=[quote(customer.pk)])


def payment_form(amount: str, **extra) -> dict:
    return {
        "amount": amount,
        "method": "bank_transfer",
        "reference": "WIRE-0042",
        "received_at": "2026-02-03 10:00",
        **extra,
    }


def test_a_partial_payment_makes_the_invoice_partially_paid_and_lowers_the_amount_due(subscription, finance):
    # given
    invoice = issued(subscription, "100.00")
    assert record_url(invoice) in finance.get(invoice_page(invoice)).content.decode()
    assert 'name="amount" value="100.00"' in finance.get(record_url(invoice)).content.decode()  # what is due

    # when
    response = finance.post(record_url(invoice), payment_form("40.00"))

    # then
    assert response.status_code == 302 and response["Location"] == invoice_page(invoice)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PARTIALLY_PAID, Decimal("60.00"))
    payment = Payment.objects.get(customer=invoice.customer)
    assert (payment.amount, payment.method, payment.reference, payment.received_at, payment.recorded_by) == (
        Decimal("40.00"),
        "bank_transfer",
        "WIRE-0042",
        FEB_3,
        "user:finance",
    )
    assert list(payment.allocations.values_list("invoice_id", "amount")) == [(invoice.pk, Decimal("40.00"))]
    page = finance.get(invoice_page(invoice)).content.decode()
    assert payment.pk in page and "WIRE-0042" in page  # the payments inline
    assert customer_credit_balance(customer_id=invoice.customer_id, currency="USD") == 0


def test_an_overpayment_pays_the_invoice_and_shows_the_rest_as_customer_credit(subscription, finance):
    # given
    invoice = issued(subscription, "100.00")

    # when
    finance.post(record_url(invoice), payment_form("130.00"))

    # then
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, Decimal("0.00"))
    assert customer_credit_balance(customer_id=invoice.customer_id, currency="USD") == Decimal("30.00")
    page = finance.get(customer_page(invoice.customer)).content.decode()
    assert '<div class="customer-credit-balance" data-currency="USD">$30.00</div>' in page
    movements = (
        reverse("admin:invoicing_customercreditentry_changelist") + f"?customer__id__exact={invoice.customer_id}"
    )
    assert movements.replace("&", "&amp;") in page or movements in page
    assert "Payment beyond the invoices it paid" in finance.get(movements).content.decode()


def test_a_payment_over_nothing_due_is_refused_with_the_services_message_and_records_nothing(subscription, finance):
    invoice = issued(subscription, "100.00")

    response = finance.post(record_url(invoice), payment_form("10.001"))

    assert response.status_code == 200
    assert "A payment is a positive amount in whole USD minor units." in response.content.decode()
    assert not Payment.objects.exists()


def test_a_payment_on_the_customer_page_pays_their_open_invoices_oldest_first(subscription, finance):
    # given
    older = issued(subscription, "50.00", day=0)
    newer = issued(subscription, "30.00", day=1, now=JAN_2)  # due a day later
    customer = older.customer
    assert customer_record_url(customer) in finance.get(customer_page(customer)).content.decode()

    # when
    response = finance.post(customer_record_url(customer), payment_form("60.00", currency="usd"))

    # then
    assert response.status_code == 302
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, older.amount_due) == (InvoiceStatus.PAID, Decimal("0.00"))
    assert (newer.status, newer.amount_due) == (InvoiceStatus.PARTIALLY_PAID, Decimal("20.00"))


@pytest.mark.parametrize(
    ("settlement", "credit", "refunded", "shown"),
    [
        ("customer_credit", Decimal("25.00"), Decimal("0.00"), "$25.00 to customer credit"),
        ("refund", Decimal("0.00"), Decimal("25.00"), "$25.00 refunded"),
    ],
)
def test_a_credit_note_on_a_paid_invoice_settles_as_finance_chooses(
    subscription, finance, settlement, credit, refunded, shown
):
    # given
    invoice = issued(subscription, "100.00")
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal("100.00"),
        method="bank_transfer",
        received_at=FEB_3,
        now=FEB_3,
    )
    url = reverse("admin:invoicing_invoice_credit_note", args=[quote(invoice.pk)])
    line = invoice.lines.get()
    assert 'name="settlement"' in finance.get(url).content.decode()

    # when
    response = finance.post(
        url, {"scope": "lines", f"amount_{line.pk}": "25.00", "settlement": settlement, "reason": "outage"}
    )

    # then
    assert response.status_code == 302
    note = CreditNote.objects.get(invoice=invoice)
    assert (note.total, note.settlement, note.credited_to_balance, note.refunded) == (
        Decimal("25.00"),
        settlement,
        credit,
        refunded,
    )
    assert customer_credit_balance(customer_id=invoice.customer_id, currency="USD") == credit
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, Decimal("0.00"))
    # finance reads where the money went on the invoice page and on the credit note's own page
    assert shown in finance.get(invoice_page(invoice)).content.decode()
    note_page = finance.get(reverse("admin:invoicing_creditnote_change", args=[quote(note.pk)])).content.decode()
    assert (readonly(note_page, "credited_to_balance"), readonly(note_page, "refunded")) == (
        f"${credit}",
        f"${refunded}",
    )


def test_a_credit_note_on_an_unpaid_invoice_shows_it_lowered_the_amount_due(subscription, finance):
    invoice = issued(subscription, "100.00")
    line = invoice.lines.get()

    finance.post(
        reverse("admin:invoicing_invoice_credit_note", args=[quote(invoice.pk)]),
        {"scope": "lines", f"amount_{line.pk}": "30.00", "reason": "outage"},
    )

    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("70.00")
    assert "$30.00 off the amount due" in finance.get(invoice_page(invoice)).content.decode()


def test_the_settlement_is_not_asked_when_nothing_was_paid(subscription, finance):
    invoice = issued(subscription, "100.00")

    page = finance.get(reverse("admin:invoicing_invoice_credit_note", args=[quote(invoice.pk)])).content.decode()

    assert 'name="settlement"' not in page


def test_mark_paid_records_who_paid_it(subscription, finance):
    invoice = issued(subscription, "100.00")

    finance.post(
        reverse("admin:invoicing_invoice_changelist"), {"action": "action_mark_paid", "_selected_action": [invoice.pk]}
    )

    payment = Payment.objects.get(customer=invoice.customer)
    assert (payment.amount, payment.recorded_by) == (Decimal("100.00"), "user:finance")


def test_a_viewer_sees_no_payment_button_and_a_forged_post_is_refused(subscription, viewer):
    # given
    invoice = issued(subscription, "100.00")
    customer = invoice.customer

    # when
    invoice_body = viewer.get(invoice_page(invoice)).content.decode()
    customer_body = viewer.get(customer_page(customer)).content.decode()
    forged = [
        viewer.post(record_url(invoice), payment_form("40.00")).status_code,
        viewer.post(customer_record_url(customer), payment_form("40.00", currency="USD")).status_code,
        viewer.get(record_url(invoice)).status_code,
    ]

    # then
    assert record_url(invoice) not in invoice_body
    assert customer_record_url(customer) not in customer_body
    assert "Customer credit balance" in customer_body  # reading is allowed
    assert forged == [403, 403, 403]
    assert not Payment.objects.exists()
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.ISSUED, Decimal("100.00"))


def test_payments_and_credit_entries_have_read_only_lists(subscription, finance):
    invoice = issued(subscription, "100.00")
    payment = payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal("120.00"),
        method="cash",
        received_at=FEB_3,
        now=FEB_3,
    )

    payments = finance.get(reverse("admin:invoicing_payment_changelist")).content.decode()
    entries = finance.get(reverse("admin:invoicing_customercreditentry_changelist")).content.decode()

    assert payment.pk in payments
    assert "$20.00" in entries
    assert finance.get(reverse("admin:invoicing_payment_add")).status_code == 403

"""Credit notes move money: off the amount due first, then customer credit or a refund; voiding undoes them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing.models import CreditNoteStatus, InvoiceError, InvoiceStatus, PaymentMethod
from invoicing.receivables import customer_credit_balance, payment_record
from invoicing.services import credit_note_issue, credit_note_void, invoice_refund_create
from tests.invoicing.receivables import JAN_1, account, issued

LATER = JAN_1 + timedelta(days=2)


@pytest.fixture
def subscription(seller):
    return account(seller)


def pay(invoice, amount):
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal(amount),
        method=PaymentMethod.BANK_TRANSFER,
        received_at=LATER,
        now=LATER,
        invoice_ids=[invoice.pk],
    )
    invoice.refresh_from_db()


def line_of(invoice):
    return invoice.lines.get(kind="fee")


def balance(subscription):
    return customer_credit_balance(customer_id=subscription.customer_id, currency="USD")


def test_a_credit_note_on_an_unpaid_invoice_lowers_its_amount_due(subscription):
    invoice = issued(subscription, "100.00", tax_rate="10")
    note = credit_note_issue(invoice=invoice, now=LATER, amounts={line_of(invoice).id: Decimal("20.00")})
    invoice.refresh_from_db()
    assert (note.total, note.applied_to_due, note.credited_to_balance) == (Decimal("22.00"), Decimal("22.00"), 0)
    assert (invoice.amount_due, invoice.status, invoice.total) == (
        Decimal("88.00"),
        "issued",  # a credit note is not a payment: still open, for less
        Decimal("110.00"),
    )


def test_a_full_credit_note_on_an_unpaid_invoice_settles_it_without_money(subscription):
    invoice = issued(subscription, "100.00", "-10.00", tax_rate="10")
    note = credit_note_issue(invoice=invoice, now=LATER)
    invoice.refresh_from_db()
    assert note.total == invoice.total == Decimal("99.00")
    assert (invoice.amount_due, invoice.status, balance(subscription)) == (0, InvoiceStatus.PAID, 0)


def test_a_credit_note_on_a_paid_invoice_becomes_customer_credit(subscription):
    invoice = issued(subscription, "100.00")
    pay(invoice, "100.00")
    note = credit_note_issue(invoice=invoice, now=LATER, amounts={line_of(invoice).id: Decimal("30.00")})
    invoice.refresh_from_db()
    assert (note.applied_to_due, note.credited_to_balance, note.refunded) == (0, Decimal("30.00"), 0)
    assert (invoice.status, invoice.amount_due, balance(subscription)) == (InvoiceStatus.PAID, 0, Decimal("30.00"))


def test_on_a_partly_paid_invoice_the_credit_beyond_what_is_due_is_refunded(subscription):
    invoice = issued(subscription, "100.00")
    pay(invoice, "80.00")
    note = credit_note_issue(
        invoice=invoice, now=LATER, amounts={line_of(invoice).id: Decimal("50.00")}, settlement="refund"
    )
    invoice.refresh_from_db()
    assert (note.applied_to_due, note.credited_to_balance, note.refunded) == (Decimal("20.00"), 0, Decimal("30.00"))
    assert (invoice.status, invoice.amount_due, balance(subscription)) == (InvoiceStatus.PAID, 0, 0)


def test_an_invoice_is_never_credited_beyond_its_total(subscription):
    invoice = issued(subscription, "100.00", "-40.00")
    with pytest.raises(InvoiceError, match="only 60.00 of the invoice is left"):
        credit_note_issue(invoice=invoice, now=LATER, amounts={line_of(invoice).id: Decimal("70.00")})
    credit_note_issue(invoice=invoice, now=LATER)
    with pytest.raises(InvoiceError, match="Nothing left"):
        credit_note_issue(invoice=invoice, now=LATER)


def test_voiding_a_credit_note_owes_the_invoice_again_and_takes_its_credit_back(subscription):
    unpaid = issued(subscription, "100.00")
    on_due = credit_note_issue(invoice=unpaid, now=LATER)
    paid = issued(subscription, "50.00", day=1)
    pay(paid, "50.00")
    to_credit = credit_note_issue(invoice=paid, now=LATER)
    credit_note_void(credit_note=on_due, now=LATER, reason="issued by mistake")
    credit_note_void(credit_note=to_credit, now=LATER)
    unpaid.refresh_from_db()
    paid.refresh_from_db()
    assert (unpaid.status, unpaid.amount_due, unpaid.paid_at) == (InvoiceStatus.ISSUED, Decimal("100.00"), None)
    assert (paid.status, paid.amount_due, balance(subscription)) == (InvoiceStatus.PAID, 0, 0)
    on_due.refresh_from_db()
    assert (on_due.status, on_due.void_reason) == (CreditNoteStatus.VOID, "issued by mistake")
    again = credit_note_issue(invoice=unpaid, now=LATER)  # a voided note no longer counts as credited
    assert again.total == Decimal("100.00")


def test_a_credit_note_whose_credit_was_used_cannot_be_voided(subscription):
    paid = issued(subscription, "50.00")
    pay(paid, "50.00")
    note = credit_note_issue(invoice=paid, now=LATER)
    issued(subscription, "80.00", day=1, now=LATER)  # takes the 50.00 of credit
    with pytest.raises(InvoiceError, match="already used"):
        credit_note_void(credit_note=note, now=LATER)


def test_a_full_refund_credits_a_paid_invoice_once(subscription):
    invoice = issued(subscription, "100.00", tax_rate="20")
    pay(invoice, "120.00")
    refund = invoice_refund_create(invoice=invoice, now=LATER, reason="churned")
    assert refund.pk.startswith("crn_")
    assert (refund.total, refund.tax, refund.refunded, refund.settlement) == (
        Decimal("120.00"),
        Decimal("20.00"),
        Decimal("120.00"),
        "refund",
    )
    with pytest.raises(InvoiceError, match="already been refunded"):
        invoice_refund_create(invoice=invoice, now=LATER)


def test_a_partial_refund_by_amount_and_its_idempotency_key(subscription):
    invoice = issued(subscription, "60.00", "40.00")
    pay(invoice, "100.00")
    first = invoice_refund_create(invoice=invoice, now=LATER, amount=Decimal("70.00"), idempotency_key="r-1")
    again = invoice_refund_create(invoice=invoice, now=LATER, amount=Decimal("70.00"), idempotency_key="r-1")
    assert again.pk == first.pk
    assert sorted(first.lines.values_list("amount", flat=True)) == [Decimal("10.00"), Decimal("60.00")]
    with pytest.raises(InvoiceError, match="Only 30.00"):
        invoice_refund_create(invoice=invoice, now=LATER, amount=Decimal("31.00"))


def test_an_unpaid_invoice_is_not_refunded(subscription):
    invoice = issued(subscription, "100.00")
    with pytest.raises(InvoiceError, match="only paid invoices"):
        invoice_refund_create(invoice=invoice, now=LATER)

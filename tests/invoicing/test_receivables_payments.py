"""Payments as records: allocated to invoices, partial and over payments, statuses, exactly once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from invoicing.models import (
    CustomerCreditKind,
    InvoiceError,
    InvoiceStatus,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from invoicing.receivables import InvoicePaymentError, customer_credit_balance, payment_record
from invoicing.services import invoice_mark_paid, invoice_record_payment, invoice_void
from tests.invoicing.receivables import JAN_1, account, issued

LATER = JAN_1 + timedelta(days=3)


@pytest.fixture
def subscription(seller):
    return account(seller)


def pay(subscription, amount, *invoices, **extra):
    return payment_record(
        customer=subscription.customer,
        currency="USD",
        amount=Decimal(amount),
        method=extra.pop("method", PaymentMethod.BANK_TRANSFER),
        received_at=LATER,
        now=LATER,
        invoice_ids=[invoice.pk for invoice in invoices] if invoices else None,
        **extra,
    )


def test_a_partial_payment_leaves_the_rest_due_and_the_invoice_partially_paid(subscription):
    invoice = issued(subscription, "100.00")
    payment = pay(subscription, "30.00", invoice, reference="TRF-1", recorded_by="user:finance")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due, invoice.paid_at) == (
        InvoiceStatus.PARTIALLY_PAID,
        Decimal("70.00"),
        None,
    )
    allocation = PaymentAllocation.objects.get(payment=payment)
    assert (allocation.invoice_id, allocation.amount) == (invoice.pk, Decimal("30.00"))
    assert (payment.reference, payment.recorded_by, payment.method) == ("TRF-1", "user:finance", "bank_transfer")


def test_the_payment_that_completes_an_invoice_marks_it_paid_at_its_receipt(subscription):
    invoice = issued(subscription, "100.00")
    pay(subscription, "30.00", invoice)
    pay(subscription, "70.00", invoice)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due, invoice.paid_at) == (InvoiceStatus.PAID, Decimal("0"), LATER)


def test_an_overpayment_becomes_customer_credit(subscription):
    invoice = issued(subscription, "100.00")
    payment = pay(subscription, "130.00", invoice)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, Decimal("0"))
    assert customer_credit_balance(customer_id=subscription.customer_id, currency="USD") == Decimal("30.00")
    entry = payment.credit_entries.get()
    assert (entry.kind, entry.amount) == (CustomerCreditKind.OVERPAYMENT, Decimal("30.00"))


def test_an_unallocated_payment_pays_open_invoices_oldest_due_first(seller):
    subscription = account(seller)
    first = issued(subscription, "40.00", day=0)
    second = issued(subscription, "50.00", day=1, now=JAN_1 + timedelta(days=1))
    pay(subscription, "60.00")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.amount_due) == (InvoiceStatus.PAID, Decimal("0"))
    assert (second.status, second.amount_due) == (InvoiceStatus.PARTIALLY_PAID, Decimal("30.00"))


def test_one_payment_pays_several_named_invoices_in_order(subscription):
    first = issued(subscription, "40.00", day=0)
    second = issued(subscription, "50.00", day=1)
    payment = pay(subscription, "90.00", second, first)
    assert sorted(payment.allocations.values_list("invoice_id", "amount")) == sorted(
        [(first.pk, Decimal("40.00")), (second.pk, Decimal("50.00"))]
    )


@pytest.mark.parametrize("amount", ["0", "-5.00", "10.001"])
def test_a_payment_is_a_positive_amount_in_minor_units(subscription, amount):
    invoice = issued(subscription, "100.00")
    with pytest.raises(InvoicePaymentError) as refused:
        pay(subscription, amount, invoice)
    assert refused.value.code == "PAYMENT_AMOUNT_INVALID"
    assert not Payment.objects.exists()


def test_a_paid_or_void_invoice_takes_no_payment(subscription):
    paid = issued(subscription, "10.00")
    pay(subscription, "10.00", paid)
    void = issued(subscription, "10.00", day=1)
    invoice_void(invoice=void, now=LATER)
    with pytest.raises(InvoicePaymentError) as refused:
        pay(subscription, "5.00", paid)
    assert refused.value.code == "INVOICE_ALREADY_PAID"
    with pytest.raises(InvoicePaymentError) as refused:
        pay(subscription, "5.00", void)
    assert refused.value.code == "INVOICE_NOT_LINKABLE_STATUS"
    assert Payment.objects.count() == 1


def test_an_idempotency_key_records_a_payment_once(subscription):
    invoice = issued(subscription, "100.00")
    first = pay(subscription, "30.00", invoice, idempotency_key="k-1")
    again = pay(subscription, "30.00", invoice, idempotency_key="k-1")
    invoice.refresh_from_db()
    assert (again.pk, Payment.objects.count(), invoice.amount_due) == (first.pk, 1, Decimal("70.00"))


def test_the_database_refuses_a_second_allocation_of_a_payment_to_the_same_invoice(subscription):
    invoice = issued(subscription, "100.00")
    payment = pay(subscription, "30.00", invoice)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAllocation.objects.create(payment=payment, invoice=invoice, amount=Decimal("1"), created_at=LATER)


def test_mark_paid_records_a_full_payment_of_what_is_due(subscription):
    invoice = issued(subscription, "100.00")
    pay(subscription, "25.00", invoice)
    invoice = invoice_mark_paid(invoice=invoice, now=LATER, recorded_by="user:finance")
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, Decimal("0"))
    last = Payment.objects.order_by("recorded_at", "amount").last()
    assert (last.amount, last.method, last.recorded_by) == (Decimal("75.00"), "out_of_band", "user:finance")


def test_out_of_band_records_a_payment_and_refuses_a_second_one(subscription):
    invoice = issued(subscription, "100.00")
    invoice = invoice_record_payment(invoice=invoice, now=LATER, recorded_by="api-key:k")
    assert (invoice.status, Payment.objects.get().amount) == (InvoiceStatus.PAID, Decimal("100.00"))
    with pytest.raises(InvoicePaymentError) as refused:
        invoice_record_payment(invoice=invoice, now=LATER)
    assert refused.value.code == "INVOICE_ALREADY_PAID"


def test_an_invoice_with_payments_cannot_be_voided(subscription):
    invoice = issued(subscription, "100.00")
    pay(subscription, "10.00", invoice)
    with pytest.raises(InvoiceError, match="partially_paid; it cannot be voided"):
        invoice_void(invoice=invoice, now=LATER)

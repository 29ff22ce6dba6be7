"""Receivables stay consistent when finance and the API write at the same moment (PostgreSQL: row locks and
concurrent transactions; skipped on SQLite). Two threads at once record a payment and issue a credit note on
one invoice, or record two payments that together overpay it: whatever order the locks give them, no amount
due goes negative, the invariant of invoicing/RECEIVABLES.md holds to the cent and the excess becomes customer
credit exactly once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from invoicing.models import CustomerCreditEntry, InvoiceStatus, PaymentAllocation, PaymentMethod
from invoicing.receivables import InvoicePaymentError, customer_credit_balance, payment_record
from invoicing.services import credit_note_issue
from tests.factories import MerchantFactory
from tests.invoicing.receivables import JAN_1, account, issued, receivables_check

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROUNDS = 3  # each round a fresh customer: the threads meet in a different order from round to round
AT = JAN_1.replace(day=5)


def at_once(*calls) -> list:
    """Run the calls in threads released together; each one's result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except Exception as error:  # returned to the test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def pay(invoice, amount: str, *, named: bool = True):
    return lambda: payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal(amount),
        method=PaymentMethod.BANK_TRANSFER,
        received_at=AT,
        now=AT,
        invoice_ids=[invoice.pk] if named else None,
    )


def credit(invoice, amount: str | None):
    line = invoice.lines.get(description="Line 1")
    amounts = None if amount is None else {line.pk: Decimal(amount)}
    return lambda: credit_note_issue(invoice=invoice, now=AT, reason="Goodwill", amounts=amounts)


def settled(invoice, subscription) -> tuple:
    invoice.refresh_from_db()
    receivables_check(subscription, {})
    entries = list(CustomerCreditEntry.objects.filter(customer_id=invoice.customer_id).values_list("kind", "amount"))
    return (
        invoice.status,
        invoice.amount_due,
        customer_credit_balance(customer_id=invoice.customer_id, currency="USD"),
        entries,
    )


def fresh():
    """A new customer with one issued invoice of 100.00 (no customer credit that issuing would apply)."""
    subscription = account(MerchantFactory(), payment_term_days=14)
    return subscription, issued(subscription, "100.00")


def test_a_payment_and_a_partial_credit_note_at_once():
    for _ in range(ROUNDS):
        subscription, invoice = fresh()

        results = at_once(pay(invoice, "100.00"), credit(invoice, "30.00"))

        assert not any(isinstance(result, Exception) for result in results), results
        status, due, balance, _ = settled(invoice, subscription)
        # paid first: the credit note's 30 goes to customer credit; credited first: 30 of the payment is left over
        assert (status, due, balance) == (InvoiceStatus.PAID, Decimal(0), Decimal("30.00"))
        assert sum(a.amount for a in PaymentAllocation.objects.filter(invoice=invoice)) + results[
            1
        ].applied_to_due == Decimal("100.00")


def test_a_payment_and_a_full_credit_note_at_once():
    for _ in range(ROUNDS):
        subscription, invoice = fresh()

        payment, note = at_once(pay(invoice, "100.00"), credit(invoice, None))

        status, due, balance, _ = settled(invoice, subscription)
        assert (status, due) == (InvoiceStatus.PAID, Decimal(0))
        if isinstance(payment, InvoicePaymentError):
            # credited first: the invoice was paid off by the credit note; the named payment is refused
            assert (payment.code, note.applied_to_due, balance) == (
                "INVOICE_ALREADY_PAID",
                Decimal("100.00"),
                Decimal(0),
            )
        else:
            # paid first: the whole credit note becomes customer credit, once
            assert (note.applied_to_due, note.credited_to_balance, balance) == (
                Decimal(0),
                Decimal("100.00"),
                Decimal("100.00"),
            )


@pytest.mark.parametrize("named", [True, False], ids=["named invoice", "oldest due first"])
def test_two_payments_at_once_that_together_overpay(named):
    for _ in range(ROUNDS):
        subscription, invoice = fresh()

        results = at_once(pay(invoice, "60.00", named=named), pay(invoice, "60.00", named=named))

        assert not any(isinstance(result, Exception) for result in results), results
        status, due, balance, _ = settled(invoice, subscription)
        assert (status, due, balance) == (InvoiceStatus.PAID, Decimal(0), Decimal("20.00"))
        overpaid = CustomerCreditEntry.objects.filter(payment__in=results, amount__gt=0)
        assert [entry.amount for entry in overpaid] == [Decimal("20.00")]  # exactly once


def test_two_payments_at_once_each_enough_on_their_own():
    # neither names the invoice: the one that locks it second finds it paid and keeps its money as credit
    for _ in range(ROUNDS):
        subscription, invoice = fresh()

        results = at_once(pay(invoice, "100.00", named=False), pay(invoice, "50.00", named=False))

        assert not any(isinstance(result, Exception) for result in results), results
        status, due, balance, _ = settled(invoice, subscription)
        assert (status, due) == (InvoiceStatus.PAID, Decimal(0))
        assert balance in (Decimal("50.00"), Decimal("100.00"))  # the 50 alone, or 100 when it went first
        assert sum(a.amount for a in PaymentAllocation.objects.filter(invoice=invoice)) == Decimal("100.00")

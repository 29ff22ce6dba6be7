"""Customer credit: applied to the next invoices at issue as its own line, negative totals carried forward,
given back when an invoice that used it is voided."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from invoicing.models import CustomerCreditEntry, InvoiceStatus, LineKind, PaymentMethod
from invoicing.receivables import customer_credit_balance, customer_credit_balances, payment_record
from invoicing.services import invoice_void
from tests.invoicing.receivables import JAN_1, account, draft, issued

LATER = JAN_1 + timedelta(days=2)


def overpay(subscription, amount):
    payment_record(
        customer=subscription.customer,
        currency="USD",
        amount=Decimal(amount),
        method=PaymentMethod.CASH,
        received_at=JAN_1,
        now=JAN_1,
    )


def balance(subscription):
    return customer_credit_balance(customer_id=subscription.customer_id, currency="USD")


def test_credit_is_applied_at_issue_as_a_line_after_the_total(seller):
    subscription = account(seller)
    overpay(subscription, "30.00")
    invoice = issued(subscription, "100.00", tax_rate="10", now=LATER)
    applied = invoice.lines.get(kind=LineKind.APPLIED_CREDIT)
    charges = sum(line.amount for line in invoice.lines.exclude(kind__in=(LineKind.TAX, LineKind.APPLIED_CREDIT)))
    assert (applied.description, applied.amount) == ("Applied credit balance", Decimal("-30.00"))
    assert charges + invoice.tax == invoice.total == Decimal("110.00")  # the lines still add up to the total
    assert invoice.total + applied.amount == invoice.amount_due == Decimal("80.00")
    assert (invoice.status, balance(subscription)) == (InvoiceStatus.ISSUED, 0)


def test_credit_covering_the_whole_invoice_issues_it_paid_and_the_rest_waits(seller):
    subscription = account(seller)
    overpay(subscription, "150.00")
    first = issued(subscription, "100.00", now=LATER)
    second = issued(subscription, "80.00", now=LATER, day=1)
    assert (first.status, first.amount_due, first.paid_at) == (InvoiceStatus.PAID, 0, LATER)
    assert (second.status, second.amount_due) == (InvoiceStatus.ISSUED, Decimal("30.00"))
    assert balance(subscription) == 0


def test_a_negative_total_is_carried_forward_as_credit(seller):
    subscription = account(seller)
    credit = issued(subscription, "20.00", "-50.00")
    assert (credit.total, credit.amount_due) == (Decimal("-30.00"), 0)
    assert balance(subscription) == Decimal("30.00")
    nxt = issued(subscription, "100.00", day=1)
    assert nxt.amount_due == Decimal("70.00")


def test_voiding_an_invoice_gives_its_applied_credit_back_and_the_reissue_applies_it_again(seller):
    subscription = account(seller)
    overpay(subscription, "30.00")
    invoice = issued(subscription, "100.00", now=LATER)
    replacement = invoice_void(invoice=invoice, now=LATER, reason="wrong", reissue=True)
    assert balance(subscription) == Decimal("30.00")
    assert not replacement.lines.filter(kind=LineKind.APPLIED_CREDIT).exists()
    assert replacement.total == Decimal("100.00")


def test_credit_is_per_currency_and_the_ledger_is_append_only(seller):
    subscription = account(seller)
    overpay(subscription, "10.00")
    other = draft(subscription, "5.00")
    assert customer_credit_balances(customer_id=subscription.customer_id) == {"USD": Decimal("10.00")}
    entry = CustomerCreditEntry.objects.get()
    try:
        entry.delete()
    except Exception as error:  # noqa: BLE001 - the model's refusal
        assert "never deleted" in str(error)
    else:
        raise AssertionError("an entry was deleted")
    assert other.status == InvoiceStatus.DRAFT and CustomerCreditEntry.objects.count() == 1

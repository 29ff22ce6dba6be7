"""Due dates are fixed at issue; open invoices past them become overdue (beat), paid ones never do."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from invoicing.models import InvoiceStatus, PaymentMethod
from invoicing.receivables import invoices_mark_overdue, payment_record
from invoicing.services import subscription_update
from invoicing.tasks import invoices_mark_overdue_task
from tests.invoicing.receivables import JAN_1, account, issued


def test_the_due_date_is_the_issue_moment_plus_the_payment_term_and_stays(seller):
    subscription = account(seller, payment_term_days=30)
    invoice = issued(subscription, "100.00")
    assert invoice.due_at == JAN_1 + timedelta(days=30)
    subscription_update(subscription=subscription, changes={"payment_term_days": 7}, now=JAN_1)
    invoice.refresh_from_db()
    assert invoice.due_at == JAN_1 + timedelta(days=30)


def test_open_invoices_past_due_become_overdue_once(seller):
    subscription = account(seller, payment_term_days=14)
    unpaid = issued(subscription, "100.00")
    partly = issued(subscription, "50.00", day=1)
    paid = issued(subscription, "20.00", day=2)
    not_yet = issued(subscription, "10.00", day=3, now=JAN_1 + timedelta(days=10))
    for invoice, amount in ((partly, "20.00"), (paid, "20.00")):
        payment_record(
            customer=subscription.customer,
            currency="USD",
            amount=Decimal(amount),
            method=PaymentMethod.CASH,
            received_at=JAN_1,
            now=JAN_1,
            invoice_ids=[invoice.pk],
        )
    due = JAN_1 + timedelta(days=14)
    assert invoices_mark_overdue(now=due) == 0  # due at that moment, not yet past it
    assert invoices_mark_overdue(now=due + timedelta(seconds=1)) == 2
    assert invoices_mark_overdue(now=due + timedelta(days=1)) == 0  # already overdue: nothing twice
    statuses = {i.pk: i.status for i in (unpaid, partly, paid, not_yet) if not i.refresh_from_db()}
    assert statuses == {
        unpaid.pk: InvoiceStatus.OVERDUE,
        partly.pk: InvoiceStatus.OVERDUE,
        paid.pk: InvoiceStatus.PAID,
        not_yet.pk: InvoiceStatus.ISSUED,
    }


def test_an_overdue_invoice_stays_overdue_until_paid_in_full(seller):
    subscription = account(seller, payment_term_days=0)
    invoice = issued(subscription, "100.00")
    invoices_mark_overdue_task(now=(JAN_1 + timedelta(hours=1)).isoformat())

    def pay(amount):
        payment_record(
            customer=subscription.customer,
            currency="USD",
            amount=Decimal(amount),
            method=PaymentMethod.CHECK,
            received_at=JAN_1 + timedelta(days=2),
            now=JAN_1 + timedelta(days=2),
            invoice_ids=[invoice.pk],
        )
        invoice.refresh_from_db()
        return invoice.status

    assert pay("40.00") == InvoiceStatus.OVERDUE
    assert pay("60.00") == InvoiceStatus.PAID

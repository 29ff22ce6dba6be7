"""The period invoice of a real-time subscription settles against what was debited: nothing twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.services import billing_run_execute, invoice_finalize
from wallets.models import EntryKind, LedgerEntry, Wallet

from .conftest import APRIL, MARCH, balance, fund, send

pytestmark = pytest.mark.django_db

CLOSE = APRIL + timedelta(hours=1)


def close_march(subscription) -> Invoice:
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=MARCH)


def lines(invoice) -> list[tuple[str, str, Decimal]]:
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


def test_invoice_shows_full_usage_then_what_prepaid_credit_paid(customer, subscription):
    # given $10 of credit and $12.50 of usage debited in real time (allow overage)
    fund(customer, "10")
    for tokens_used in (600, 600, 300):
        send(customer, tokens_used, now=MARCH + timedelta(days=9))

    # when March is closed
    invoice = close_march(subscription)

    # then the usage line bills the period in full (with its explanation) and the credit is taken off
    usage, prepaid = invoice.lines.order_by("position")
    assert (usage.kind, usage.amount, usage.quantity) == (LineKind.USAGE, Decimal("12.50"), Decimal(1500))
    assert usage.explanation["lines"]
    assert (prepaid.kind, prepaid.description, prepaid.amount) == (
        LineKind.PREPAID,
        "Paid from prepaid balance",
        Decimal("-10.00"),
    )
    assert (invoice.total, invoice.amount_due) == (Decimal("12.50"), Decimal("2.50"))  # the overage only


def test_issuing_records_the_settlement_once_and_never_charges_twice(customer, subscription):
    fund(customer, "10")
    send(customer, 1500, now=MARCH + timedelta(days=9))
    draft = close_march(subscription)

    # when the draft is issued (twice: the second is refused) and the settlement replayed
    invoice = invoice_finalize(invoice=draft, now=CLOSE + timedelta(days=1))

    # then the overage moved to the invoice once: the wallet owes nothing more, the invoice 2.50
    assert invoice.status == InvoiceStatus.ISSUED
    assert (invoice.total, invoice.amount_due) == (Decimal("12.50"), Decimal("2.50"))
    [settlement] = LedgerEntry.objects.filter(kind=EntryKind.INVOICE_SETTLEMENT)
    assert settlement.reference == invoice.pk
    assert (settlement.amount, settlement.overage_amount) == (Decimal("2.5"), Decimal("-2.5"))
    wallet = Wallet.objects.get(customer=customer)
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal(0), Decimal(0))
    # total billed = prepaid credit consumed + amount due: the period's price, once
    assert Decimal(10) + invoice.amount_due == invoice.total


def test_fully_prepaid_period_is_due_nothing(customer, subscription):
    fund(customer, "100")
    send(customer, 1500, now=MARCH + timedelta(days=9))

    invoice = invoice_finalize(invoice=close_march(subscription), now=CLOSE + timedelta(days=1))

    assert lines(invoice)[-1] == (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-12.50"))
    assert (invoice.total, invoice.amount_due) == (Decimal("12.50"), Decimal("0.00"))
    assert balance(customer) == Decimal("87.5")


def test_tax_is_charged_on_the_full_usage_and_stays_due(customer, subscription):
    customer.tax_rate = Decimal(10)
    customer.save()
    fund(customer, "100")
    send(customer, 1500, now=MARCH + timedelta(days=9))

    invoice = close_march(subscription)

    assert (invoice.subtotal, invoice.tax, invoice.total) == (Decimal("12.50"), Decimal("1.25"), Decimal("13.75"))
    assert invoice.amount_due == Decimal("1.25")


def test_late_event_in_the_grace_period_is_debited_and_settled_on_the_invoice(customer, subscription):
    fund(customer, "100")
    send(customer, 1000, now=MARCH + timedelta(days=9))
    draft = close_march(subscription)

    # when an event of March arrives after the close, before the draft is issued
    late = send(customer, 500, now=CLOSE + timedelta(minutes=5))
    late_event = late.accepted[0]
    assert late.debits and late.late_event_ids == []
    invoice = invoice_finalize(invoice=draft, now=CLOSE + timedelta(days=1))

    # then the issued invoice bills 1,500 tokens and the 12.50 debited
    assert late_event.timestamp < APRIL
    assert (invoice.total, invoice.amount_due) == (Decimal("12.50"), Decimal("0.00"))


def test_late_event_of_an_issued_period_is_stored_but_not_debited(customer, subscription):
    fund(customer, "100")
    send(customer, 1000, now=MARCH + timedelta(days=9))
    invoice_finalize(invoice=close_march(subscription), now=CLOSE)

    late = send(customer, 500, now=CLOSE + timedelta(days=2))

    assert late.counts["accepted"] == 1
    assert late.debits == []
    assert late.late_event_ids == [late.accepted[0].id]
    assert balance(customer) == Decimal(90)


def test_late_event_of_an_issued_period_after_a_trial_is_not_debited(customer, subscription):
    # given a trial until March 5 (the usage window starts there, the invoice on March 1), then March issued
    subscription.trial_ends_at = MARCH + timedelta(days=4)
    subscription.save(update_fields=["trial_ends_at"])
    fund(customer, "100")
    send(customer, 1000, now=MARCH + timedelta(days=9))
    invoice = invoice_finalize(invoice=close_march(subscription), now=CLOSE)
    assert invoice.period_start == MARCH

    # when a March event arrives after the issue
    late = send(customer, 500, now=CLOSE + timedelta(days=2))

    # then it is late usage, not debited (the issued invoice cannot settle a debit any more)
    assert (late.debits, late.late_event_ids) == ([], [late.accepted[0].id])
    assert balance(customer) == Decimal(90)


def test_post_paid_invoice_has_no_prepaid_line(customer, product, tokens):
    from tests.factories import MeteredPriceFactory, PlanFactory, SubscriptionFactory

    plan = PlanFactory(product=product, merchant=product.merchant)
    MeteredPriceFactory(plan=plan, billable_metric=tokens, unit_price=Decimal("0.01"))
    subscription = SubscriptionFactory(plan=plan, merchant=plan.merchant, customer=customer, started_at=MARCH)
    fund(customer, "100")
    send(customer, 100, now=MARCH + timedelta(days=9))

    invoice = close_march(subscription)

    assert [kind for kind, _, _ in lines(invoice)] == [LineKind.USAGE]
    assert invoice.amount_due == Decimal("1.00")

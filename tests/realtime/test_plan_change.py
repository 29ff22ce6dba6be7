"""A plan change inside a real-time period never charges twice.

The plan-change invoice settles the old plan's part of the period against its debits exactly like a
period-end invoice (paid from credit taken off, overage billed once); from the change the new plan's
usage is debited from a fresh usage window (its own tiers from zero, where its invoice starts), and the
period-end invoice settles only the new plan's debits. Whatever the modes on either side:

    prepaid credit consumed + Σ amounts due = the price of each plan's usage, and the wallet owes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import BillingMode
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind, SubscriptionPlanChange
from invoicing.selectors import customer_usage_cost
from invoicing.services import billing_run_execute, invoice_finalize, subscription_upgrade
from tests.factories import MeteredPriceFactory, PlanFactory, PriceTierFactory
from wallets.models import EntryKind, LedgerEntry, Wallet

from .conftest import APRIL, MARCH, fund, send

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 10, 12, 0, tzinfo=MARCH.tzinfo)  # the upgrade
CLOSE = APRIL + timedelta(hours=1)
ISSUE = APRIL + timedelta(days=5)


def day(n: int) -> datetime:
    return datetime(2026, 3, n, 9, 0, tzinfo=MARCH.tzinfo)


def scale_plan(product, tokens, *, billing_mode=BillingMode.REAL_TIME):
    """Tokens: 500 at 0.02, then 0.004 — other tiers than the Prepaid plan's (1,000 at 0.01, then 0.005)."""
    plan = PlanFactory(product=product, merchant=product.merchant, name="Scale", billing_mode=billing_mode)
    price = MeteredPriceFactory(
        plan=plan, billable_metric=tokens, model="graduated", unit_price=None, invoice_display_name="Tokens"
    )
    PriceTierFactory(price=price, up_to=Decimal(500), unit_price=Decimal("0.02"))
    PriceTierFactory(price=price, up_to=None, unit_price=Decimal("0.004"))
    return plan


def debits_of(subscription) -> list[tuple[datetime, Decimal, Decimal]]:
    """(period_start, cost, overage) of each usage debit, in ledger order."""
    return [
        (entry.period_start, -entry.amount, entry.overage_amount)
        for entry in LedgerEntry.objects.filter(kind=EntryKind.USAGE_DEBIT, subscription=subscription).order_by(
            "sequence"
        )
    ]


def lines(invoice) -> list[tuple[str, str, Decimal]]:
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


def recurring(subscription) -> Invoice:
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=MARCH)


def issue(invoice: Invoice, at: datetime = ISSUE) -> Invoice:
    return invoice_finalize(invoice=invoice, now=at)


def credit_consumed(customer) -> Decimal:
    """Credit granted minus what is left: what prepaid credit paid, overall."""
    wallet = Wallet.objects.get(customer=customer)
    granted = sum(
        LedgerEntry.objects.filter(wallet=wallet, kind=EntryKind.GRANT).values_list("amount", flat=True), Decimal(0)
    )
    return granted - wallet.balance


@pytest.mark.parametrize(
    ("credit", "old_due", "new_due", "left"),
    [
        # enough credit for everything: both invoices are paid from it
        ("100", Decimal("0.00"), Decimal("0.00"), Decimal("78.2")),
        # 10 of credit: the old plan's last debit runs 1 over, the new plan's debits are all overage
        ("10", Decimal("1.00"), Decimal("10.80"), Decimal("0")),
    ],
)
def test_upgrade_settles_each_plan_against_its_own_debits(
    customer, subscription, product, tokens, credit, old_due, new_due, left
):
    # given credit and 1,200 tokens on the Prepaid plan, crossing its tier: 8.00 + 3.00 debited
    fund(customer, credit, now=day(1))
    send(customer, 800, now=day(5), at=day(5))
    send(customer, 400, now=day(8), at=day(8))
    scale = scale_plan(product, tokens)

    # when the subscription upgrades to Scale on March 10
    change = subscription_upgrade(subscription=subscription, new_plan=scale, now=AT)

    # then the plan-change invoice bills the old plan's 1,200 tokens once: its debits are taken off
    assert change.kind == InvoiceKind.PLAN_CHANGE
    paid_old = Decimal("11.00") - old_due
    assert lines(change) == [
        (LineKind.USAGE, "Tokens: 1,200 tokens (Mar 1, 2026 – Mar 10, 2026)", Decimal("11.0000")),
        (LineKind.PREPAID, "Paid from prepaid balance", -paid_old),
    ]
    assert (change.total, change.amount_due) == (Decimal("11.00"), old_due)

    # when 300 then 400 tokens follow on Scale, crossing its 500 tier
    after = [send(customer, 300, now=day(15), at=day(15)), send(customer, 400, now=day(20), at=day(20))]

    # then they are priced from zero on Scale's tiers (not on top of the old plan's 1,200)
    assert [(d.usage_before, d.usage_after, d.amount) for o in after for d in o.debits] == [
        (Decimal(0), Decimal(300), Decimal("6")),
        (Decimal(300), Decimal(700), Decimal("4.8")),
    ]
    assert [(start, cost) for start, cost, _ in debits_of(subscription)] == [
        (MARCH, Decimal("8")),
        (MARCH, Decimal("3")),
        (AT, Decimal("6")),
        (AT, Decimal("4.8")),
    ]

    # when March closes and both invoices are issued
    issue(change, at=AT + timedelta(days=1))
    march = issue(recurring(subscription))

    # then March bills Scale's 700 tokens from the change and settles only Scale's debits
    paid_new = Decimal("10.80") - new_due
    assert lines(march)[0] == (LineKind.USAGE, "Tokens: 700 tokens (Mar 10, 2026 – Mar 31, 2026)", Decimal("10.8000"))
    assert (march.total, march.amount_due) == (Decimal("10.80"), new_due)
    if paid_new:
        assert lines(march)[-1] == (LineKind.PREPAID, "Paid from prepaid balance", -paid_new)
    # each invoice moved its own overage, once; the wallet owes nothing
    settlements = LedgerEntry.objects.filter(kind=EntryKind.INVOICE_SETTLEMENT).order_by("sequence")
    assert [(s.reference, -s.overage_amount) for s in settlements] == [(change.pk, old_due), (march.pk, new_due)]
    wallet = Wallet.objects.get(customer=customer)
    assert (wallet.balance, wallet.overage_outstanding) == (left, Decimal(0))
    # prepaid consumed + amounts due = Prepaid(1,200) + Scale(700) = 11.00 + 10.80, nothing twice
    assert credit_consumed(customer) + change.amount_due + march.amount_due == Decimal("21.80")
    assert sum((cost for _, cost, _ in debits_of(subscription)), Decimal(0)) == Decimal("21.8")


def test_old_plan_usage_arriving_after_the_upgrade_is_billed_once_by_the_change_invoice(
    customer, subscription, product, tokens
):
    # given 800 tokens debited on the old plan, then the upgrade
    fund(customer, "100", now=day(1))
    send(customer, 800, now=day(5), at=day(5))
    change = subscription_upgrade(subscription=subscription, new_plan=scale_plan(product, tokens), now=AT)

    # when an event of March 9 (old plan) arrives after the change
    late = send(customer, 400, now=day(12), at=day(9))

    # then it is stored but not debited (it is not the new plan's usage) ...
    assert (late.counts["accepted"], late.debits) == (1, [])
    # ... and the change invoice, refreshed when issued, bills it in its amount due
    change = issue(change, at=day(12))
    assert lines(change) == [
        (LineKind.USAGE, "Tokens: 1,200 tokens (Mar 1, 2026 – Mar 10, 2026)", Decimal("11.0000")),
        (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-8.00")),
    ]
    assert (change.total, change.amount_due) == (Decimal("11.00"), Decimal("3.00"))
    assert credit_consumed(customer) + change.amount_due == Decimal("11.00")


def test_real_time_to_post_paid_upgrade_settles_the_old_debits_only(customer, subscription, product, tokens):
    # given 10 of credit and 1,200 tokens debited (8 + 3: 1 of overage)
    fund(customer, "10", now=day(1))
    send(customer, 800, now=day(5), at=day(5))
    send(customer, 400, now=day(8), at=day(8))
    # when the subscription moves to a post-paid plan
    postpaid = scale_plan(product, tokens, billing_mode=BillingMode.POST_PAID)
    change = subscription_upgrade(subscription=subscription, new_plan=postpaid, now=AT)
    after = send(customer, 700, now=day(15), at=day(15))

    # then the new plan's usage is only ingested
    assert (after.counts["accepted"], after.debits) == (1, [])
    # and the change invoice, issued once the subscription is post-paid, still settles the old debits
    change = issue(change, at=AT + timedelta(days=1))
    assert lines(change)[-1] == (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-10.00"))
    assert (change.total, change.amount_due) == (Decimal("11.00"), Decimal("1.00"))
    # March bills the post-paid plan's 700 tokens in full: no prepaid line
    march = issue(recurring(subscription))
    assert lines(march) == [
        (LineKind.USAGE, "Tokens: 700 tokens (Mar 10, 2026 – Mar 31, 2026)", Decimal("10.8000")),
    ]
    assert march.amount_due == Decimal("10.80")
    wallet = Wallet.objects.get(customer=customer)
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal(0), Decimal(0))
    assert credit_consumed(customer) + change.amount_due + march.amount_due == Decimal("21.80")


def test_post_paid_to_real_time_upgrade_debits_the_new_plan_from_the_change(customer, merchant, product, tokens):
    # given a post-paid subscription with 1,200 tokens (not debited)
    from invoicing.services import subscription_start

    from .conftest import graduated_price

    postpaid = PlanFactory(product=product, merchant=merchant, name="Pay later", billing_mode=BillingMode.POST_PAID)
    graduated_price(postpaid, tokens)
    subscription = subscription_start(customer=customer, plan=postpaid, started_at=MARCH, now=MARCH)
    fund(customer, "100", now=day(1))
    assert send(customer, 1200, now=day(5), at=day(5)).debits == []

    # when it upgrades to the real-time Scale plan and uses 700 tokens
    change = subscription_upgrade(subscription=subscription, new_plan=scale_plan(product, tokens), now=AT)
    after = send(customer, 700, now=day(15), at=day(15))

    # then only the new plan's usage is debited, priced from zero on its tiers
    assert [(d.period_start, d.usage_before, d.usage_after, d.amount) for d in after.debits] == [
        (AT, Decimal(0), Decimal(700), Decimal("10.8")),
    ]
    # the change invoice bills the old plan in full, March settles the new plan's debits
    change = issue(change, at=AT + timedelta(days=1))
    assert lines(change) == [
        (LineKind.USAGE, "Tokens: 1,200 tokens (Mar 1, 2026 – Mar 10, 2026)", Decimal("11.0000")),
    ]
    march = issue(recurring(subscription))
    assert lines(march)[-1] == (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-10.80"))
    assert (march.total, march.amount_due) == (Decimal("10.80"), Decimal("0.00"))
    assert credit_consumed(customer) + change.amount_due + march.amount_due == Decimal("21.80")


def test_two_upgrades_in_a_period_bill_and_settle_each_plan_part_once(customer, subscription, product, tokens):
    # given Prepaid → Scale on March 10 → Max on March 20, with usage on each plan
    fund(customer, "100", now=day(1))
    send(customer, 1200, now=day(5), at=day(5))  # Prepaid: 11.00
    first = subscription_upgrade(subscription=subscription, new_plan=scale_plan(product, tokens), now=AT)
    send(customer, 700, now=day(15), at=day(15))  # Scale: 10.80
    max_plan = scale_plan(product, tokens)
    second_at = day(20)
    second = subscription_upgrade(subscription=subscription, new_plan=max_plan, now=second_at)
    send(customer, 100, now=day(25), at=day(25))  # Max, from zero: 2.00

    # then the second change invoice bills Scale's part only (March 10 – 20) against Scale's debits
    assert lines(second) == [
        (LineKind.USAGE, "Tokens: 700 tokens (Mar 10, 2026 – Mar 20, 2026)", Decimal("10.8000")),
        (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-10.80")),
    ]
    assert second.amount_due == Decimal("0.00")
    assert [(start, cost) for start, cost, _ in debits_of(subscription)] == [
        (MARCH, Decimal("11")),
        (AT, Decimal("10.8")),
        (second_at, Decimal("2")),
    ]
    invoices = [issue(first, at=day(21)), issue(second, at=day(21)), issue(recurring(subscription))]
    march = invoices[-1]
    assert lines(march) == [
        (LineKind.USAGE, "Tokens: 100 tokens (Mar 20, 2026 – Mar 31, 2026)", Decimal("2.0000")),
        (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-2.00")),
    ]
    assert [invoice.amount_due for invoice in invoices] == [Decimal("0.00")] * 3
    assert credit_consumed(customer) == Decimal("23.8")
    assert SubscriptionPlanChange.objects.filter(subscription=subscription).count() == 2


def test_usage_cost_of_the_period_adds_both_plans_parts(customer, subscription, product, tokens):
    fund(customer, "100", now=day(1))
    send(customer, 1200, now=day(5), at=day(5))
    subscription_upgrade(subscription=subscription, new_plan=scale_plan(product, tokens), now=AT)
    send(customer, 700, now=day(15), at=day(15))

    [cost] = customer_usage_cost(customer=customer, now=day(16))

    assert (cost.period_start, cost.debited, cost.covered_by_credit, cost.overage) == (
        MARCH,
        Decimal("21.8"),
        Decimal("21.8"),
        Decimal("0"),
    )


def test_switched_to_post_paid_inside_the_period_the_invoice_still_settles_the_debits(customer, subscription):
    # given 10 of credit and 12.50 debited (2.50 overage), then the subscription switched to post-paid
    fund(customer, "10", now=day(1))
    send(customer, 1500, now=day(5), at=day(5))
    subscription.billing_mode = BillingMode.POST_PAID
    subscription.save(update_fields=["billing_mode"])
    assert send(customer, 100, now=day(15), at=day(15)).debits == []  # 1,600 tokens: 13.00

    # when March is closed by the billing run and issued
    march = recurring(subscription)
    assert march.status == InvoiceStatus.DRAFT
    march = issue(march)

    # then the debits already made are paid from credit and their overage billed once
    assert lines(march) == [
        (LineKind.USAGE, "Tokens: 1,600 tokens (Mar 1, 2026 – Mar 31, 2026)", Decimal("13.0000")),
        (LineKind.PREPAID, "Paid from prepaid balance", Decimal("-10.00")),
    ]
    assert (march.total, march.amount_due) == (Decimal("13.00"), Decimal("3.00"))
    wallet = Wallet.objects.get(customer=customer)
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal(0), Decimal(0))
    assert credit_consumed(customer) + march.amount_due == Decimal("13.00")


def test_upgrade_on_a_test_clock_settles_each_plan_once(customer, merchant, real_time_plan, product, tokens):
    from invoicing.services import test_clock_advance, test_clock_create
    from tests.factories import SubscriptionFactory

    # given a real-time subscription living on a test clock (the wall clock is far ahead)
    wall = datetime(2026, 6, 1, tzinfo=MARCH.tzinfo)
    clock = test_clock_create(merchant=merchant, current_time=day(5) + timedelta(hours=3))
    subscription = SubscriptionFactory(
        plan=real_time_plan,
        merchant=merchant,
        customer=customer,
        started_at=MARCH,
        billing_anchor=MARCH,
        test_clock=clock,
    )
    fund(customer, "10", now=day(1))
    send(customer, 800, now=wall, at=day(5))
    test_clock_advance(test_clock=clock, to=day(8) + timedelta(hours=3), now=wall)
    send(customer, 400, now=wall, at=day(8))

    # when the clock reaches March 10, noon and the subscription upgrades (at the clock's time)
    test_clock_advance(test_clock=clock, to=AT, now=wall)
    change = subscription_upgrade(subscription=subscription, new_plan=scale_plan(product, tokens), now=wall)
    test_clock_advance(test_clock=clock, to=day(20) + timedelta(hours=3), now=wall)
    send(customer, 700, now=wall, at=day(20))
    # and the clock moves past March and both invoices' grace periods
    test_clock_advance(test_clock=clock, to=APRIL + timedelta(days=3), now=wall)

    # then the change invoice (issued when its grace ended) settled the old plan, March the new one
    change.refresh_from_db()
    march = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=MARCH)
    assert (change.status, change.period_end, change.total, change.amount_due) == (
        InvoiceStatus.ISSUED,
        AT,
        Decimal("11.00"),
        Decimal("1.00"),
    )
    assert (march.status, march.total, march.amount_due) == (InvoiceStatus.ISSUED, Decimal("10.80"), Decimal("10.80"))
    assert [(start, cost) for start, cost, _ in debits_of(subscription)] == [
        (MARCH, Decimal("8")),
        (MARCH, Decimal("3")),
        (AT, Decimal("10.8")),
    ]
    wallet = Wallet.objects.get(customer=customer)
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal(0), Decimal(0))
    assert credit_consumed(customer) + change.amount_due + march.amount_due == Decimal("21.80")

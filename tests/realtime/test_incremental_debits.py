"""Each accepted event of a real-time subscription debits rate(after) − rate(before) of its period."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import BillingMode, PriceModel
from catalog.pricing import rate
from catalog.pricing_adapter import price_spec_from_price
from invoicing.realtime import events_ingest_and_debit
from metering.models import UsageEvent
from tests.factories import CustomerFactory, MeteredPriceFactory, PlanFactory, SubscriptionFactory
from tests.wallets.conftest import assert_ledger_consistent
from wallets.models import EntryKind, LedgerEntry, Wallet
from wallets.selectors import period_debits

from .conftest import APRIL, MARCH, NOW, balance, event, fund, send

pytestmark = pytest.mark.django_db


def debits(customer) -> list[Decimal]:
    return [
        -entry.amount
        for entry in LedgerEntry.objects.filter(wallet__customer=customer, kind=EntryKind.USAGE_DEBIT).order_by(
            "sequence"
        )
    ]


def test_debits_across_a_tier_boundary_add_up_to_the_period_price(customer, subscription):
    # given $100 of credit
    fund(customer, "100")

    # when 600, 600 and 300 tokens arrive one by one
    for tokens_used in (600, 600, 300):
        outcome = send(customer, tokens_used)
        assert outcome.counts == {"accepted": 1, "duplicate": 0, "rejected": 0}

    # then the second event is priced partly in each tier, and the debits equal the engine's price of 1,500
    assert debits(customer) == [Decimal("6"), Decimal("5"), Decimal("1.5")]  # 400×0.01 + 200×0.005 = 5
    price = subscription.plan.prices.get()
    assert rate(price_spec_from_price(price), Decimal(1500)).amount == Decimal("12.5")
    assert balance(customer) == Decimal("87.5")
    totals = period_debits(subscription_id=subscription.pk, period_start=MARCH, period_end=APRIL)
    assert (totals.debited, totals.overage) == (Decimal("12.5"), Decimal(0))
    assert_ledger_consistent(Wallet.objects.get(customer=customer))


def test_debit_entry_records_subscription_metric_period_and_event(customer, subscription, tokens):
    fund(customer, "10")
    outcome = send(customer, 100)

    entry = LedgerEntry.objects.get(wallet__customer=customer, kind=EntryKind.USAGE_DEBIT)
    assert entry.subscription_id == subscription.pk
    assert entry.metric_id == tokens.pk
    assert (entry.period_start, entry.period_end) == (MARCH, APRIL)
    assert entry.event_ids == [f"evt_{outcome.accepted[0].id}"]
    assert entry.amount == Decimal("-1")
    [debit] = outcome.debits
    assert (debit.usage_before, debit.usage_after, debit.amount) == (Decimal(0), Decimal(100), Decimal(1))


def test_free_allowance_is_consumed_before_any_debit(customer, product, tokens):
    # given a standard price of 0.01 with the first 100 tokens free
    plan = PlanFactory(product=product, merchant=product.merchant, billing_mode=BillingMode.REAL_TIME)
    MeteredPriceFactory(
        plan=plan, billable_metric=tokens, model=PriceModel.STANDARD, unit_price=Decimal("0.01"), free_units=100
    )
    SubscriptionFactory(plan=plan, merchant=plan.merchant, customer=customer, started_at=MARCH)
    fund(customer, "10")

    # when 60 tokens, then 30, then 40 arrive
    send(customer, 60)
    send(customer, 30)
    assert debits(customer) == []  # still inside the allowance: nothing debited
    send(customer, 40)

    # then only the 30 tokens over the allowance are debited
    assert debits(customer) == [Decimal("0.3")]
    assert balance(customer) == Decimal("9.7")


def test_a_batch_debits_once_per_customer_and_price_for_its_whole_increment(customer, subscription):
    fund(customer, "100")
    send(customer, 500)

    # when one request carries three events crossing the tier boundary
    outcome = send(customer, 300, 400, 100)

    # then one debit pays for the three: rate(1,300) − rate(500) = 10 + 1.5 − 5
    assert outcome.counts["accepted"] == 3
    assert debits(customer) == [Decimal("5"), Decimal("6.5")]
    [debit] = outcome.debits
    assert debit.event_ids == tuple(sorted(e.id for e in outcome.accepted))
    assert balance(customer) == Decimal("88.5")


def test_a_batch_spread_over_customers_debits_each_exactly(merchant, subscription, real_time_plan):
    other = CustomerFactory(merchant=merchant, time_zone="UTC")
    SubscriptionFactory(plan=real_time_plan, merchant=merchant, customer=other, started_at=MARCH)
    customer = subscription.customer
    fund(customer, "50")
    fund(other, "50")

    outcome = events_ingest_and_debit(
        merchant=merchant,
        raw_events=[event(customer, 900), event(other, 200), event(customer, 200), event(other, 50)],
        now=NOW,
    )

    assert outcome.counts["accepted"] == 4
    assert debits(customer) == [Decimal("10.5")]  # 1,100 tokens: 1,000×0.01 + 100×0.005
    assert debits(other) == [Decimal("2.5")]  # 250×0.01
    assert (balance(customer), balance(other)) == (Decimal("39.5"), Decimal("47.5"))


def test_a_resent_event_is_never_debited_twice(customer, subscription):
    fund(customer, "100")
    first = send(customer, 700, keys=["req-1"])

    # when the same idempotency key comes again, alone and inside a batch (twice)
    again = send(customer, 700, keys=["req-1"])
    batch = send(customer, 700, 700, 100, keys=["req-1", "req-2", "req-2"])

    assert again.counts == {"accepted": 0, "duplicate": 1, "rejected": 0}
    assert again.debits == []
    assert batch.counts == {"accepted": 1, "duplicate": 2, "rejected": 0}
    assert UsageEvent.objects.filter(customer=customer).count() == 2
    # then 700 and 700 tokens are debited once each: 7, then 300×0.01 + 400×0.005 = 5
    assert debits(customer) == [Decimal("7"), Decimal("5")]
    assert first.debits[0].amount == Decimal("7")


def test_a_post_paid_subscription_is_not_debited(customer, product, tokens):
    plan = PlanFactory(product=product, merchant=product.merchant)  # post-paid by default
    MeteredPriceFactory(plan=plan, billable_metric=tokens, unit_price=Decimal("0.01"))
    SubscriptionFactory(plan=plan, merchant=plan.merchant, customer=customer, started_at=MARCH)

    outcome = send(customer, 500)

    assert outcome.counts["accepted"] == 1
    assert outcome.debits == []
    assert not LedgerEntry.objects.filter(wallet__customer=customer).exists()
    assert not Wallet.objects.filter(customer=customer).exists()


def test_a_subscription_override_makes_a_post_paid_plan_real_time_and_back(customer, product, tokens):
    plan = PlanFactory(product=product, merchant=product.merchant)
    MeteredPriceFactory(plan=plan, billable_metric=tokens, unit_price=Decimal("0.01"))
    subscription = SubscriptionFactory(
        plan=plan, merchant=plan.merchant, customer=customer, started_at=MARCH, billing_mode=BillingMode.REAL_TIME
    )
    fund(customer, "10")

    send(customer, 100)
    subscription.billing_mode = BillingMode.POST_PAID
    subscription.save()
    send(customer, 100)

    assert debits(customer) == [Decimal("1")]


def test_usage_in_a_trial_is_not_debited(customer, real_time_plan):
    from datetime import timedelta

    SubscriptionFactory(
        plan=real_time_plan,
        merchant=real_time_plan.merchant,
        customer=customer,
        started_at=MARCH,
        trial_ends_at=NOW + timedelta(days=1),
    )
    fund(customer, "10")

    outcome = send(customer, 100)

    assert outcome.counts["accepted"] == 1
    assert debits(customer) == []

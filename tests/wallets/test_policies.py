"""What happens when the credit runs out: block, allow overage, automatic top-up; low-balance notices."""

from decimal import Decimal

import pytest

from wallets.errors import InsufficientBalance, InvalidAmount
from wallets.models import BalancePolicy, CreditLot, EntryKind, LedgerEntry, Wallet, WebhookDelivery
from wallets.selectors import overage_for_period, wallets_below_threshold
from wallets.services import credit_grant, credit_top_up, usage_debit, wallet_policy_update

from .conftest import assert_ledger_consistent
from .factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


def _debit(customer, now, amount, **kwargs):
    return usage_debit(customer=customer, currency="USD", amount=Decimal(amount), now=now, **kwargs)


def test_block_refuses_the_debit_that_would_overdraw_and_writes_nothing(customer, now):
    # given $10 of credit under the block policy
    credit_top_up(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="t", now=now)
    wallet_policy_update(customer=customer, currency="USD", policy=BalancePolicy.BLOCK, now=now)
    _debit(customer, now, "7")
    entries_before = LedgerEntry.objects.count()

    # when a $3.01 debit arrives with $3 left
    with pytest.raises(InsufficientBalance) as refused:
        _debit(customer, now, "3.01", idempotency_key="evt-2")

    # then
    assert (refused.value.available, refused.value.required) == (Decimal("3"), Decimal("3.01"))
    assert LedgerEntry.objects.count() == entries_before
    assert CreditLot.objects.get().remaining == Decimal("3")
    wallet = assert_ledger_consistent(Wallet.objects.get())
    assert wallet.balance == Decimal("3")
    # and exactly the remaining credit still passes
    assert _debit(customer, now, "3").balance_after == Decimal("0")


def test_block_without_any_wallet_refuses_without_creating_one(customer, now):
    from wallets.services import DEFAULT_POLICY

    assert DEFAULT_POLICY == BalancePolicy.ALLOW_OVERAGE
    other = customer.__class__.objects.create(merchant=customer.merchant, name="New", email="n@example.com")
    wallet_policy_update(customer=customer, currency="USD", policy=BalancePolicy.BLOCK, now=now)

    with pytest.raises(InsufficientBalance):
        _debit(customer, now, "0.01")
    # a customer without a wallet follows the default policy: usage becomes overage
    assert _debit(other, now, "0.01").overage == Decimal("0.01")


def test_allow_overage_lets_the_balance_go_negative_and_records_the_overage(customer, now):
    # given
    subscription_id = _subscription_for(customer).pk
    period = {"period_start": now.replace(day=1), "period_end": now.replace(month=4, day=1)}
    credit_top_up(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="t", now=now)
    wallet_policy_update(customer=customer, currency="USD", policy=BalancePolicy.ALLOW_OVERAGE, now=now)

    # when
    first = _debit(customer, now, "8", subscription_id=subscription_id, **period)
    second = _debit(customer, now, "4.5", subscription_id=subscription_id, **period)

    # then
    assert (first.covered_by_credit, first.overage) == (Decimal("8"), Decimal("0"))
    assert (second.covered_by_credit, second.overage, second.balance_after) == (
        Decimal("2"),
        Decimal("2.5"),
        Decimal("-2.5"),
    )
    assert overage_for_period(subscription_id=subscription_id, **period) == Decimal("2.5")
    assert assert_ledger_consistent(Wallet.objects.get()).overage_outstanding == Decimal("2.5")


def test_auto_top_up_fires_once_per_crossing_of_the_threshold(customer, now):
    # given $30 of credit, top up $4 when the balance falls under $20
    credit_top_up(customer=customer, currency="USD", amount=Decimal("30"), idempotency_key="t", now=now)
    wallet_policy_update(
        customer=customer,
        currency="USD",
        policy=BalancePolicy.AUTO_TOP_UP,
        auto_top_up_threshold=Decimal("20"),
        auto_top_up_amount=Decimal("4"),
        now=now,
    )

    # when the balance crosses under $20 (30 − 15 + 4 = 19), then two more debits stay under it
    crossing = _debit(customer, now, "15")
    below = [_debit(customer, now, "3"), _debit(customer, now, "3")]

    # then one top-up for the crossing, none for the debits while still under the threshold
    assert (crossing.auto_top_up.amount, crossing.balance_after) == (Decimal("4"), Decimal("19"))
    assert [b.auto_top_up for b in below] == [None, None]
    wallet = assert_ledger_consistent(Wallet.objects.get())
    assert (wallet.balance, wallet.auto_top_up_armed) == (Decimal("13"), False)
    assert LedgerEntry.objects.filter(kind=EntryKind.AUTO_TOP_UP).count() == 1

    # when a grant lifts the balance back above the threshold (23), the next crossing fires again
    credit_grant(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="g", now=now)
    assert Wallet.objects.get().auto_top_up_armed is True
    again = _debit(customer, now, "10")
    assert (again.auto_top_up.amount, again.balance_after) == (Decimal("4"), Decimal("17"))
    assert LedgerEntry.objects.filter(kind=EntryKind.AUTO_TOP_UP).count() == 2
    assert_ledger_consistent(Wallet.objects.get())


def test_auto_top_up_covers_a_debit_larger_than_the_credit(customer, now):
    wallet_policy_update(
        customer=customer,
        currency="USD",
        policy=BalancePolicy.AUTO_TOP_UP,
        auto_top_up_threshold=Decimal("5"),
        auto_top_up_amount=Decimal("10"),
        now=now,
    )

    outcome = _debit(customer, now, "25")

    assert outcome.auto_top_up.amount == Decimal("25")
    assert (outcome.overage, outcome.balance_after) == (Decimal("0"), Decimal("0"))


def test_auto_top_up_needs_a_threshold_and_an_amount(customer, now):
    with pytest.raises(InvalidAmount):
        wallet_policy_update(customer=customer, currency="USD", policy=BalancePolicy.AUTO_TOP_UP, now=now)


def test_low_balance_notice_fires_once_until_the_balance_recovers(customer, now):
    # given an endpoint for balance notices and a $10 threshold
    endpoint = WebhookEndpointFactory(merchant=customer.merchant, event_types=["balance.low"])
    WebhookEndpointFactory(merchant=customer.merchant, event_types=["invoice.issued"])
    credit_top_up(customer=customer, currency="USD", amount=Decimal("25"), idempotency_key="t", now=now)
    wallet_policy_update(
        customer=customer,
        currency="USD",
        policy=BalancePolicy.ALLOW_OVERAGE,
        low_balance_threshold=Decimal("10"),
        now=now,
    )

    # when the balance falls under it twice, recovers, and falls again
    _debit(customer, now, "16")
    _debit(customer, now, "1")
    assert list(wallets_below_threshold()) == [Wallet.objects.get()]
    credit_top_up(customer=customer, currency="USD", amount=Decimal("50"), idempotency_key="t2", now=now)
    assert list(wallets_below_threshold()) == []
    _debit(customer, now, "55")

    # then two notices, to the subscribed endpoint only
    deliveries = list(WebhookDelivery.objects.order_by("created_at", "id"))
    assert [(d.endpoint_id, d.event_type) for d in deliveries] == [(endpoint.pk, "balance.low.v0")] * 2
    assert deliveries[0].payload["data"] == {
        "customerId": customer.pk,
        "walletId": Wallet.objects.get().pk,
        "currency": "USD",
        "balance": "9",
        "available": "9",
        "threshold": "10",
    }


def _subscription_for(customer):
    from tests.factories import PlanFactory, SubscriptionFactory

    plan = PlanFactory(merchant=customer.merchant, product__merchant=customer.merchant)
    return SubscriptionFactory(plan=plan, merchant=customer.merchant, customer=customer)

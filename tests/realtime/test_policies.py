"""When the prepaid balance runs out: block, allow overage, auto top-up; the low-balance notice."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metering.models import UsageEvent
from tests.wallets.factories import WebhookEndpointFactory
from wallets.models import EntryKind, LedgerEntry, Wallet, WebhookDelivery
from wallets.services import wallet_policy_update

from .conftest import balance, fund, send

pytestmark = pytest.mark.django_db


def test_block_refuses_the_event_that_would_overdraw_and_accepts_the_next_affordable_one(customer, subscription):
    fund(customer, "5", policy="block")

    # when an event costing $6 arrives
    refused = send(customer, 600)

    # then it is refused, not stored, and the balance is unchanged
    assert refused.counts == {"accepted": 0, "duplicate": 0, "rejected": 1}
    refusal = refused.refusals[0]
    assert (refusal.currency, refusal.available, refusal.required) == ("USD", Decimal(5), Decimal(6))
    assert refused.results[0].errors[0]["field"] == "subject"
    assert "Insufficient prepaid balance" in refused.results[0].errors[0]["message"]
    assert not UsageEvent.objects.filter(customer=customer).exists()
    assert balance(customer) == Decimal(5)

    # when an event costing $3 arrives next, it is accepted and debited
    accepted = send(customer, 300)
    assert accepted.counts["accepted"] == 1
    assert balance(customer) == Decimal(2)
    assert UsageEvent.objects.filter(customer=customer).count() == 1


def test_block_in_a_batch_rejects_only_the_items_that_do_not_fit(customer, subscription):
    fund(customer, "5", policy="block")

    # when one request carries $3, $6 and $1 of usage
    outcome = send(customer, 300, 600, 100, keys=["a", "b", "c"])

    # then the first and the last are kept and debited; the middle one is refused and not stored
    assert [r.status for r in outcome.results] == ["accepted", "rejected", "accepted"]
    assert list(outcome.refusals) == [1]
    assert outcome.refusals[1].required == Decimal(6)
    assert outcome.refusals[1].available == Decimal(2)
    assert sorted(UsageEvent.objects.filter(customer=customer).values_list("idempotency_key", flat=True)) == [
        "a",
        "c",
    ]
    assert [e.index for e in outcome.accepted] == [0, 2]
    assert balance(customer) == Decimal(1)
    # the refused key can be sent again once the balance allows it
    fund(customer, "10", policy="block")
    again = send(customer, 600, keys=["b"])
    assert again.counts["accepted"] == 1


def test_allow_overage_accepts_and_leaves_the_uncovered_part_for_the_invoice(customer, subscription):
    fund(customer, "5", policy="allow_overage")

    outcome = send(customer, 600)

    assert outcome.counts["accepted"] == 1
    [debit] = outcome.debits
    assert (debit.amount, debit.covered_by_credit, debit.overage) == (Decimal(6), Decimal(5), Decimal(1))
    wallet = Wallet.objects.get(customer=customer)
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal(-1), Decimal(1))


def test_auto_top_up_fires_once_per_crossing(customer, subscription, now):
    fund(customer, "10")
    wallet_policy_update(
        customer=customer,
        currency="USD",
        policy="auto_top_up",
        now=now,
        auto_top_up_threshold=Decimal(5),
        auto_top_up_amount=Decimal(20),
    )

    send(customer, 400)  # balance 6: above the threshold
    assert not LedgerEntry.objects.filter(kind=EntryKind.AUTO_TOP_UP).exists()
    crossing = send(customer, 200)  # would go to 4: one top-up of 20 first
    send(customer, 100)  # 23: above the threshold again, no second top-up
    send(customer, 100)  # 22

    assert crossing.debits[0].auto_top_up is True
    assert LedgerEntry.objects.filter(kind=EntryKind.AUTO_TOP_UP).count() == 1
    assert balance(customer) == Decimal(22)


def test_low_balance_notice_is_queued_once(customer, subscription, now):
    WebhookEndpointFactory(merchant=customer.merchant)
    fund(customer, "10")
    wallet_policy_update(
        customer=customer, currency="USD", policy="allow_overage", now=now, low_balance_threshold=Decimal(3)
    )

    send(customer, 500)  # 5 left
    send(customer, 300)  # 2 left: under the threshold
    send(customer, 100)  # 1 left: still under, no second notice

    [notice] = WebhookDelivery.objects.filter(event_type="balance.low.v0")
    assert notice.payload["data"]["balance"] == "2"
    wallet = Wallet.objects.get(customer=customer)
    assert wallet.low_balance_since == now

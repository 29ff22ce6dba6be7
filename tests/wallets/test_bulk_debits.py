"""usage_debits: many wallets' usage debits at once give exactly what usage_debit gives one by one."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from core.bulk import WriteBatch
from tests.factories import CustomerFactory
from wallets.errors import InsufficientBalance, LedgerImmutable, WalletError
from wallets.models import LedgerEntry, Wallet
from wallets.services import (
    UsageDebitRequest,
    credit_grant,
    credit_top_up,
    usage_debit,
    usage_debits,
    wallet_lock,
    wallet_policy_update,
)

from .conftest import NOW, assert_ledger_consistent

pytestmark = pytest.mark.django_db

# (name, policy, thresholds, credits [(kind, amount, expires in days or None)], amount debited, key)
CASES = [
    ("partly covered overage", "allow_overage", {}, [("grant", "5", None)], "8", "k1"),
    ("refused", "block", {}, [("grant", "5", None)], "8", "k2"),
    ("expiring grant first", "block", {}, [("top_up", "10", None), ("grant", "3", 5)], "5", "k3"),
    ("no credit at all", "allow_overage", {}, [], "2.5", "k4"),
    ("low-balance crossing", "allow_overage", {"low_balance_threshold": Decimal(4)}, [("grant", "10", None)], "7", ""),
    (
        "automatic top-up (one by one)",
        "auto_top_up",
        {"auto_top_up_threshold": Decimal(5), "auto_top_up_amount": Decimal(20)},
        [("grant", "6", None)],
        "3",
        "k6",
    ),
    ("zero cost", "block", {}, [("grant", "1", None)], "0", "k7"),
    ("replayed key", "allow_overage", {}, [("grant", "10", None)], "4", "replay"),
]


def _prepare(merchant, case, suffix):
    name, policy, thresholds, credits, _, key = case
    customer = CustomerFactory(merchant=merchant, name=f"{name} {suffix}", currency="USD")
    wallet_policy_update(customer=customer, currency="USD", policy=policy, now=NOW, **thresholds)
    for n, (kind, amount, days) in enumerate(credits):
        add = credit_grant if kind == "grant" else credit_top_up
        expires = NOW + timedelta(days=days) if days else None
        add(
            customer=customer,
            currency="USD",
            amount=Decimal(amount),
            idempotency_key=f"c{n}",
            now=NOW,
            expires_at=expires,
        )
    if key == "replay":
        usage_debit(customer=customer, currency="USD", amount=Decimal(4), now=NOW, idempotency_key="replay")
    return customer


def _outcome(result):
    if isinstance(result, InsufficientBalance):
        return ("refused", result.available, result.required)
    return (result.amount, result.covered_by_credit, result.overage, result.balance_after, result.replayed)


def _state(customer):
    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer, currency="USD"))
    entries = [(e.kind, e.amount, e.overage_amount, e.balance_after, e.idempotency_key) for e in wallet.entries.all()]
    return (wallet.balance, wallet.overage_outstanding, wallet.low_balance_since, wallet.auto_top_up_armed, entries)


@pytest.mark.parametrize("batched", [False, True], ids=["at once", "in a batch"])
def test_bulk_debits_match_one_by_one_debits(merchant, batched):
    # given two identical customers per case
    singles = [_prepare(merchant, case, "one by one") for case in CASES]
    bulk = [_prepare(merchant, case, "bulk") for case in CASES]
    batch = WriteBatch() if batched else None

    # when the first set is debited one by one and the second in one usage_debits call
    expected = []
    for customer, case in zip(singles, CASES, strict=True):
        try:
            result = usage_debit(
                customer=customer,
                currency="USD",
                amount=Decimal(case[4]),
                now=NOW,
                idempotency_key=case[5],
            )
        except InsufficientBalance as refused:
            result = refused
        expected.append(_outcome(result))
    with transaction.atomic():
        wallets = [wallet_lock(customer=customer, currency="USD") for customer in bulk]
        results = usage_debits(
            requests=[
                UsageDebitRequest(wallet=wallet, customer=customer, amount=Decimal(case[4]), idempotency_key=case[5])
                for wallet, customer, case in zip(wallets, bulk, CASES, strict=True)
            ],
            now=NOW,
            batch=batch,
        )
        if batch is not None:
            batch.execute()

    # then every outcome and every ledger is the same
    assert [_outcome(r) for r in results] == expected
    assert expected[0] == (Decimal(8), Decimal(5), Decimal(3), Decimal(-3), False)
    assert expected[1][0] == "refused"
    assert expected[7][4] is True
    for one, other in zip(singles, bulk, strict=True):
        assert _state(one) == _state(other)


def _columns(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in type(row)._meta.concrete_fields}


def test_a_batched_debit_is_written_when_the_batch_is_executed_and_its_entry_is_the_stored_row(merchant):
    # given a customer with an expiring grant and a top-up (the debit takes from both lots)
    customer = _prepare(merchant, CASES[2], "batched")
    batch = WriteBatch()

    with transaction.atomic():
        wallet = wallet_lock(customer=customer, currency="USD")
        [result] = usage_debits(
            requests=[UsageDebitRequest(wallet=wallet, customer=customer, amount=Decimal(5), idempotency_key="b1")],
            now=NOW,
            batch=batch,
        )
        # then nothing is written before the batch is executed
        assert not LedgerEntry.objects.filter(pk=result.entry.pk).exists()
        assert Wallet.objects.get(pk=wallet.pk).balance == Decimal(13)
        batch.execute()

    # and then the entry returned is the stored row, column for column, and append-only like one read
    stored = LedgerEntry.objects.get(pk=result.entry.pk)
    assert _columns(result.entry) == _columns(stored)
    assert result.entry.wallet is wallet and result.entry.get_deferred_fields() == set()
    assert Wallet.objects.get(pk=wallet.pk).balance == Decimal(8)
    with pytest.raises(LedgerImmutable):
        result.entry.save()


def test_one_request_per_wallet(merchant):
    customer = CustomerFactory(merchant=merchant, currency="USD")
    with transaction.atomic():
        wallet = wallet_lock(customer=customer, currency="USD")
        request = UsageDebitRequest(wallet=wallet, customer=customer, amount=Decimal(1))
        with pytest.raises(WalletError):
            usage_debits(requests=[request, request], now=NOW)


def test_fresh_keys_skip_the_replay_look_up(merchant, django_assert_num_queries):
    # given three funded wallets, locked
    customers = [CustomerFactory(merchant=merchant, currency="USD") for _ in range(3)]
    for customer in customers:
        credit_grant(customer=customer, currency="USD", amount=Decimal(10), idempotency_key="g", now=NOW)
    with transaction.atomic():
        wallets = [wallet_lock(customer=customer, currency="USD") for customer in customers]
        requests = [
            UsageDebitRequest(wallet=wallet, customer=customer, amount=Decimal("2.5"), idempotency_key=f"rt:{n}")
            for n, (wallet, customer) in enumerate(zip(wallets, customers, strict=True))
        ]

        # when they are debited with keys the caller guarantees are new
        with django_assert_num_queries(5):  # lots, entries, allocations, lots update, wallets update
            results = usage_debits(requests=requests, now=NOW, new_keys=True)

    # then each is debited once, exactly
    assert [(r.amount, r.covered_by_credit, r.balance_after, r.replayed) for r in results] == [
        (Decimal("2.5"), Decimal("2.5"), Decimal("7.5"), False)
    ] * 3
    for customer in customers:
        assert_ledger_consistent(Wallet.objects.get(customer=customer, currency="USD"))

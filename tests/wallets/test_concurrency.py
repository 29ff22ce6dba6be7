"""Concurrent debits on one balance (PostgreSQL row locks): exact final balance, never overdrawn."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from tests.factories import CustomerFactory, MerchantFactory
from wallets.errors import InsufficientBalance
from wallets.models import BalancePolicy, EntryKind, LedgerEntry, Wallet
from wallets.services import credit_top_up, usage_debit, wallet_policy_update

from .conftest import NOW, assert_ledger_consistent

THREADS = 24


def _run_concurrently(work, count):
    barrier = threading.Barrier(count)

    def task(index):
        try:
            barrier.wait()
            return work(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_under_block_end_at_the_exact_balance():
    # given $100 of credit under the block policy
    customer = CustomerFactory(merchant=MerchantFactory())
    credit_top_up(customer=customer, currency="USD", amount=Decimal("100"), idempotency_key="t", now=NOW)
    wallet_policy_update(customer=customer, currency="USD", policy=BalancePolicy.BLOCK, now=NOW)

    # when 24 debits of $7.25 race (only 13 fit: 13 × 7.25 = 94.25)
    def debit(index):
        try:
            usage_debit(
                customer=customer, currency="USD", amount=Decimal("7.25"), idempotency_key=f"evt-{index}", now=NOW
            )
            return "debited"
        except InsufficientBalance:
            return "refused"

    outcomes = _run_concurrently(debit, THREADS)

    # then
    assert outcomes.count("debited") == 13
    assert outcomes.count("refused") == THREADS - 13
    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer))
    assert wallet.balance == Decimal("5.75")
    assert min(LedgerEntry.objects.filter(wallet=wallet).values_list("balance_after", flat=True)) == Decimal("5.75")
    assert LedgerEntry.objects.filter(kind=EntryKind.USAGE_DEBIT).count() == 13


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_event_debit_once_and_first_debits_create_one_wallet():
    customer = CustomerFactory(merchant=MerchantFactory())

    # when the same event is debited by 12 threads on a customer without a wallet yet
    _run_concurrently(
        lambda index: usage_debit(
            customer=customer, currency="USD", amount=Decimal("1.5"), idempotency_key="evt-same", now=NOW
        ),
        12,
    )

    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer))
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal("-1.5"), Decimal("1.5"))
    assert LedgerEntry.objects.count() == 1

"""Fixtures for the prepaid-ledger tests: a fixed clock, a customer, and the ledger invariants."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.factories import CustomerFactory
from wallets.models import CreditLot, LedgerEntry, LotKind, Wallet

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, name="Acme AI", currency="USD")


def assert_ledger_consistent(wallet: Wallet) -> Wallet:
    """The invariants every service keeps: the cached balance is the ledger's sum, every row's
    balance_after is the running total, and the open lots minus the outstanding overage make the balance."""
    wallet.refresh_from_db()
    running = Decimal(0)
    entries = list(LedgerEntry.objects.filter(wallet=wallet).order_by("sequence"))
    assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running, entry
    assert wallet.balance == running
    assert wallet.overage_outstanding == sum((e.overage_amount for e in entries), Decimal(0))
    lots = CreditLot.objects.filter(wallet=wallet, expired_at__isnull=True)
    assert wallet.balance == sum((lot.remaining for lot in lots), Decimal(0)) - wallet.overage_outstanding
    assert wallet.reserved_credit == sum((lot.remaining for lot in lots if lot.kind == LotKind.RESERVED), Decimal(0))
    for lot in CreditLot.objects.filter(wallet=wallet):
        assert lot.remaining == sum((a.amount for a in lot.allocations.all()), Decimal(0)), lot
    return wallet

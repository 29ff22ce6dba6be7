"""Expiring credit leaves by one ledger entry for its unused part, exactly once."""

from datetime import timedelta
from decimal import Decimal

import pytest

from wallets.models import CreditLot, EntryKind, LedgerEntry, Wallet
from wallets.services import credit_expire_due, credit_grant, credit_top_up, usage_debit
from wallets.tasks import credit_expire_due_task

from .conftest import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_the_unused_part_of_a_grant_expires_exactly_once(customer, now):
    # given a $50 grant expiring in 30 days, $20 paid credit, and $30.25 of usage
    expires_at = now + timedelta(days=30)
    grant = credit_grant(
        customer=customer, currency="USD", amount=Decimal("50"), idempotency_key="promo", expires_at=expires_at, now=now
    )
    credit_top_up(customer=customer, currency="USD", amount=Decimal("20"), idempotency_key="t1", now=now)
    usage_debit(customer=customer, currency="USD", amount=Decimal("30.25"), now=now + timedelta(days=1))

    # when the sweep runs before the expiry, then at it, then again
    assert credit_expire_due(now=expires_at - timedelta(seconds=1)) == []
    first = credit_expire_due(now=expires_at)
    second = credit_expire_due(now=expires_at + timedelta(days=1))

    # then one expiry entry removes the unused $19.75 of the grant; the paid credit stays
    assert [(e.kind, e.amount, e.lot_id) for e in first] == [(EntryKind.EXPIRY, Decimal("-19.75"), grant.lot.pk)]
    assert second == []
    assert LedgerEntry.objects.filter(kind=EntryKind.EXPIRY).count() == 1
    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer))
    assert wallet.balance == Decimal("20")
    assert wallet.expiring_credit == Decimal("0")
    assert wallet.next_expiry_at is None
    lot = CreditLot.objects.get(pk=grant.lot.pk)
    assert (lot.remaining, lot.expired_at) == (Decimal("0"), expires_at)


def test_a_fully_used_grant_expires_without_an_entry(customer, now):
    expires_at = now + timedelta(days=7)
    credit_grant(
        customer=customer, currency="USD", amount=Decimal("5"), idempotency_key="g", expires_at=expires_at, now=now
    )
    usage_debit(customer=customer, currency="USD", amount=Decimal("5"), now=now)

    assert credit_expire_due(now=expires_at) == []
    assert CreditLot.objects.get().expired_at == expires_at
    assert assert_ledger_consistent(Wallet.objects.get()).balance == Decimal("0")


def test_credit_past_its_expiry_pays_for_nothing_even_before_the_sweep(customer, now):
    expires_at = now + timedelta(hours=1)
    credit_grant(
        customer=customer, currency="USD", amount=Decimal("5"), idempotency_key="g", expires_at=expires_at, now=now
    )

    outcome = usage_debit(customer=customer, currency="USD", amount=Decimal("2"), now=expires_at)

    assert (outcome.covered_by_credit, outcome.overage) == (Decimal("0"), Decimal("2"))


def test_the_beat_task_runs_the_sweep(customer, now):
    credit_grant(
        customer=customer,
        currency="USD",
        amount=Decimal("5"),
        idempotency_key="g",
        expires_at=now + timedelta(minutes=1),
        now=now,
    )
    # the task reads the wall clock; the grant above is long expired by it (2026-03-10)
    assert credit_expire_due_task.delay().get() == 1
    assert credit_expire_due_task.delay().get() == 0

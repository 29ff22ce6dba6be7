"""Refunds of unused paid credit; the lock invoicing takes before pricing an event."""

from decimal import Decimal

import pytest
from django.db import transaction

from wallets.errors import InvalidAmount, WalletError
from wallets.models import EntryKind, LedgerEntry, Wallet
from wallets.services import credit_grant, credit_refund, credit_top_up, usage_debit, wallet_lock

from .conftest import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_unused_paid_credit_is_refunded_once_per_reference(customer, now):
    # given $100 paid, $30 used
    paid = credit_top_up(customer=customer, currency="USD", amount=Decimal("100"), idempotency_key="t", now=now)
    usage_debit(customer=customer, currency="USD", amount=Decimal("30"), now=now)

    # when
    refund = credit_refund(lot=paid.lot, amount=Decimal("70"), reference="cn_1", now=now)
    again = credit_refund(lot=paid.lot, amount=Decimal("70"), reference="cn_1", now=now)

    # then
    assert again.pk == refund.pk
    assert (refund.kind, refund.amount, refund.balance_after) == (EntryKind.REFUND, Decimal("-70"), Decimal("0"))
    assert LedgerEntry.objects.filter(kind=EntryKind.REFUND).count() == 1
    assert_ledger_consistent(Wallet.objects.get())


def test_more_than_the_unused_part_or_a_grant_cannot_be_refunded(customer, now):
    paid = credit_top_up(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="t", now=now)
    grant = credit_grant(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="g", now=now)
    usage_debit(customer=customer, currency="USD", amount=Decimal("12"), now=now)  # grant 10, then paid 2

    with pytest.raises(InvalidAmount, match="Only 8 USD of this credit is unused"):
        credit_refund(lot=paid.lot, amount=Decimal("8.01"), reference="cn_1", now=now)
    with pytest.raises(InvalidAmount):
        credit_refund(lot=grant.lot, amount=Decimal("1"), reference="cn_2", now=now)
    assert not LedgerEntry.objects.filter(kind=EntryKind.REFUND).exists()


@pytest.mark.django_db(transaction=True)
def test_wallet_lock_creates_the_wallet_inside_the_callers_transaction(customer):
    with pytest.raises(WalletError):
        wallet_lock(customer=customer, currency="USD")

    with transaction.atomic():
        wallet = wallet_lock(customer=customer, currency="USD")

    assert Wallet.objects.get().pk == wallet.pk
    assert wallet.balance == Decimal("0")

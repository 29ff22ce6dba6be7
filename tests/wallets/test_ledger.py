"""The ledger is append-only and the cached balance is always the ledger's sum."""

from datetime import timedelta
from decimal import Decimal

import pytest

from wallets.errors import InvalidAmount, LedgerImmutable
from wallets.models import EntryKind, LedgerAllocation, LedgerEntry, Wallet
from wallets.selectors import ledger_balance
from wallets.services import IdempotencyConflict, credit_grant, credit_top_up, usage_debit

from .conftest import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_a_ledger_entry_cannot_be_updated_or_deleted(customer, now):
    # given
    entry = credit_grant(customer=customer, currency="USD", amount=Decimal("50"), idempotency_key="g1", now=now).entry

    # when / then
    entry.amount = Decimal("5000")
    with pytest.raises(LedgerImmutable):
        entry.save()
    with pytest.raises(LedgerImmutable):
        entry.delete()
    with pytest.raises(LedgerImmutable):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("5000"))
    with pytest.raises(LedgerImmutable):
        LedgerEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(LedgerImmutable):
        LedgerAllocation.objects.filter(entry=entry).delete()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("50")


def test_balance_is_the_ledger_sum_after_every_kind_of_change(customer, now):
    # given / when
    credit_top_up(customer=customer, currency="USD", amount=Decimal("100"), idempotency_key="t1", now=now)
    credit_grant(customer=customer, currency="USD", amount=Decimal("20.5"), idempotency_key="g1", now=now)
    usage_debit(customer=customer, currency="USD", amount=Decimal("0.000002"), now=now, idempotency_key="e1")
    usage_debit(customer=customer, currency="USD", amount=Decimal("130"), now=now, idempotency_key="e2")

    # then: 100 + 20.5 − 0.000002 − 130 = −9.500002, of which 9.500002 is overage
    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer, currency="USD"))
    assert wallet.balance == Decimal("-9.500002")
    assert ledger_balance(wallet=wallet) == Decimal("-9.500002")
    assert wallet.overage_outstanding == Decimal("9.500002")
    assert wallet.available == Decimal("0")
    assert list(LedgerEntry.objects.filter(wallet=wallet).values_list("kind", "balance_after")) == [
        (EntryKind.TOP_UP, Decimal("100")),
        (EntryKind.GRANT, Decimal("120.5")),
        (EntryKind.USAGE_DEBIT, Decimal("120.499998")),
        (EntryKind.USAGE_DEBIT, Decimal("-9.500002")),
    ]


def test_a_replayed_grant_writes_nothing_and_a_changed_amount_is_refused(customer, now):
    first = credit_grant(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="promo", now=now)
    again = credit_grant(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="promo", now=now)

    assert again.replayed is True
    assert again.entry.pk == first.entry.pk
    with pytest.raises(IdempotencyConflict):
        credit_grant(customer=customer, currency="USD", amount=Decimal("11"), idempotency_key="promo", now=now)
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("amount", "expires_in"),
    [(Decimal("0"), None), (Decimal("-5"), None), (Decimal("5"), timedelta(0)), (5.0, None)],
)
def test_bad_credit_is_refused_before_anything_is_written(customer, now, amount, expires_in):
    with pytest.raises(InvalidAmount):
        credit_grant(
            customer=customer,
            currency="USD",
            amount=amount,
            idempotency_key="bad",
            now=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
    assert LedgerEntry.objects.count() == 0


def test_balances_are_kept_per_currency(customer, now):
    credit_top_up(customer=customer, currency="USD", amount=Decimal("100"), idempotency_key="t1", now=now)
    credit_top_up(customer=customer, currency="EUR", amount=Decimal("40"), idempotency_key="t1", now=now)
    usage_debit(customer=customer, currency="EUR", amount=Decimal("15"), now=now)

    balances = dict(Wallet.objects.filter(customer=customer).values_list("currency", "balance"))
    assert balances == {"USD": Decimal("100"), "EUR": Decimal("25")}

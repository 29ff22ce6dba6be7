"""``core.bulk.rows_update``: the hot paths' replacement for ``bulk_update`` writes exactly the
fields named, per row, at full Decimal precision, and leaves other rows and fields alone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.bulk import rows_update
from tests.factories import CustomerFactory
from wallets.models import CreditLot, Wallet

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_each_row_gets_its_own_values_and_only_the_named_fields(merchant):
    # given three wallets
    wallets = [
        Wallet.objects.create(merchant=merchant, customer=CustomerFactory(merchant=merchant), currency="USD")
        for _ in range(3)
    ]
    first, second, untouched = wallets

    # when two of them change balance (12 decimal places) and sequence, and a field not named changes too
    first.balance, first.last_sequence = Decimal("12.000000000001"), 4
    second.balance, second.last_sequence = Decimal("-0.000000000002"), 9
    first.overage_outstanding = Decimal("5")  # not in the field list: must not be written
    written = rows_update(Wallet, [first, second], ["balance", "last_sequence"])

    # then
    assert written == 2
    stored = {w.pk: w for w in Wallet.objects.all()}
    assert (stored[first.pk].balance, stored[first.pk].last_sequence) == (Decimal("12.000000000001"), 4)
    assert (stored[second.pk].balance, stored[second.pk].last_sequence) == (Decimal("-0.000000000002"), 9)
    assert stored[first.pk].overage_outstanding == 0
    assert (stored[untouched.pk].balance, stored[untouched.pk].last_sequence) == (0, 0)


def test_nothing_to_write_runs_no_query(merchant, django_assert_num_queries):
    wallet = Wallet.objects.create(merchant=merchant, customer=CustomerFactory(merchant=merchant), currency="USD")
    with django_assert_num_queries(0):
        assert rows_update(Wallet, [], ["balance"]) == 0
        assert rows_update(Wallet, [wallet], []) == 0


def test_json_dates_and_nulls_are_written_and_a_row_named_twice_keeps_the_last(merchant):
    # given a lot
    wallet = Wallet.objects.create(merchant=merchant, customer=CustomerFactory(merchant=merchant), currency="USD")
    lot = CreditLot.objects.create(
        wallet=wallet, kind="reserved", original_amount=Decimal(10), remaining=Decimal(10), created_at=T0
    )
    stale = CreditLot.objects.get(pk=lot.pk)

    # when a JSON list, a date and a null are written, and the same row is named again with other values
    stale.remaining, stale.metric_ids, stale.expires_at, stale.price_paid = Decimal(9), ["x"], None, None
    lot.remaining, lot.metric_ids, lot.expires_at, lot.price_paid = Decimal(7), ["bm_a", "bm_b"], T0, Decimal(6)
    rows_update(CreditLot, [stale, lot], ["remaining", "metric_ids", "expires_at", "price_paid"])

    # then the row holds the last object's values
    stored = CreditLot.objects.get(pk=lot.pk)
    assert (stored.remaining, stored.metric_ids, stored.expires_at, stored.price_paid) == (
        Decimal(7),
        ["bm_a", "bm_b"],
        T0,
        Decimal(6),
    )

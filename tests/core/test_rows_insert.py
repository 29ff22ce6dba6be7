"""``core.bulk.rows_insert`` and ``core.db.instances_select``: the real-time hot path's hand-written
writes and reads store and read back exactly what the ORM would (Decimals at 12 places, JSON, dates,
nulls), an upsert overwrites only the fields named, and joined rows become shared instances."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Customer, Subscription, TestClock
from core.bulk import rows_insert
from core.db import instances_select
from invoicing.models import RealtimeUsageCounter
from tests.factories import BillableMetricFactory, CustomerFactory, SubscriptionFactory
from wallets.models import LedgerEntry, PeriodDebitTotal, Wallet

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T1 = datetime(2026, 4, 1, tzinfo=UTC)
COLUMNS = ["id", "wallet_id", "sequence", "kind", "amount", "balance_after", "event_ids", "period_start", "lot_id"]
COUNTER = ["customer_id", "metric_id", "window_start", "window_end", "definition", "usage", "updated_at"]


def test_rows_are_inserted_with_every_value_type(merchant):
    # given a wallet
    wallet = Wallet.objects.create(merchant=merchant, customer=CustomerFactory(merchant=merchant), currency="USD")

    # when two entries are inserted by hand (12 decimal places, JSON, a date, nulls)
    rows = [
        ["le_a1", wallet.pk, 1, "grant", Decimal("10.000000000001"), Decimal("10.000000000001"), [], None, None],
        ["le_a2", wallet.pk, 2, "usage_debit", Decimal("-0.5"), Decimal("9.500000000001"), ["evt_1"], T0, None],
    ]
    rest = ["overage_amount", "idempotency_key", "reference", "description", "occurred_at", "created_at"]
    written = rows_insert(LedgerEntry, [*COLUMNS, *rest], [[*row, Decimal(0), "", "", "", T0, T1] for row in rows])

    # then the ORM reads them back as written
    assert written == 2
    assert list(LedgerEntry.objects.order_by("sequence").values_list(*COLUMNS, "occurred_at", "created_at")) == [
        (
            "le_a1",
            wallet.pk,
            1,
            "grant",
            Decimal("10.000000000001"),
            Decimal("10.000000000001"),
            [],
            None,
            None,
            T0,
            T1,
        ),
        ("le_a2", wallet.pk, 2, "usage_debit", Decimal("-0.5"), Decimal("9.500000000001"), ["evt_1"], T0, None, T0, T1),
    ]


def test_an_upsert_overwrites_only_the_fields_named(merchant):
    # given a counter
    customer = CustomerFactory(merchant=merchant)
    metric = BillableMetricFactory(merchant=merchant)
    rows_insert(RealtimeUsageCounter, COUNTER, [(customer.pk, metric.pk, T0, T1, "d1", Decimal("1.5"), T0)])

    # when the same key is written again with other values, upserting usage and updated_at only
    rows_insert(
        RealtimeUsageCounter,
        COUNTER,
        [(customer.pk, metric.pk, T0, T1, "d2", Decimal("7.000000000001"), T1)],
        unique_fields=["customer_id", "metric_id", "window_start", "window_end", "dimensions"],
        update_fields=["usage", "updated_at"],
    )

    # then there is still one row, with the new usage and time and the old definition
    assert list(RealtimeUsageCounter.objects.values_list("definition", "usage", "updated_at")) == [
        ("d1", Decimal("7.000000000001"), T1)
    ]


@pytest.mark.postgres_only  # SQLite adds NUMERIC as floating point: its callers add money in Python
def test_an_adding_upsert_adds_to_the_stored_values_exactly(merchant):
    # given a running total
    subscription = SubscriptionFactory(merchant=merchant, customer=CustomerFactory(merchant=merchant))
    fields = ["subscription_id", "period_start", "period_end", "debited", "overage", "entries"]
    key = (subscription.pk, T0, T1)
    rows_insert(PeriodDebitTotal, fields, [(*key, Decimal("0.000000000001"), Decimal(0), 1)])

    # when more arrives for the same key in one statement with a new key (an int among the Decimals)
    rows_insert(
        PeriodDebitTotal,
        fields,
        [(*key, Decimal("1000000.000000000002"), Decimal("0.5"), 2), (subscription.pk, T1, T1, Decimal(3), 0, 1)],
        unique_fields=["subscription_id", "period_start", "period_end"],
        add_fields=["debited", "overage", "entries"],
    )

    # then the stored row holds the exact sums and the new key its own values
    assert sorted(PeriodDebitTotal.objects.values_list("period_start", "debited", "overage", "entries")) == [
        (T0, Decimal("1000000.000000000003"), Decimal("0.5"), 3),
        (T1, Decimal(3), Decimal(0), 1),
    ]


def test_joined_rows_become_shared_instances_and_absent_ones_none(merchant):
    # given two subscriptions of one customer, one on a test clock
    customer = CustomerFactory(merchant=merchant)
    clock = TestClock.objects.create(merchant=merchant, current_time=T0)
    with_clock = SubscriptionFactory(merchant=merchant, customer=customer, test_clock=clock)
    without = SubscriptionFactory(merchant=merchant, customer=customer)

    # when they are read with their customer and clock by hand
    rows = instances_select(
        f"SELECT {{columns}} FROM {Subscription._meta.db_table} s JOIN {Customer._meta.db_table} c"
        f" ON c.id = s.customer_id LEFT JOIN {TestClock._meta.db_table} t ON t.id = s.test_clock_id"
        " WHERE s.customer_id = %s ORDER BY s.id",
        [customer.pk],
        ((Subscription, "s"), (Customer, "c"), (TestClock, "t")),
    )

    # then each row is complete instances, the customer one shared instance, the absent clock None
    by_id = {row[0].pk: row for row in rows}
    assert set(by_id) == {with_clock.pk, without.pk}
    assert by_id[with_clock.pk][0].started_at == with_clock.started_at
    assert by_id[with_clock.pk][1] is by_id[without.pk][1]
    assert by_id[with_clock.pk][1].name == customer.name
    assert by_id[with_clock.pk][2].current_time == T0
    assert by_id[without.pk][2] is None

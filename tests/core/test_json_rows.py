"""``core.bulk`` on PostgreSQL sends a write's rows as ONE JSON parameter, each value read back as text
and cast to its column's type: every value the hot paths write comes back exactly as given (Decimals
at every place, datetimes at the microsecond whatever their zone, NULLs, booleans, JSON, big integers,
text needing escapes), alone or in a combined ``WriteBatch``. On SQLite the same writes go by the
portable statements and read back the same."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from core.bulk import WriteBatch, rows_insert, rows_update
from invoicing.models import RealtimeUsageCounter
from tests.factories import BillableMetricFactory, CustomerFactory
from wallets.models import BalancePolicy, CreditLot, Wallet

pytestmark = pytest.mark.django_db

ON_POSTGRESQL = connection.vendor == "postgresql"
# 12:30:45.123456 in New York on 1 March 2026 (EST, UTC-5) is 17:30:45.123456 UTC.
NEW_YORK = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=ZoneInfo("America/New_York"))
NEW_YORK_UTC = datetime(2026, 3, 1, 17, 30, 45, 123456, tzinfo=UTC)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
T1 = datetime(2026, 4, 1, tzinfo=UTC)
COUNTER = ["customer_id", "metric_id", "window_start", "window_end", "dimensions", "definition", "usage"]
COUNTER += ["combinations", "updated_at"]
# Text a JSON document must escape: quotes, a backslash, a newline, non-ASCII and an emoji.
AWKWARD = 'say "hi" \\ now\nçà 🙂'


def _sent_as_json(captured) -> bool:
    """Each statement captured is one write of rows in one JSON parameter."""
    return all("jsonb_array_elements" in query["sql"] for query in captured)


@pytest.fixture
def wallet(merchant):
    return Wallet.objects.create(
        merchant=merchant,
        customer=CustomerFactory(merchant=merchant),
        currency="USD",
        low_balance_threshold=Decimal(5),
    )


def test_an_update_writes_every_column_type_exactly(wallet, django_assert_num_queries):
    # when a wallet gets 12 decimal places, an aware datetime with microseconds in another zone, a
    # NULL over a value, a boolean, a choice and a big integer
    wallet.balance = Decimal("-12.000000000001")
    wallet.next_expiry_at = NEW_YORK
    wallet.low_balance_threshold = None
    wallet.auto_top_up_armed = False
    wallet.policy = BalancePolicy.BLOCK
    wallet.last_sequence = 2**62 + 1
    fields = ["balance", "next_expiry_at", "low_balance_threshold", "auto_top_up_armed", "policy", "last_sequence"]
    with django_assert_num_queries(1) as captured:
        rows_update(Wallet, [wallet], fields)

    # then it reads back exactly
    assert not ON_POSTGRESQL or _sent_as_json(captured)
    assert Wallet.objects.values_list(*fields).get(pk=wallet.pk) == (
        Decimal("-12.000000000001"),
        NEW_YORK_UTC,
        None,
        False,
        "block",
        2**62 + 1,
    )


def test_an_insert_writes_json_nulls_and_escaped_text_exactly(merchant, django_assert_num_queries):
    # given a customer and a metric
    customer = CustomerFactory(merchant=merchant)
    metric = BillableMetricFactory(merchant=merchant)
    combinations = {"paths": ["$.model", AWKWARD], "usage": [[[AWKWARD, None], "0.000000000001"]], "n": [1, 2.5]}

    # when two counters are inserted: one with JSON holding awkward text, nulls and numbers, one with
    # a NULL JSON column, and text needing escapes in a plain column
    rows = [
        (customer.pk, metric.pk, T0, T1, "d" * 64, AWKWARD, Decimal("0.000000000001"), combinations, NEW_YORK),
        (customer.pk, metric.pk, T0, T1, "", "plain", Decimal(7), None, T1),
    ]
    with django_assert_num_queries(1) as captured:
        assert rows_insert(RealtimeUsageCounter, COUNTER, rows) == 2

    # then both read back as given
    assert not ON_POSTGRESQL or _sent_as_json(captured)
    stored = RealtimeUsageCounter.objects.order_by("-dimensions").values_list("definition", *COUNTER[6:])
    assert list(stored) == [
        (AWKWARD, Decimal("0.000000000001"), combinations, NEW_YORK_UTC),
        ("plain", Decimal(7), None, T1),
    ]
    # a NULL column, not a JSON null
    assert RealtimeUsageCounter.objects.filter(combinations__isnull=True).count() == 1


@pytest.mark.postgres_only  # SQLite keeps NUMERIC in binary floating point (15 significant digits)
def test_a_decimal_of_thirty_digits_is_not_read_through_a_float(wallet):
    # a value a float cannot hold (30 significant digits, the column's full precision)
    wallet.balance = Decimal("123456789012345678.000000000001")
    rows_update(Wallet, [wallet], ["balance"])
    metric = BillableMetricFactory(merchant=wallet.merchant)
    usage = Decimal("-999999999999999999.999999999999")
    rows_insert(RealtimeUsageCounter, COUNTER, [(wallet.customer_id, metric.pk, T0, T1, "", "d", usage, None, T1)])

    assert Wallet.objects.get(pk=wallet.pk).balance == Decimal("123456789012345678.000000000001")
    assert RealtimeUsageCounter.objects.get().usage == Decimal("-999999999999999999.999999999999")


def test_a_combined_batch_writes_each_table_exactly(wallet, merchant, django_assert_num_queries):
    # given a lot of the wallet and a metric
    lot = CreditLot.objects.create(
        wallet=wallet, kind="reserved", original_amount=Decimal(10), remaining=Decimal(10), created_at=T0
    )
    metric = BillableMetricFactory(merchant=merchant)

    # when one batch inserts a counter, updates the lot (JSON, NULL, datetime) and two wallet columns
    lot.remaining, lot.metric_ids, lot.price_paid, lot.expires_at = Decimal("9.999999999999"), [AWKWARD], None, NEW_YORK
    wallet.balance, wallet.auto_top_up_armed = Decimal("0.000000000001"), False
    batch = WriteBatch()
    rows_insert(
        RealtimeUsageCounter,
        COUNTER,
        [(wallet.customer_id, metric.pk, T0, T1, "", "d", Decimal("2.5"), None, NEW_YORK)],
        batch=batch,
    )
    rows_update(CreditLot, [lot], ["remaining", "metric_ids", "price_paid", "expires_at"], batch=batch)
    rows_update(Wallet, [wallet], ["balance", "auto_top_up_armed"], batch=batch)
    with django_assert_num_queries(1 if ON_POSTGRESQL else 3) as captured:
        batch.execute()

    # then every write is done, in one statement on PostgreSQL
    assert not ON_POSTGRESQL or captured[0]["sql"].count("jsonb_array_elements") == 3
    assert RealtimeUsageCounter.objects.values_list("usage", "updated_at").get() == (Decimal("2.5"), NEW_YORK_UTC)
    assert CreditLot.objects.values_list("remaining", "metric_ids", "price_paid", "expires_at").get(pk=lot.pk) == (
        Decimal("9.999999999999"),
        [AWKWARD],
        None,
        NEW_YORK_UTC,
    )
    assert Wallet.objects.values_list("balance", "auto_top_up_armed").get(pk=wallet.pk) == (
        Decimal("0.000000000001"),
        False,
    )

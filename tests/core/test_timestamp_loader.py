"""PostgreSQL timestamps are loaded by psycopg's C loader (core.db.timestamptz_loader_install) and
come back exactly as Django's own loader would give them: aware, in UTC, to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from catalog.models import Customer
from core.db import rows_select
from tests.factories import CustomerFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]

MOMENTS = [
    datetime(2026, 3, 1, tzinfo=UTC),
    datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
]


def test_the_connection_loads_timestamps_with_the_c_loader():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)  # timestamptz, text format
    assert loader.__name__ == "UtcTimestamptzLoader"
    assert loader.timezone is UTC  # what Django's create_cursor compares


@pytest.mark.parametrize("moment", MOMENTS)
def test_values_come_back_aware_utc_and_exact(moment):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::timestamptz, (%s::timestamptz AT TIME ZONE 'Asia/Kolkata') AT TIME ZONE 'Asia/Kolkata'",
            [moment, moment],
        )
        direct, converted = cursor.fetchone()
    assert direct == converted == moment
    assert direct.tzinfo is UTC and converted.tzinfo is UTC


def test_orm_and_hand_written_reads_agree(merchant):
    customer = CustomerFactory(merchant=merchant)
    stamp = datetime(2026, 3, 10, 12, 0, 0, 123456, tzinfo=UTC)
    Customer.objects.filter(pk=customer.pk).update(created_at=stamp)

    via_orm = Customer.objects.get(pk=customer.pk).created_at
    [(via_sql,)] = rows_select(
        "SELECT created_at FROM catalog_customer WHERE id = %s", [customer.pk], [(Customer, "created_at")]
    )
    assert via_orm == via_sql == stamp
    assert via_orm.tzinfo is UTC and via_sql.tzinfo is UTC
    assert via_orm + timedelta(0) == stamp

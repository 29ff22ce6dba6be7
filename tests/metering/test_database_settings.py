"""Connection settings the aggregation relies on (PostgreSQL only)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = [pytest.mark.django_db, pytest.mark.postgres_only]


def test_postgresql_jit_is_off_on_our_connections():
    # JIT compilation cost more than it saved on the all-customers usage aggregation (metering/README.md)
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


def test_prepared_statements_use_their_generic_plan():
    # Prepared hot-path statements are planned once per connection (metering/README.md, "Plans")
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("force_generic_plan",)


def test_a_prepared_statement_is_planned_once():
    # A keyed one-row read is the case "auto" re-plans every time (its custom plan looks cheaper).
    from core.db import planned_once_cursor

    statement = "SELECT count(*) FROM pg_class WHERE oid = %s AND relname <> %s"
    for oid in range(1, 13):
        with planned_once_cursor() as cursor:
            cursor.execute(statement, [oid, f"n{oid}"])
            cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%FROM pg_class WHERE oid = $1%"],
        )
        generic_plans, custom_plans = cursor.fetchone()
    assert custom_plans == 0
    assert generic_plans == 12

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

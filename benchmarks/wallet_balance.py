"""Benchmark: latency of ``GET /v0/customers/{id}/balance`` and of ``usage_debit``.

Run from the repository root (a throw-away test database is created and dropped):

    DJANGO_SETTINGS_MODULE=billing_site.settings.test python benchmarks/wallet_balance.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/meterline_bench \
        DJANGO_SETTINGS_MODULE=billing_site.settings.test python benchmarks/wallet_balance.py

Prints figures only (median and 99th percentile over in-process requests through the full Django
stack: URL routing, API-key authentication, the customer lookup and the cached wallet rows); the time
is machine-dependent, so nothing is asserted. The target is a balance read under 10 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.test")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

LEDGER_ENTRIES = 5000
READS = 2000
DEBITS = 1000


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"median {statistics.median(ordered) * 1000:.3f} ms, p99 {p99 * 1000:.3f} ms"


def main() -> None:
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run() -> None:
    from rest_framework.test import APIClient

    from catalog.models import Customer, Merchant
    from catalog.services import api_key_create
    from wallets.services import credit_top_up, usage_debit

    now = datetime(2026, 3, 1, tzinfo=UTC)
    merchant = Merchant.objects.create(name="Bench Labs")
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    customer = Customer.objects.create(merchant=merchant, name="Bench customer", email="b@example.com")
    credit_top_up(customer=customer, currency="USD", amount=Decimal("1000000"), idempotency_key="seed", now=now)
    credit_top_up(customer=customer, currency="EUR", amount=Decimal("1000"), idempotency_key="seed", now=now)

    timings = []
    for index in range(DEBITS):
        start = time.perf_counter()
        usage_debit(customer=customer, currency="USD", amount=Decimal("0.000123"), idempotency_key=f"e{index}", now=now)
        timings.append(time.perf_counter() - start)
    print(f"usage_debit ({connection.vendor}): {_percentiles(timings)}, {DEBITS / sum(timings):,.0f} debits/s")
    for index in range(DEBITS, LEDGER_ENTRIES):
        usage_debit(customer=customer, currency="USD", amount=Decimal("0.000123"), idempotency_key=f"e{index}", now=now)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    url = f"/v0/customers/{customer.pk}/balance"
    for _ in range(50):  # warm up
        assert client.get(url).status_code == 200
    timings = []
    for _ in range(READS):
        start = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - start)
        assert response.status_code == 200
    print(
        f"GET balance ({connection.vendor}, {LEDGER_ENTRIES + 2} ledger entries, 2 currencies): {_percentiles(timings)}"
    )


if __name__ == "__main__":
    main()

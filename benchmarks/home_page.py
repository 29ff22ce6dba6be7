"""Billing home benchmark: load the admin index (the billing home) with 10,000 customers and 1,000,000 events.

Runs on PostgreSQL in its own database (default ``meterline_bench_home``, dropped and re-created), DEBUG off:

    .venv/bin/python benchmarks/home_page.py
    .venv/bin/python benchmarks/home_page.py --customers 10000 --events 1000000 --loads 50

Seeds one merchant, a product with two metrics (API calls: COUNT; tokens: SUM of ``$.tokens``), a plan,
N customers with subscriptions, 3 issued invoices and 1 open draft per customer over the last 12 months, a
wallet per customer (5 % under their threshold), 20 failed billing runs, and M events spread evenly over
the last 90 days in time order (loaded with COPY, as ingestion appends them), then ANALYZE. A superuser then
loads ``/admin/`` through Django's test client (the full request: session, middleware, template): a few
warm-up loads, then ``--loads`` timed ones. Prints p50/p95/max milliseconds and the SQL queries per load.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench_home")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--cold-loads", type=int, default=1, help="loads timed with an emptied usage cache (median)")
    parser.add_argument("--explain", action="store_true", help="print the plan of each usage-per-day query")
    return parser.parse_args()


def recreate_database(pg: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(*, customers: int, events: int, now: datetime) -> None:
    from django.db import connection

    from catalog.models import BillableMetric, Customer, Merchant, Plan, Product, Subscription
    from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceStatus
    from wallets.models import Wallet

    merchant = Merchant.objects.create(name="Bench Labs")
    product = Product.objects.create(merchant=merchant, name="Bench Cloud")
    BillableMetric.objects.create(
        merchant=merchant, product=product, name="API calls", aggregation="COUNT", event_type="api.call"
    )
    BillableMetric.objects.create(
        merchant=merchant,
        product=product,
        name="Tokens",
        aggregation="SUM",
        event_type="llm.tokens",
        value_property="$.tokens",
    )
    plan = Plan.objects.create(merchant=merchant, product=product, name="Bench Pro", currency="USD")
    rows = Customer.objects.bulk_create(
        [Customer(merchant=merchant, name=f"Customer {i:05d}", external_id=f"c{i}") for i in range(customers)],
        batch_size=2000,
    )
    started = now - timedelta(days=400)
    subscriptions = Subscription.objects.bulk_create(
        [
            Subscription(merchant=merchant, customer=c, plan=plan, name=c.name, status="active", started_at=started)
            for c in rows
        ],
        batch_size=2000,
    )
    invoices = []
    for index, sub in enumerate(subscriptions):
        for back in range(3):
            period_start = (now - timedelta(days=30 * (back + 1 + index % 9))).replace(microsecond=0)
            invoices.append(
                Invoice(
                    merchant=merchant,
                    customer_id=sub.customer_id,
                    subscription=sub,
                    plan=plan,
                    status=InvoiceStatus.PAID if back else InvoiceStatus.ISSUED,
                    number=f"INV-{index}-{back}",
                    currency="USD",
                    period_start=period_start,
                    period_end=period_start + timedelta(days=30),
                    issued_at=period_start + timedelta(days=31),
                    subtotal=Decimal(10 + index % 500),
                    total=Decimal(10 + index % 500),
                    amount_due=Decimal(10 + index % 500),
                )
            )
        invoices.append(
            Invoice(
                merchant=merchant,
                customer_id=sub.customer_id,
                subscription=sub,
                plan=plan,
                status=InvoiceStatus.DRAFT,
                currency="USD",
                period_start=now - timedelta(days=31),
                period_end=now - timedelta(days=1),
                grace_ends_at=now + timedelta(hours=index % 24),
                subtotal=Decimal(5 + index % 997),
                total=Decimal(5 + index % 997),
                amount_due=Decimal(5 + index % 997),
            )
        )
    Invoice.objects.bulk_create(invoices, batch_size=5000)
    Wallet.objects.bulk_create(
        [
            Wallet(
                merchant=merchant,
                customer=c,
                currency="USD",
                balance=Decimal(5 if i % 20 == 0 else 500),
                low_balance_threshold=Decimal(100),
            )
            for i, c in enumerate(rows)
        ],
        batch_size=5000,
    )
    BillingRun.objects.bulk_create(
        [
            BillingRun(
                as_of=now - timedelta(days=i), started_at=now - timedelta(days=i), status=BillingRunStatus.FAILED
            )
            for i in range(20)
        ]
    )

    # Events: evenly over the last 90 days, in time order (as they arrive), half API calls, half tokens.
    start = now - timedelta(days=90)
    step = timedelta(days=90) / events
    columns = "merchant_id, customer_id, external_subject, event_type, timestamp, received_at, idempotency_key, external_id, source, data"
    customer_ids = [c.pk for c in rows]
    with connection.cursor() as cursor:
        pg_cursor = cursor.cursor
        with pg_cursor.copy(f"COPY metering_usageevent ({columns}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for i in range(events):
                at = (start + step * i).isoformat()
                kind, data = ("api.call", "{}") if i % 2 else ("llm.tokens", f'{{"tokens": {i % 1000}}}')
                buffer.write(
                    f"{merchant.pk}\t{customer_ids[i % customers]}\t\t{kind}\t{at}\t{at}\tk{i}\t\tbench\t{data}\n"
                )
                if i % 50_000 == 49_999:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
    # Autovacuum summarises new BRIN ranges and refreshes statistics in production; do it now.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def main() -> None:
    args = parse_args()
    recreate_database(args.pg, args.database)
    os.environ["DATABASE_URL"] = f"{args.pg}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.dev")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only")
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    now = timezone.now()
    began = time.perf_counter()
    seed(customers=args.customers, events=args.events, now=now)
    print(f"seeded {args.customers} customers, {args.events} events in {time.perf_counter() - began:.1f} s")

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    assert client.get("/admin/").status_code == 200  # connection, templates, static manifest
    cache.clear()
    began = time.perf_counter()
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/admin/")
    cold_ms = (time.perf_counter() - began) * 1000
    queries = len(captured.captured_queries)
    assert response.status_code == 200 and b'id="usage-chart"' in response.content
    if args.explain:
        with connection.cursor() as cursor:
            for query in captured.captured_queries:
                if "metering_usageevent" in query["sql"]:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                    print("\n".join(row[0] for row in cursor.fetchall()), "\n")

    cold_timings = [cold_ms]
    for _ in range(args.cold_loads - 1):
        cache.clear()
        began = time.perf_counter()
        client.get("/admin/")
        cold_timings.append((time.perf_counter() - began) * 1000)
    cold_timings.sort()
    if args.cold_loads > 1:
        print(
            f"cold loads ({args.cold_loads}, usage cache emptied before each): median "
            f"{statistics.median(cold_timings):.0f} ms, min {cold_timings[0]:.0f} ms, max {cold_timings[-1]:.0f} ms"
        )

    timings = []
    for _ in range(args.loads):
        began = time.perf_counter()
        response = client.get("/admin/")
        timings.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200
    timings.sort()
    p95 = timings[max(0, int(round(0.95 * len(timings))) - 1)]
    print(
        f"GET /admin/ (billing home), {args.customers} customers, {args.events} events, {args.loads} loads: "
        f"p50 {statistics.median(timings):.0f} ms, p95 {p95:.0f} ms, max {timings[-1]:.0f} ms, "
        f"{queries} SQL queries per load; first load with a cold usage cache {cold_ms:.0f} ms"
    )


if __name__ == "__main__":
    main()

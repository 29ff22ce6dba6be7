"""Invoicing benchmark: close one monthly period for N subscriptions with M usage events each.

Runs on PostgreSQL in its own database (default ``meterline_bench_close``, dropped and re-created),
with DEBUG off, in ONE process (the same code a single Celery worker runs, chunk after chunk):

    .venv/bin/python benchmarks/close_period.py --subscriptions 1000 --events-per-subscription 100
    .venv/bin/python benchmarks/close_period.py --subscriptions 10000 --events-per-subscription 100

Seeds one merchant, a plan with an in-advance platform fee and two metered prices (input tokens,
graduated; output tokens, standard), N customers and subscriptions started 2026-01-01, and M January
events per subscription loaded with COPY. The opening invoices are written first (not timed); then the
January close (``billing_run_execute(as_of=2026-02-01)``) is timed. Reports seconds, invoices per second,
SQL queries per invoice (counted with a connection execute wrapper) and peak memory of the close
(tracemalloc peak of Python allocations, and the process's max RSS).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench_close")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--events-per-subscription", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip tracemalloc (it slows Python down)")
    parser.add_argument("--profile", action="store_true", help="print the close's top functions (cProfile)")
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


def seed(n: int, m: int) -> None:
    from django.db import connection

    from catalog.models import (
        BillableMetric,
        Customer,
        Fee,
        Merchant,
        Plan,
        Price,
        PriceTier,
        Product,
        Subscription,
    )

    merchant = Merchant.objects.create(name="Neural Language Engine", invoice_number_prefix="NLE")
    product = Product.objects.create(merchant=merchant, name="Neural Language Engine")
    plan = Plan.objects.create(
        merchant=merchant, product=product, name="Pro", currency="USD", default_tax_rate=Decimal("8.5")
    )
    fee = Fee.objects.create(merchant=merchant, product=product, name="Platform")
    Price.objects.create(
        merchant=merchant,
        plan=plan,
        fee=fee,
        invoice_display_name="Platform fee",
        payment_term="in_advance",
        billing_cadence="P1M",
        unit_price=Decimal("49"),
    )
    metrics = []
    for key, event_type in (("input", "llm.input"), ("output", "llm.output")):
        metric = BillableMetric.objects.create(
            merchant=merchant,
            product=product,
            name=f"{key} tokens",
            unit="tokens",
            aggregation="SUM",
            event_type=event_type,
            value_property="$.tokens",
        )
        metrics.append(metric)
    input_price = Price.objects.create(
        merchant=merchant,
        plan=plan,
        billable_metric=metrics[0],
        invoice_display_name="Input tokens",
        model="graduated",
    )
    PriceTier.objects.create(price=input_price, up_to=Decimal("10000000"), unit_price=Decimal("0.000002"))
    PriceTier.objects.create(price=input_price, up_to=None, unit_price=Decimal("0.000001"))
    Price.objects.create(
        merchant=merchant,
        plan=plan,
        billable_metric=metrics[1],
        invoice_display_name="Output tokens",
        unit_price=Decimal("0.000006"),
    )
    customers = Customer.objects.bulk_create(
        [
            Customer(merchant=merchant, name=f"Customer {i}", email=f"c{i}@example.com", external_id=f"c{i}")
            for i in range(n)
        ],
        batch_size=2000,
    )
    Subscription.objects.bulk_create(
        [
            Subscription(merchant=merchant, customer=c, plan=plan, name=f"Sub {i}", started_at=JAN_1)
            for i, c in enumerate(customers)
        ],
        batch_size=2000,
    )
    span = (FEB_1 - JAN_1).total_seconds()
    columns = (
        "merchant_id, customer_id, external_subject, event_type, timestamp, received_at, idempotency_key, "
        "external_id, source, data"
    )
    with connection.cursor() as cursor:
        raw = cursor.connection
        with raw.cursor() as pg_cursor:
            with pg_cursor.copy(f"COPY metering_usageevent ({columns}) FROM STDIN") as copy:
                buffer = io.StringIO()
                for i, customer in enumerate(customers):
                    for j in range(m):
                        moment = JAN_1 + timedelta(seconds=span * (j + 0.5) / m)
                        event_type = "llm.input" if j % 2 == 0 else "llm.output"
                        tokens = 1000 + (i * 7919 + j * 104729) % 200_000
                        buffer.write(
                            f"{merchant.pk}\t{customer.pk}\t{customer.external_id}\t{event_type}\t{moment.isoformat()}\t"
                            f'{moment.isoformat()}\tk{i}-{j}\t\t\t{{"tokens": {tokens}}}\n'
                        )
                    if buffer.tell() > 4_000_000:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
        cursor.execute("ANALYZE metering_usageevent")
    connection.commit() if not connection.get_autocommit() else None


def main() -> None:
    args = parse_args()
    recreate_database(args.pg, args.database)
    os.environ["DATABASE_URL"] = f"{args.pg}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.dev")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only")
    import django

    django.setup()
    import logging

    from django.core.management import call_command
    from django.db import connection

    logging.disable(logging.WARNING)
    call_command("migrate", verbosity=0)
    n, m = args.subscriptions, args.events_per_subscription
    started = time.perf_counter()
    seed(n, m)
    print(f"seeded {n:,} subscriptions and {n * m:,} events in {time.perf_counter() - started:.1f} s")

    from invoicing.models import Invoice
    from invoicing.services import billing_run_execute

    started = time.perf_counter()
    opening = billing_run_execute(as_of=JAN_1, chunk_size=args.chunk_size)
    print(f"opening invoices: {opening.invoices_created:,} in {time.perf_counter() - started:.1f} s (not the target)")

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if not args.no_tracemalloc:
        tracemalloc.start()
    with connection.execute_wrapper(count):
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        run = billing_run_execute(as_of=FEB_1, chunk_size=args.chunk_size)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    peak = tracemalloc.get_traced_memory()[1] if not args.no_tracemalloc else None
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    invoices = run.invoices_created
    assert invoices == n and run.invoices_failed == 0, (run.invoices_created, run.invoices_failed)
    total = sum(Invoice.objects.filter(kind="recurring").values_list("total", flat=True), Decimal(0))
    print(f"close of January: {n:,} subscriptions × {m} events = {n * m:,} events")
    print(f"  seconds            {elapsed:.2f}")
    print(f"  invoices/second    {invoices / elapsed:,.0f}")
    print(f"  queries            {queries:,} ({queries / invoices:.2f} per invoice)")
    if peak is not None:
        print(f"  tracemalloc peak   {peak / 2**20:.1f} MiB")
    print(f"  max RSS            {rss_after / 1024:.1f} MiB (before the close: {rss_before / 1024:.1f} MiB)")
    print(f"  billed total       ${total:,.2f} (tracemalloc {'on' if peak is not None else 'off'})")


if __name__ == "__main__":
    main()

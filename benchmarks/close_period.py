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
(tracemalloc peak of Python allocations, and the process's max RSS). The billed total is checked
invoice by invoice against the benchmark's own computation: the usage it seeded, priced by the engine
(``catalog.pricing``) on specs it builds itself, each line rounded once, tax added.

``--subscriptions`` takes several sizes (``200,400``): each is seeded in a fresh database and closed in
turn, and a last table compares their statements per invoice, which must not grow with the size.

``--dimensional``: the input-tokens price has rates per event property, the 20 combinations (5 models ×
4 regions) of 3 graduated tiers each of ``benchmarks/dimensional_price.py`` (tiers at 100,000 and 400,000
tokens, which each subscription's combinations cross); every input event carries a ``model`` and a
``region`` picked from its key, so each subscription's input spreads over all 20 (one invoice line each).

    .venv/bin/python benchmarks/close_period.py --dimensional --subscriptions 10000 --no-tracemalloc
    .venv/bin/python benchmarks/close_period.py --dimensional --subscriptions 5000,10000 --no-tracemalloc
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

from dimensional_price import combination_for, engine_spec, rates_json  # noqa: E402

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
PLATFORM_FEE = Decimal(49)
TAX_RATE = Decimal("8.5")
INPUT_TIERS = ((Decimal(10_000_000), Decimal("0.000002")), (None, Decimal("0.000001")))
OUTPUT_UNIT_PRICE = Decimal("0.000006")
# --dimensional: each combination's rate is (number + 1) × $0.00000013 per token (×2 up to 100,000 tokens,
# ×1.5 + $1 up to 400,000); a subscription's ~2.5 input events per combination cross the tiers.
DIMENSIONAL_BOUNDS = {
    "unit_base": Decimal("0.00000013"),
    "first_up_to": Decimal(100_000),
    "second_up_to": Decimal(400_000),
}


def _int_list(text: str) -> list[int]:
    """``200,400`` -> ``[200, 400]``."""
    return [int(part) for part in text.split(",")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench_close")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument(
        "--subscriptions",
        type=_int_list,
        default=[1000],
        help="subscriptions closed; several sizes (200,400) are run one after the other and compared",
    )
    parser.add_argument("--events-per-subscription", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip tracemalloc (it slows Python down)")
    parser.add_argument("--profile", action="store_true", help="print the close's top functions (cProfile)")
    parser.add_argument(
        "--dimensional",
        action="store_true",
        help="input tokens priced per (model, region): 20 combinations × 3 graduated tiers",
    )
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


def seed(n: int, m: int, *, dimensional: bool) -> dict[str, Counter]:
    """The merchant, plan, customers, subscriptions and events; returns each customer's January usage as
    the events were written: tokens per (metric, model, region), model and region None when not priced
    per property."""
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
    for up_to, unit_price in INPUT_TIERS:
        PriceTier.objects.create(price=input_price, up_to=up_to, unit_price=unit_price)
    if dimensional:
        input_price.dimensional_rates = rates_json(**DIMENSIONAL_BOUNDS)
        input_price.save(update_fields=["dimensional_rates"])
    Price.objects.create(
        merchant=merchant,
        plan=plan,
        billable_metric=metrics[1],
        invoice_display_name="Output tokens",
        unit_price=OUTPUT_UNIT_PRICE,
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
    usage: dict[str, Counter] = {c.pk: Counter() for c in customers}
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
                        key = f"k{i}-{j}"
                        model, region = combination_for(key) if dimensional and j % 2 == 0 else (None, None)
                        data = (
                            f'{{"tokens": {tokens}}}'
                            if model is None
                            else f'{{"tokens": {tokens}, "model": "{model}", "region": "{region}"}}'
                        )
                        usage[customer.pk][(event_type, model, region)] += tokens
                        buffer.write(
                            f"{merchant.pk}\t{customer.pk}\t{customer.external_id}\t{event_type}\t{moment.isoformat()}\t"
                            f"{moment.isoformat()}\t{key}\t\t\t{data}\n"
                        )
                    if buffer.tell() > 4_000_000:
                        copy.write(buffer.getvalue())
                        buffer = io.StringIO()
                copy.write(buffer.getvalue())
        cursor.execute("ANALYZE metering_usageevent")
    connection.commit() if not connection.get_autocommit() else None
    return usage


def expected_totals(usage: dict[str, Counter], *, dimensional: bool) -> dict[str, Decimal]:
    """Customer id → the total of its January close invoice, computed without the invoicing code: the
    platform fee for February (in advance), January's usage priced by the engine on specs built here
    (one line per price, or per combination of the dimensional price), each line rounded once (half up,
    the merchant's default), then 8.5 % tax on their sum, rounded once."""
    from catalog.pricing import PriceSpec, PricingModel, Tier, Usage, rate, rate_dimensional, round_money

    input_spec = PriceSpec(
        price_id="input",
        name="Input tokens",
        model=PricingModel.GRADUATED,
        currency="USD",
        unit_name="tokens",
        tiers=tuple(Tier(up_to=up_to, unit_price=unit_price) for up_to, unit_price in INPUT_TIERS),
    )
    output_spec = PriceSpec(
        price_id="output",
        name="Output tokens",
        model=PricingModel.STANDARD,
        currency="USD",
        unit_name="tokens",
        unit_price=OUTPUT_UNIT_PRICE,
    )
    dimensional_spec = engine_spec(default=input_spec, price_id="input", **DIMENSIONAL_BOUNDS) if dimensional else None
    totals = {}
    for customer_id, counted in usage.items():
        lines = [PLATFORM_FEE]
        by_values = {(model, region): Decimal(q) for (kind, model, region), q in counted.items() if kind == "llm.input"}
        output = sum((Decimal(q) for (kind, _, _), q in counted.items() if kind == "llm.output"), Decimal(0))
        if dimensional_spec is not None:
            result = rate_dimensional(dimensional_spec, by_values)
            lines.extend(round_money(combination.amount, "USD") for combination in result.combinations)
        else:
            lines.append(
                round_money(rate(input_spec, Usage(quantity=sum(by_values.values(), Decimal(0)))).amount, "USD")
            )
        lines.append(round_money(rate(output_spec, Usage(quantity=output)).amount, "USD"))
        base = sum(lines, Decimal(0))
        totals[customer_id] = base + round_money(base * TAX_RATE / 100, "USD")
    return totals


def close_one_size(args, n: int) -> dict:
    """Seed ``n`` subscriptions in a fresh database, write the opening invoices, time the January close;
    print its figures and return them (``ok``: every invoice's total as computed independently)."""
    from django.core.management import call_command
    from django.db import connection

    from invoicing.models import Invoice, InvoiceLine
    from invoicing.services import billing_run_execute

    connection.close()
    recreate_database(args.pg, args.database)
    call_command("migrate", verbosity=0)
    m = args.events_per_subscription
    started = time.perf_counter()
    usage = seed(n, m, dimensional=args.dimensional)
    print(f"seeded {n:,} subscriptions and {n * m:,} events in {time.perf_counter() - started:.1f} s")

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
    peak = None
    if not args.no_tracemalloc:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    invoices = run.invoices_created
    assert invoices == n and run.invoices_failed == 0, (run.invoices_created, run.invoices_failed)
    total = sum(Invoice.objects.filter(kind="recurring").values_list("total", flat=True), Decimal(0))
    closed = dict(Invoice.objects.filter(billing_run=run).values_list("customer_id", "total"))
    expected = expected_totals(usage, dimensional=args.dimensional)
    differing = sum(closed.get(customer_id) != amount for customer_id, amount in expected.items())
    dimensional_lines = InvoiceLine.objects.filter(invoice__billing_run=run, price__dimensional_rates__isnull=False)
    lines = dimensional_lines.count() / invoices if args.dimensional else None
    print(
        f"close of January: {n:,} subscriptions × {m} events = {n * m:,} events"
        + (" (input tokens per model × region: 20 combinations × 3 tiers)" if args.dimensional else "")
    )
    print(f"  seconds            {elapsed:.2f}")
    print(f"  invoices/second    {invoices / elapsed:,.0f}")
    print(f"  queries            {queries:,} ({queries / invoices:.2f} per invoice)")
    if lines is not None:
        print(f"  dimensional lines  {lines:.1f} per invoice (one per combination used)")
    if peak is not None:
        print(f"  tracemalloc peak   {peak / 2**20:.1f} MiB")
    print(f"  max RSS            {rss_after / 1024:.1f} MiB (before the close: {rss_before / 1024:.1f} MiB)")
    print(f"  billed total       ${total:,.2f} (tracemalloc {'on' if peak is not None else 'off'})")
    print(
        f"  close checked      ${sum(closed.values(), Decimal(0)):,.2f} billed, ${sum(expected.values(), Decimal(0)):,.2f} "
        f"computed with the engine; {differing} of {n:,} invoices differ",
        flush=True,
    )
    return {"n": n, "seconds": elapsed, "queries": queries, "per_invoice": queries / invoices, "ok": not differing}


def main() -> None:
    args = parse_args()
    os.environ["DATABASE_URL"] = f"{args.pg}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.dev")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only")
    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    figures = [close_one_size(args, n) for n in args.subscriptions]
    constant = True
    if len(figures) > 1:
        # Statements = a fixed part per run and per chunk + a part per invoice: per invoice, a bigger close
        # may only amortise the fixed part (fewer or as many), never need more.
        print("statements per invoice by size:")
        for before, after in zip(figures, figures[1:], strict=False):
            if after["per_invoice"] > before["per_invoice"] and after["n"] > before["n"]:
                constant = False
        for figure in figures:
            print(
                f"  {figure['n']:>9,} subscriptions  {figure['queries']:>9,} statements  {figure['per_invoice']:.2f} per invoice"
            )
        if len(figures) == 2 and figures[1]["n"] != figures[0]["n"]:
            extra = (figures[1]["queries"] - figures[0]["queries"]) / (figures[1]["n"] - figures[0]["n"])
            print(f"  each further invoice: {extra:.2f} statements")
        print(f"  {'constant' if constant else 'GROWS with the number of subscriptions'}")
    if not constant or not all(figure["ok"] for figure in figures):
        sys.exit(1)


if __name__ == "__main__":
    main()

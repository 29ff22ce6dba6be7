"""Real-time billing benchmark: events debited from prepaid balances over HTTP, under gunicorn on PostgreSQL.

Own database (default ``meterline_bench_rt``, dropped and re-created), production settings, load
generator processes with keep-alive connections on the same machine (see benchmarks/ingest.py).

    .venv/bin/python benchmarks/realtime.py
    .venv/bin/python benchmarks/realtime.py --events 2000 --batch-size 10 --paced-events 2000  # quick

Phases (each after a ``VACUUM ANALYZE``, see ``vacuum_analyze``; before them, ``--warm-up`` untimed
requests per client so that no worker answers its first request inside a timed phase):
1. one prepaid customer: ``--events`` events from ``--clients`` clients in ``--batch-size``-event
   ``POST /v0/events/batch`` requests (every request serialises on that customer's wallet lock), once
   per size given (default 10 and 20);
2. the same number of events spread over ``--customers`` customers;
   both closed loop: each client sends its next request as soon as it has the answer, so they measure
   the throughput at saturation, and their latency is the queue that builds (≈ clients / throughput);
2b. the same two, open loop at the issue's target rates (``--paced-rates``, default 500 and 1,000
   events/s; ``--paced-events`` each): requests on a fixed schedule spread over the clients, latency
   counted from when each was due (coordinated omission included): the latency at that load;
3. single-event ``POST /v0/events`` for the one customer (``--single-events``);
4. ``GET /v0/customers/{id}/usageCost`` latency (one client, ``--reads`` requests).
Each phase also reports its CPU per request by gunicorn, PostgreSQL and the load generator (``CpuMeter``).
Then every customer's balance is checked exactly: grant − balance must equal the engine's price of
the customer's final usage (``rate(spec, usage)``), and no debit may be missing or doubled.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import _LeanClient, recreate_database, run_processes, setup_environment, start_gunicorn  # noqa: E402

EVENT_TYPE = "tokens.used"
GRANT = Decimal(1_000_000)


def _int_list(text: str) -> list[int]:
    """``10,20`` -> ``[10, 20]``: the argument type of the options that take several values."""
    return [int(part) for part in text.split(",")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench_rt")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (sync, gthread)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--health-checks", action="store_true", help="CONN_HEALTH_CHECKS=1")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000, help="events per phase")
    parser.add_argument(
        "--batch-size",
        type=_int_list,
        default=[10, 20],
        help="events per request of the closed-loop phases, one pair of phases per size; the paced phases "
        "use the last (default 10,20: at saturation a bigger request buys throughput with latency)",
    )
    parser.add_argument("--single-events", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument(
        "--paced-rates",
        type=_int_list,
        default=[500, 1000],
        help="events/s of the paced phases: one customer, spread (0 skips a phase)",
    )
    parser.add_argument("--paced-events", type=int, default=20_000, help="events per paced phase")
    parser.add_argument(
        "--warm-up",
        type=int,
        default=5,
        help="untimed requests per client before the first phase (each worker's connection prepared and planned)",
    )
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="skip the VACUUM ANALYZE before each phase (what autovacuum does in production)",
    )
    return parser.parse_args()


def seed(args):
    import django

    django.setup()
    from catalog.models import (
        Aggregation,
        BillableMetric,
        BillingMode,
        Customer,
        Merchant,
        Plan,
        Price,
        PriceModel,
        PriceTier,
        Product,
        Subscription,
    )
    from catalog.services import api_key_create
    from wallets.services import credit_grant, wallet_policy_update

    merchant = Merchant.objects.create(name="Bench Realtime")
    product = Product.objects.create(merchant=merchant, name="Inference")
    metric = BillableMetric.objects.create(
        merchant=merchant,
        product=product,
        name="Tokens",
        unit="tokens",
        aggregation=Aggregation.SUM,
        event_type=EVENT_TYPE,
        value_property="$.tokens",
    )
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    plan = Plan.objects.create(
        merchant=merchant,
        product=product,
        name="Prepaid",
        currency="USD",
        billing_mode=BillingMode.REAL_TIME,
        billing_anchor=start,
    )
    price = Price.objects.create(
        merchant=merchant,
        plan=plan,
        billable_metric=metric,
        invoice_display_name="Tokens",
        model=PriceModel.GRADUATED,
        payment_term="in_arrears",
    )
    # Tiers small enough that both phases cross them: 0.01 up to 1,000, 0.005 up to 50,000, then 0.002.
    PriceTier.objects.create(price=price, up_to=Decimal(1000), unit_price=Decimal("0.01"))
    PriceTier.objects.create(price=price, up_to=Decimal(50_000), unit_price=Decimal("0.005"))
    PriceTier.objects.create(price=price, up_to=None, unit_price=Decimal("0.002"))
    customers = Customer.objects.bulk_create(
        [
            Customer(merchant=merchant, name=f"C{i}", email=f"c{i}@example.com", external_id=f"rt-{i}", time_zone="UTC")
            for i in range(args.customers + 1)
        ]
    )
    Subscription.objects.bulk_create(
        [
            Subscription(merchant=merchant, customer=c, plan=plan, name=c.name, started_at=start, billing_anchor=start)
            for c in customers
        ]
    )
    now = datetime.now(UTC)
    for c in customers:
        wallet_policy_update(customer=c, currency="USD", policy="block", now=now)
        credit_grant(customer=c, currency="USD", amount=GRANT, idempotency_key=f"seed-{c.pk}", now=now)
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    return raw_key, [c.pk for c in customers], price.pk


def _batch_body(subjects, batch_size, worker, batch, phase) -> bytes:
    stamp = datetime.now(UTC).isoformat()
    events = [
        {
            "type": EVENT_TYPE,
            "source": "bench",
            "subject": subjects[(worker * 7919 + batch * batch_size + i) % len(subjects)],
            "data": {"tokens": 1 + (batch * batch_size + i) % 97},
            "timestamp": stamp,
            "idempotencyKey": f"{phase}-{worker}-{batch}-{i}-{subjects[0]}",
        }
        for i in range(batch_size)
    ]
    return orjson.dumps({"events": events})


def _batch_client(port, key, subjects, batches, batch_size, worker, phase, pace, queue):
    """``batches`` requests of ``batch_size`` events. ``pace`` None: closed loop (the next request as
    soon as the answer is read). ``pace`` (first_due, interval): open loop on a fixed schedule, request
    ``b`` due at ``first_due + b * interval`` (``time.monotonic``, shared by the processes); its latency
    counts from when it was due, so a server that falls behind is charged for the wait too."""
    client = _LeanClient(port, key)
    latencies, accepted, errors = [], 0, 0
    for b in range(batches):
        body = _batch_body(subjects, batch_size, worker, b, phase)
        if pace is None:
            started = time.perf_counter()
        else:
            due = pace[0] + b * pace[1]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            started = time.perf_counter() - max(0.0, time.monotonic() - due)
        status, payload = client.post("/v0/events/batch", body)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors += 1
            continue
        counts = orjson.loads(payload)["counts"]
        accepted += counts["accepted"]
        errors += counts["rejected"]
    queue.put((latencies, accepted, errors))


def _single_client(port, key, subject, requests, worker, queue):
    client = _LeanClient(port, key)
    latencies, accepted, errors = [], 0, 0
    for i in range(requests):
        body = orjson.dumps(
            {
                "type": EVENT_TYPE,
                "source": "bench",
                "subject": subject,
                "data": {"tokens": 1 + i % 97},
                "timestamp": datetime.now(UTC).isoformat(),
                "idempotencyKey": f"single-{worker}-{i}",
            }
        )
        started = time.perf_counter()
        status, _ = client.post("/v0/events", body)
        latencies.append(time.perf_counter() - started)
        if status == 202:
            accepted += 1
        else:
            errors += 1
    queue.put((latencies, accepted, errors))


def _report(label: str, results, elapsed: float, cpu: dict[str, float] | None = None) -> dict:
    latencies = sorted(lat for lats, _, _ in results for lat in lats)
    accepted = sum(a for _, a, _ in results)
    errors = sum(e for _, _, e in results)
    figures = {
        "events": accepted,
        "errors": errors,
        "eps": accepted / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "requests": len(latencies),
    }
    print(
        f"{label}: {accepted:,} debited events in {len(latencies):,} requests over {elapsed:.1f} s = "
        f"{figures['eps']:,.0f} events/s; request p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"max {figures['max_ms']:.1f} ms; "
        f"errors {errors}",
        flush=True,
    )
    if cpu is not None and figures["requests"]:
        per_request = {name: cpu[name] / figures["requests"] * 1000 for name in ("server", "postgres", "clients")}
        figures.update({f"cpu_{name}_ms": value for name, value in per_request.items()})
        print(
            f"  CPU per request: gunicorn {per_request['server']:.2f} ms, PostgreSQL {per_request['postgres']:.2f} ms, "
            f"load generator {per_request['clients']:.2f} ms; machine busy {cpu['busy'] / cpu['all']:.0%}",
            flush=True,
        )
    return figures


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(stat: str) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) from a ``/proc/<pid>/stat`` line."""
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds spent during a phase by gunicorn (master and workers), PostgreSQL (every
    ``postgres`` process: backends, WAL writer, checkpointer) and the load generator (this process's
    reaped children: the client processes, joined before the phase ends), and the machine's busy share.

    Read from ``/proc`` (Linux); elsewhere ``start``/``stop`` return nothing and the report leaves the
    line out. Answers "where does a request's CPU go" at saturation, where latency is the queue."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid
        self.enabled = Path("/proc/stat").exists()

    def _snapshot(self) -> dict[str, float]:
        server, postgres = 0.0, 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm = (entry / "comm").read_text().strip()
                ppid, seconds = process_cpu_seconds((entry / "stat").read_text())
            except OSError:  # gone meanwhile
                continue
            if comm == "postgres":
                postgres += seconds
            elif int(entry.name) == self.server_pid or ppid == self.server_pid:
                server += seconds
        times = os.times()
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(value) for value in cpu]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return {
            "server": server,
            "postgres": postgres,
            "clients": times.children_user + times.children_system,
            "busy": (sum(ticks) - idle) / _TICK,
            "all": sum(ticks) / _TICK,
        }

    def start(self) -> dict[str, float] | None:
        return self._snapshot() if self.enabled else None

    def stop(self, started: dict[str, float] | None) -> dict[str, float] | None:
        if started is None:
            return None
        now = self._snapshot()
        return {name: now[name] - started[name] for name in now}


def _print_vacuum_setting(args) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
    done = "not run (--no-vacuum)" if args.no_vacuum else "run before each phase"
    print(f"server autovacuum = {autovacuum}; VACUUM ANALYZE {done}", flush=True)


def vacuum_analyze(args) -> None:
    """What autovacuum does on a production server, done between phases: statistics for the planner
    (without them every prepared statement is planned for empty tables: sequential scans) and the dead
    row versions of the rewritten wallets, lots, totals and counters cleared. It matters here because
    a server may run with ``autovacuum = off`` (this machine's does); the command's cost is not timed."""
    if args.no_vacuum:
        return
    from django.db import connection

    with connection.cursor() as cursor:  # the seeding connection, in autocommit: VACUUM may run
        cursor.execute("VACUUM ANALYZE")


def _reads(port, key, customer_id, count) -> None:
    """Latency of the two prepaid reads the issue bounds (< 10 ms), one client, keep-alive."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"}
    for label, path in (
        ("usageCost", f"/v0/customers/{customer_id}/usageCost"),
        ("balance", f"/v0/customers/{customer_id}/balance"),
    ):
        latencies = []
        for _ in range(count):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200, response.status
        latencies.sort()
        print(
            f"GET {label}: {count} requests, 1 client: p50 {statistics.median(latencies) * 1000:.2f} ms, "
            f"p99 {latencies[int(count * 0.99) - 1] * 1000:.2f} ms",
            flush=True,
        )


def check_balances(customer_ids, price_id) -> None:
    """grant − balance == rate(final usage) for every customer, exactly; the ledger adds up."""
    from catalog.models import Customer, Price
    from catalog.pricing import rate
    from catalog.pricing_adapter import price_spec_from_price
    from metering.selectors import usage_aggregate_by_customer
    from wallets.models import Wallet
    from wallets.selectors import ledger_balance

    price = Price.objects.select_related("billable_metric").prefetch_related("tiers").get(pk=price_id)
    spec = price_spec_from_price(price, currency="USD")
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    customers = list(Customer.objects.filter(pk__in=customer_ids))
    usage = usage_aggregate_by_customer(
        metric=price.billable_metric, start=start, end=datetime.now(UTC), customers=customers
    )
    wallets = {w.customer_id: w for w in Wallet.objects.filter(customer_id__in=customer_ids)}
    wrong, negative = 0, 0
    for customer_id in customer_ids:
        wallet = wallets[customer_id]
        expected = rate(spec, usage[customer_id]).amount.quantize(Decimal("0.000000000001"))
        if GRANT - wallet.balance != expected or ledger_balance(wallet=wallet) != wallet.balance:
            wrong += 1
        negative += wallet.balance < 0
    heaviest = max(customer_ids, key=lambda c: usage[c])
    print(
        f"balances: {len(customer_ids)} customers checked, {wrong} wrong, {negative} negative; heaviest "
        f"{heaviest}: usage {usage[heaviest]}, debited {GRANT - wallets[heaviest].balance}",
        flush=True,
    )


def main() -> None:
    args = parse_args()
    setup_environment(args)
    recreate_database(args)
    key, customer_ids, price_id = seed(args)
    heavy, spread = customer_ids[0], customer_ids[1:]
    server = start_gunicorn(args)
    _print_vacuum_setting(args)
    meter = CpuMeter(server.pid)
    try:
        batch_size = args.batch_size[-1]  # warm-up and paced phases
        if args.warm_up:
            # A server in service is warm: the first request of each worker opens its database connection
            # and plans its prepared statements. Spread customers, so no phase starts with a head start.
            run_processes(
                _batch_client,
                [(args.port, key, spread, args.warm_up, batch_size, w, "warm", None) for w in range(args.clients)],
            )
        for round_, size in enumerate(args.batch_size):
            batches = args.events // size // args.clients
            for label, subjects in (("one customer", [heavy]), (f"{len(spread)} customers", spread)):
                vacuum_analyze(args)
                cpu = meter.start()
                results, elapsed = run_processes(
                    _batch_client,
                    [
                        (args.port, key, subjects, batches, size, w, f"closed{round_}-{size}", None)
                        for w in range(args.clients)
                    ],
                )
                _report(f"{label}, {args.clients} clients, {size}-event batches", results, elapsed, meter.stop(cpu))
        # The same requests at the target rates, on a fixed schedule (open loop): the latency a
        # client sees at that load, rather than the queue that a closed loop at saturation builds
        # (there, latency = clients / throughput whatever the code does).
        for label, subjects, rate in (
            ("one customer", [heavy], args.paced_rates[0]),
            (f"{len(spread)} customers", spread, args.paced_rates[1]),
        ):
            if not rate or not args.paced_events:
                continue
            vacuum_analyze(args)
            interval = batch_size * args.clients / rate  # seconds between one client's requests
            paced_batches = max(1, args.paced_events // batch_size // args.clients)
            first = time.monotonic() + 0.5
            cpu = meter.start()
            results, elapsed = run_processes(
                _batch_client,
                [
                    (
                        args.port,
                        key,
                        subjects,
                        paced_batches,
                        batch_size,
                        w,
                        f"paced{rate}",
                        (first + w * interval / args.clients, interval),
                    )
                    for w in range(args.clients)
                ],
            )
            _report(
                f"{label}, {args.clients} clients, {batch_size}-event batches paced at {rate:,} events/s",
                results,
                elapsed - 0.5,
                meter.stop(cpu),
            )
        if args.single_events:
            vacuum_analyze(args)
            per_client = args.single_events // args.clients
            cpu = meter.start()
            results, elapsed = run_processes(
                _single_client, [(args.port, key, heavy, per_client, w) for w in range(args.clients)]
            )
            _report(
                f"one customer, {args.clients} clients, single-event POST /v0/events", results, elapsed, meter.stop(cpu)
            )
        if args.reads:
            _reads(args.port, key, heavy, args.reads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    check_balances(customer_ids, price_id)


if __name__ == "__main__":
    main()

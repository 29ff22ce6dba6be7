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
the customer's final usage (``rate(spec, usage)``), and no debit may be missing or doubled. The usage is
what the load generator sent and the server answered ``accepted`` for (tallied per customer by the
clients); the events stored must add up to it too.

``--dimensional``: the metered price has rates per event property, the 20 combinations (5 models × 4
regions) of 3 graduated tiers each of ``benchmarks/dimensional_price.py`` (tiers at 50 and 1,000 tokens, so
the spread customers cross the first and the heavy one all three); every event carries a ``model`` and a
``region``, picked from its idempotency key so that each customer's events spread over all 20. The
balance check then prices each customer's accepted usage per (model, region) with
``rate_dimensional`` on a spec built by the benchmark itself (not the server's parsed price), at the
ledger's 12 places, as the debits telescope to it.

    .venv/bin/python benchmarks/realtime.py --dimensional
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the engine (pure) for the balance check

from dimensional_price import combination_for, engine_spec, rates_json  # noqa: E402
from ingest import _LeanClient, recreate_database, run_processes, setup_environment, start_gunicorn  # noqa: E402

EVENT_TYPE = "tokens.used"
GRANT = Decimal(1_000_000)
# The price's own tiers: the whole price without --dimensional, the values no combination names with it.
TIERS = ((Decimal(1000), Decimal("0.01")), (Decimal(50_000), Decimal("0.005")), (None, Decimal("0.002")))
# --dimensional: each combination's rate is (number + 1) × $0.000137 per token (×2 up to 50 tokens,
# ×1.5 + $1 up to 1,000), so both the spread customers' few events and the heavy customer's cross tiers.
DIMENSIONAL_BOUNDS = {"unit_base": Decimal("0.000137"), "first_up_to": Decimal(50), "second_up_to": Decimal(1000)}
LEDGER_QUANTUM = Decimal("0.000000000001")  # wallets' 12 places


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
        "--dimensional",
        action="store_true",
        help="price per (model, region): 20 combinations × 3 graduated tiers; events spread over all of them",
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
    for up_to, unit_price in TIERS:
        PriceTier.objects.create(price=price, up_to=up_to, unit_price=unit_price)
    if args.dimensional:
        price.dimensional_rates = rates_json(**DIMENSIONAL_BOUNDS)
        price.save(update_fields=["dimensional_rates"])
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


def _event(subject: str, tokens: int, key: str, stamp: str, dimensional: bool) -> dict:
    data = {"tokens": tokens}
    if dimensional:
        data["model"], data["region"] = combination_for(key)
    return {
        "type": EVENT_TYPE,
        "source": "bench",
        "subject": subject,
        "data": data,
        "timestamp": stamp,
        "idempotencyKey": key,
    }


def _batch_events(subjects, batch_size, worker, batch, phase, dimensional) -> list[dict]:
    stamp = datetime.now(UTC).isoformat()
    return [
        _event(
            subjects[(worker * 7919 + batch * batch_size + i) % len(subjects)],
            1 + (batch * batch_size + i) % 97,
            f"{phase}-{worker}-{batch}-{i}-{subjects[0]}",
            stamp,
            dimensional,
        )
        for i in range(batch_size)
    ]


def _tally(usage: Counter, event: dict) -> None:
    """Count an event the server accepted: tokens per (customer, model, region), None without --dimensional."""
    data = event["data"]
    usage[(event["subject"], data.get("model"), data.get("region"))] += data["tokens"]


def _batch_client(port, key, subjects, batches, batch_size, worker, phase, pace, dimensional, queue):
    """``batches`` requests of ``batch_size`` events. ``pace`` None: closed loop (the next request as
    soon as the answer is read). ``pace`` (first_due, interval): open loop on a fixed schedule, request
    ``b`` due at ``first_due + b * interval`` (``time.monotonic``, shared by the processes); its latency
    counts from when it was due, so a server that falls behind is charged for the wait too. Puts
    (latencies, accepted, errors, usage of the accepted events) on ``queue``."""
    client = _LeanClient(port, key)
    latencies, accepted, errors, usage = [], 0, 0, Counter()
    for b in range(batches):
        events = _batch_events(subjects, batch_size, worker, b, phase, dimensional)
        body = orjson.dumps({"events": events})
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
        answer = orjson.loads(payload)
        counts = answer["counts"]
        accepted += counts["accepted"]
        errors += counts["rejected"]
        for item in answer["results"]:
            if item["status"] == "accepted":
                _tally(usage, events[item["index"]])
    queue.put((latencies, accepted, errors, usage))


def _single_client(port, key, subject, requests, worker, dimensional, queue):
    client = _LeanClient(port, key)
    latencies, accepted, errors, usage = [], 0, 0, Counter()
    for i in range(requests):
        event = _event(subject, 1 + i % 97, f"single-{worker}-{i}", datetime.now(UTC).isoformat(), dimensional)
        body = orjson.dumps(event)
        started = time.perf_counter()
        status, payload = client.post("/v0/events", body)
        latencies.append(time.perf_counter() - started)
        if status == 202 and not orjson.loads(payload).get("duplicate"):
            accepted += 1
            _tally(usage, event)
        else:
            errors += 1
    queue.put((latencies, accepted, errors, usage))


def _report(label: str, results, elapsed: float, cpu: dict[str, float] | None = None) -> dict:
    latencies = sorted(lat for lats, *_ in results for lat in lats)
    accepted = sum(a for _, a, *_ in results)
    errors = sum(e for _, _, e, _ in results)
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


def _stored_usage(customer_ids) -> Counter:
    """The events the server stored, tallied like the clients' (tokens per customer, model, region)."""
    from metering.models import UsageEvent

    stored = Counter()
    rows = UsageEvent.objects.filter(customer_id__in=customer_ids, event_type=EVENT_TYPE).values_list(
        "customer_id", "data"
    )
    for customer_id, data in rows.iterator(chunk_size=10_000):
        stored[(customer_id, data.get("model"), data.get("region"))] += data["tokens"]
    return stored


def _expected_debits(customer_ids, usage: Counter, price_id: str, dimensional: bool) -> dict:
    """Customer id → what its debits must add up to: the engine's price of its accepted usage, exactly.

    Without ``--dimensional`` the spec is the server's own price read through the catalog adapter (one
    quantity); with it, the benchmark's own ``DimensionalSpec`` (benchmarks/dimensional_price.py) prices
    the usage per (model, region) at the ledger's 12 places, where the debits telescope to
    (``wallets.costing.incremental_dimensional_cost``)."""
    from catalog.pricing import PriceSpec, PricingModel, Tier, Usage, rate, rate_dimensional

    by_customer: dict[str, dict] = {customer_id: {} for customer_id in customer_ids}
    for (customer_id, model, region), tokens in usage.items():
        by_customer[customer_id][(model, region)] = Decimal(tokens)
    if dimensional:
        own = PriceSpec(
            price_id=price_id,
            name="Tokens",
            model=PricingModel.GRADUATED,
            currency="USD",
            unit_name="tokens",
            tiers=tuple(Tier(up_to=up_to, unit_price=unit_price) for up_to, unit_price in TIERS),
        )
        spec = engine_spec(default=own, price_id=price_id, **DIMENSIONAL_BOUNDS)
        return {
            customer_id: rate_dimensional(spec, values).amount.quantize(LEDGER_QUANTUM, rounding=ROUND_HALF_EVEN)
            for customer_id, values in by_customer.items()
        }
    from catalog.models import Price
    from catalog.pricing_adapter import price_spec_from_price

    spec = price_spec_from_price(Price.objects.prefetch_related("tiers").get(pk=price_id), currency="USD")
    return {
        customer_id: rate(spec, Usage(quantity=sum(values.values(), Decimal(0)))).amount.quantize(
            LEDGER_QUANTUM, rounding=ROUND_HALF_EVEN
        )
        for customer_id, values in by_customer.items()
    }


def check_balances(customer_ids, price_id, usage: Counter, dimensional: bool) -> bool:
    """grant − balance == the engine's price of the usage the clients saw accepted, for every customer,
    exactly; the stored events add up to that usage; the ledger adds up. False (and the script's exit
    status 1) when any of it fails."""
    from wallets.models import Wallet
    from wallets.selectors import ledger_balance

    stored = _stored_usage(customer_ids)
    expected = _expected_debits(customer_ids, usage, price_id, dimensional)
    wallets = {w.customer_id: w for w in Wallet.objects.filter(customer_id__in=customer_ids)}
    wrong, negative = 0, 0
    for customer_id in customer_ids:
        wallet = wallets[customer_id]
        if GRANT - wallet.balance != expected[customer_id] or ledger_balance(wallet=wallet) != wallet.balance:
            wrong += 1
        negative += wallet.balance < 0
    tokens = Counter()
    for (customer_id, _, _), quantity in usage.items():
        tokens[customer_id] += quantity
    heaviest = max(customer_ids, key=lambda c: tokens[c])
    combinations = {(model, region) for (_, model, region) in usage}
    print(
        f"balances: {len(customer_ids)} customers checked, {wrong} wrong, {negative} negative; "
        f"events stored {'=' if stored == usage else '≠'} events accepted ({sum(usage.values()):,} tokens"
        + (f" over {len(combinations)} (model, region) combinations" if dimensional else "")
        + f"); heaviest {heaviest}: usage {tokens[heaviest]}, debited {GRANT - wallets[heaviest].balance}, "
        f"expected {expected[heaviest]}",
        flush=True,
    )
    return not wrong and not negative and stored == usage


def main() -> None:
    args = parse_args()
    setup_environment(args)
    recreate_database(args)
    key, customer_ids, price_id = seed(args)
    heavy, spread = customer_ids[0], customer_ids[1:]
    server = start_gunicorn(args)
    _print_vacuum_setting(args)
    meter = CpuMeter(server.pid)
    usage = Counter()  # tokens per (customer, model, region) of every event the server accepted

    def accepted_usage(results) -> None:
        for *_, counted in results:
            usage.update(counted)

    try:
        batch_size = args.batch_size[-1]  # warm-up and paced phases
        if args.warm_up:
            # A server in service is warm: the first request of each worker opens its database connection
            # and plans its prepared statements. Spread customers, so no phase starts with a head start.
            results, _ = run_processes(
                _batch_client,
                [
                    (args.port, key, spread, args.warm_up, batch_size, w, "warm", None, args.dimensional)
                    for w in range(args.clients)
                ],
            )
            accepted_usage(results)
        for round_, size in enumerate(args.batch_size):
            batches = args.events // size // args.clients
            for label, subjects in (("one customer", [heavy]), (f"{len(spread)} customers", spread)):
                vacuum_analyze(args)
                cpu = meter.start()
                results, elapsed = run_processes(
                    _batch_client,
                    [
                        (args.port, key, subjects, batches, size, w, f"closed{round_}-{size}", None, args.dimensional)
                        for w in range(args.clients)
                    ],
                )
                accepted_usage(results)
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
                        args.dimensional,
                    )
                    for w in range(args.clients)
                ],
            )
            accepted_usage(results)
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
                _single_client, [(args.port, key, heavy, per_client, w, args.dimensional) for w in range(args.clients)]
            )
            accepted_usage(results)
            _report(
                f"one customer, {args.clients} clients, single-event POST /v0/events", results, elapsed, meter.stop(cpu)
            )
        if args.reads:
            _reads(args.port, key, heavy, args.reads)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if not check_balances(customer_ids, price_id, usage, args.dimensional):
        sys.exit(1)


if __name__ == "__main__":
    main()

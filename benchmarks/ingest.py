"""Metering benchmark: ingestion over REST under gunicorn, and aggregation on a 10M-row events table.

Runs against PostgreSQL in its own database (default ``meterline_bench``, dropped and re-created),
with the production settings (DEBUG off, persistent connections, CONN_HEALTH_CHECKS off unless
--health-checks), gunicorn (default 2 gthread workers x 8 threads) and the load generator on the same
machine (processes with a minimal keep-alive HTTP client, loopback only). Every loop is bounded.

    .venv/bin/python benchmarks/ingest.py                       # full run (targets of the issue)
    .venv/bin/python benchmarks/ingest.py --single-requests 2000 --events 100000 --agg-events 1000000
    .venv/bin/python benchmarks/ingest.py --compare-lean [PATH] --pairs 3   # side by side with the lean server

With ``--compare-lean`` the same HTTP load runs against the lean ingest server (``PATH``: the folder of
``lean_ingest.py``, default ``../shared/perf`` beside the repository) and Meterline, interleaved
(lean, Meterline, lean, Meterline, ...), each run on an emptied events table of one seeded database, and
the figures are printed side by side with their ratio (issue #24).

Phases: (1) single-event POST /v0/events: requests/s, p50, p99; (2) batched POST /v0/events/batch
(1,000 per request): events/s over --events; (3) COPY --agg-events rows spread over 4 months and
--customers customers, then time usage_aggregate (one metric, one customer, one month) and
usage_aggregate_by_customer (all customers, one month), and measure bytes per row on disk.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EVENT_TYPE = "llm.completion"
MODELS = ("nle-1", "nle-2", "nle-3")
AGG_START = datetime(2025, 9, 1, tzinfo=UTC)  # 4 months of loaded events: Sep–Dec 2025
AGG_MONTHS = (
    datetime(2025, 9, 1, tzinfo=UTC),
    datetime(2025, 10, 1, tzinfo=UTC),
    datetime(2025, 11, 1, tzinfo=UTC),
    datetime(2025, 12, 1, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (gthread, sync)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gthread worker")
    parser.add_argument(
        "--health-checks", action="store_true", help="CONN_HEALTH_CHECKS on (one extra SELECT 1 per request)"
    )
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--single-requests", type=int, default=20_000)
    parser.add_argument("--single-concurrency", type=int, default=16, help="client processes")
    parser.add_argument("--events", type=int, default=1_000_000, help="events sent in batches")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-concurrency", type=int, default=2, help="client processes")
    parser.add_argument("--agg-events", type=int, default=10_000_000, help="rows loaded with COPY for aggregation")
    parser.add_argument("--agg-repeats", type=int, default=50)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-aggregation", action="store_true")
    parser.add_argument(
        "--compare-lean",
        nargs="?",
        const=str(ROOT.parent / "shared" / "perf"),
        default=None,
        metavar="PATH",
        help="run the HTTP phases against the lean server in PATH (default ../shared/perf) and Meterline, interleaved",
    )
    parser.add_argument("--pairs", type=int, default=3, help="with --compare-lean: lean/Meterline pairs")
    return parser.parse_args()


def setup_environment(args) -> None:
    os.environ["DATABASE_URL"] = f"{args.pg}/{args.database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "billing_site.settings.production"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("METERLINE_CREDENTIAL_KEYS", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    os.environ["DEBUG"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"  # the load generator talks plain HTTP to gunicorn on localhost
    os.environ["CONN_MAX_AGE"] = "600"
    os.environ["CONN_HEALTH_CHECKS"] = "1" if args.health_checks else "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["METERLINE_VAR_DIR"] = str(ROOT / "var" / "bench")
    sys.path.insert(0, str(ROOT))


def recreate_database(args) -> None:
    import psycopg

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)


def seed(args):
    """Merchant, product, metric, customers, API key; returns (raw key, customer ids, metric id)."""
    import django

    django.setup()
    from catalog.models import Aggregation, BillableMetric, Customer, Merchant, Product
    from catalog.services import api_key_create

    merchant = Merchant.objects.create(name="Bench Labs")
    product = Product.objects.create(merchant=merchant, name="NLE")
    metric = BillableMetric.objects.create(
        merchant=merchant,
        product=product,
        name="Input tokens",
        unit="tokens",
        aggregation=Aggregation.SUM,
        event_type=EVENT_TYPE,
        value_property="$.input_tokens",
        group_by={"model": "$.model"},
    )
    Customer.objects.bulk_create(
        [
            Customer(merchant=merchant, name=f"Customer {i}", email=f"c{i}@example.com", external_id=f"ext-{i}")
            for i in range(args.customers)
        ],
        batch_size=2000,
    )
    customer_ids = list(Customer.objects.filter(merchant=merchant).order_by("external_id").values_list("id", flat=True))
    _, raw_key = api_key_create(merchant=merchant, name="bench")
    return raw_key, customer_ids, metric.pk


# --- HTTP load -----------------------------------------------------------------------------------


# Each gunicorn worker's heartbeat touches a file in this directory after every request: on a
# disk-backed /tmp that metadata write can wait behind the journal (PostgreSQL's fsyncs), stalling the
# worker. gunicorn's documentation advises a tmpfs; /dev/shm is one on Linux.
_WORKER_TMP_DIR = ["--worker-tmp-dir", "/dev/shm"] if Path("/dev/shm").is_dir() else []


def start_gunicorn(args, *, lean_path: str | None = None) -> subprocess.Popen:
    """Meterline under gunicorn, or (``lean_path``) the lean server with the same gunicorn layout."""
    app, cwd, env = "billing_site.wsgi:application", ROOT, None
    if lean_path is not None:
        app, cwd = "lean_ingest:application", Path(lean_path)
        env = {**os.environ, "BASELINE_DSN": os.environ["DATABASE_URL"]}
    process = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--log-level",
            "warning",
            *_WORKER_TMP_DIR,
        ],
        cwd=cwd,
        env=env,
    )
    for _ in range(100):  # up to 10 s
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=1)
            conn.request("GET", "/v0/events")
            conn.getresponse().read()
            return process
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("gunicorn did not start")


class _LeanClient:
    """A minimal HTTP/1.1 client over one socket (keep-alive when the server allows it).

    The load generator shares the 2 cores with gunicorn and PostgreSQL; http.client's header parsing
    costs about as much as a small Django view, so requests are pre-formatted bytes and only the
    status line, Content-Length and Connection headers are read.
    """

    def __init__(self, port: int, key: str):
        self.port = port
        self.head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        self.sock = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        head, _, payload = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(payload) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            payload += chunk
        if headers.get("connection", "").lower() == "close":
            self.sock.close()
            self.sock = None
        return status, payload


def _single_worker(port, key, customer_ids, requests, worker, queue):
    client = _LeanClient(port, key)
    latencies, errors = [], 0
    started_at = datetime.now(UTC)
    for i in range(requests):
        body = orjson.dumps(
            {
                "type": EVENT_TYPE,
                "source": "bench",
                "subject": customer_ids[i % len(customer_ids)],
                "data": {"input_tokens": i % 1000, "model": MODELS[i % 3]},
                "timestamp": (started_at - timedelta(microseconds=i)).isoformat(),
                "idempotencyKey": f"s-{worker}-{i}",
            }
        )
        started = time.perf_counter()
        status, _ = client.post("/v0/events", body)
        latencies.append(time.perf_counter() - started)
        if status != 202:
            errors += 1
    queue.put((latencies, errors))


def _batch_worker(port, key, customer_ids, batches, batch_size, worker, queue):
    client = _LeanClient(port, key)
    accepted, errors = 0, 0
    started_at = datetime.now(UTC)
    for b in range(batches):
        # Every event has its own timestamp (no two alike), as a real client's would.
        events = [
            {
                "type": EVENT_TYPE,
                "source": "bench",
                "subject": customer_ids[(b * batch_size + i) % len(customer_ids)],
                "data": {"input_tokens": i, "model": MODELS[i % 3]},
                "timestamp": (started_at - timedelta(microseconds=b * batch_size + i)).isoformat(),
                "idempotencyKey": f"b-{worker}-{b}-{i}",
            }
            for i in range(batch_size)
        ]
        status, payload = client.post("/v0/events/batch", orjson.dumps({"events": events}))
        if status != 200:
            errors += 1
            continue
        accepted += orjson.loads(payload)["counts"]["accepted"]
    queue.put((accepted, errors))


def run_processes(target, jobs) -> tuple[list, float]:
    queue = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=target, args=(*job, queue)) for job in jobs]
    started = time.perf_counter()
    for process in processes:
        process.start()
    results = [queue.get(timeout=3600) for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(timeout=60)
    return results, elapsed


def _server_cpu_seconds(server: subprocess.Popen) -> float:
    """User + system CPU of the gunicorn master's worker processes so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    try:
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        tick = os.sysconf("SC_CLK_TCK")
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError):
        return 0.0
    return total


def bench_http(args, key, customer_ids, *, lean_path: str | None = None) -> dict:
    figures = {}
    server = start_gunicorn(args, lean_path=lean_path)
    try:
        per_worker = args.single_requests // args.single_concurrency
        cpu_before = _server_cpu_seconds(server)
        results, elapsed = run_processes(
            _single_worker,
            [(args.port, key, customer_ids, per_worker, w) for w in range(args.single_concurrency)],
        )
        latencies = sorted(lat for lats, _ in results for lat in lats)
        figures["single_requests"] = len(latencies)
        figures["single_errors"] = sum(e for _, e in results)
        figures["single_rps"] = len(latencies) / elapsed
        figures["single_p50_ms"] = statistics.median(latencies) * 1000
        figures["single_p99_ms"] = latencies[int(len(latencies) * 0.99) - 1] * 1000
        figures["single_cpu_ms"] = (_server_cpu_seconds(server) - cpu_before) * 1000 / len(latencies)
        print(
            f"single  {figures['single_requests']} requests, {args.single_concurrency} clients: "
            f"{figures['single_rps']:,.0f} req/s, p50 {figures['single_p50_ms']:.1f} ms, "
            f"p99 {figures['single_p99_ms']:.1f} ms, server CPU {figures['single_cpu_ms']:.2f} ms/request, "
            f"errors {figures['single_errors']}",
            flush=True,
        )

        batches = args.events // args.batch_size
        per_worker = batches // args.batch_concurrency
        cpu_before = _server_cpu_seconds(server)
        results, elapsed = run_processes(
            _batch_worker,
            [(args.port, key, customer_ids, per_worker, args.batch_size, w) for w in range(args.batch_concurrency)],
        )
        accepted = sum(a for a, _ in results)
        figures["batch_events"] = accepted
        figures["batch_errors"] = sum(e for _, e in results)
        figures["batch_eps"] = accepted / elapsed
        figures["batch_seconds"] = elapsed
        figures["batch_cpu_ms"] = (_server_cpu_seconds(server) - cpu_before) * 1000 / max(batches, 1)
        print(
            f"batch   {accepted:,} events in {args.batch_size}-event requests, {args.batch_concurrency} clients: "
            f"{figures['batch_eps']:,.0f} events/s over {elapsed:.1f} s, "
            f"server CPU {figures['batch_cpu_ms']:.1f} ms/request, errors {figures['batch_errors']}",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return figures


# --- aggregation ---------------------------------------------------------------------------------


def load_events(args, customer_ids) -> float:
    """COPY ``--agg-events`` rows, in time order, spread evenly over 4 months and all customers."""
    from django.db import connection

    from catalog.models import Merchant

    merchant_id = Merchant.objects.get(name="Bench Labs").pk
    span = (AGG_MONTHS[-1] - AGG_START).total_seconds()
    step = span / args.agg_events
    received = datetime.now(UTC)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE metering_usageevent")
    chunk = 1_000_000
    for offset in range(0, args.agg_events, chunk):
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                'COPY metering_usageevent (merchant_id, customer_id, external_subject, event_type, "timestamp", '
                "received_at, idempotency_key, external_id, source, data) FROM STDIN"
            ) as copy,
        ):
            for i in range(offset, min(offset + chunk, args.agg_events)):
                copy.write_row(
                    (
                        merchant_id,
                        customer_ids[i % len(customer_ids)],
                        "",
                        EVENT_TYPE,
                        AGG_START + timedelta(seconds=i * step),
                        received,
                        f"agg-{i}",
                        "",
                        "bench",
                        orjson.dumps(
                            {
                                "input_tokens": i % 997,
                                "output_tokens": i % 313,
                                "model": MODELS[i % 3],
                                "request_id": f"req_{i:012d}",
                            }
                        ).decode(),
                    )
                )
        print(f"  loaded {min(offset + chunk, args.agg_events):,} rows", flush=True)
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE metering_usageevent")
    return elapsed


def bench_aggregation(args, customer_ids, metric_id) -> dict:
    from django.db import connection

    from catalog.models import BillableMetric, Customer
    from metering.selectors import usage_aggregate, usage_aggregate_by_customer

    figures = {}
    load_seconds = load_events(args, customer_ids)
    figures["agg_rows"] = args.agg_events
    figures["copy_rows_per_s"] = args.agg_events / load_seconds
    print(
        f"load    {args.agg_events:,} rows by COPY in {load_seconds:.0f} s ({figures['copy_rows_per_s']:,.0f} rows/s)",
        flush=True,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('metering_usageevent'), pg_relation_size('metering_usageevent')")
        total, heap = cursor.fetchone()
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'metering_usageevent'::regclass ORDER BY 1"
        )
        indexes = cursor.fetchall()
    figures["bytes_per_row"] = total / args.agg_events
    figures["heap_bytes_per_row"] = heap / args.agg_events
    print(
        f"disk    {total / 2**20:,.0f} MiB total, {figures['bytes_per_row']:.0f} B/row "
        f"(heap {figures['heap_bytes_per_row']:.0f} B/row); indexes: "
        + ", ".join(f"{name} {size / args.agg_events:.1f} B/row" for name, size in indexes),
        flush=True,
    )

    metric = BillableMetric.objects.prefetch_related("filters").get(pk=metric_id)
    customers = list(Customer.objects.filter(pk__in=customer_ids[:: max(1, len(customer_ids) // args.agg_repeats)]))
    start, end = AGG_MONTHS[2], AGG_MONTHS[3]  # November 2025
    usage_aggregate(metric=metric, customer=customers[0], start=start, end=end)  # warm the connection
    timings = []
    for customer in customers[: args.agg_repeats]:
        began = time.perf_counter()
        usage_aggregate(metric=metric, customer=customer, start=start, end=end)
        timings.append(time.perf_counter() - began)
    timings.sort()
    figures["one_customer_median_ms"] = statistics.median(timings) * 1000
    figures["one_customer_max_ms"] = timings[-1] * 1000
    sample = usage_aggregate(metric=metric, customer=customers[0], start=start, end=end)
    print(
        f"agg     one metric, one customer, one month ({len(timings)} customers): median "
        f"{figures['one_customer_median_ms']:.2f} ms, max {figures['one_customer_max_ms']:.2f} ms "
        f"(e.g. {sample})",
        flush=True,
    )

    all_timings = []
    for _ in range(3):
        began = time.perf_counter()
        result = usage_aggregate_by_customer(metric=metric, start=start, end=end)
        all_timings.append(time.perf_counter() - began)
    figures["all_customers_median_s"] = statistics.median(all_timings)
    print(
        f"agg     all {len(result):,} customers, one month, one query: median "
        f"{figures['all_customers_median_s']:.2f} s (runs: {', '.join(f'{t:.2f}' for t in all_timings)})",
        flush=True,
    )
    return figures


def _truncate_events() -> None:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("TRUNCATE metering_usageevent")


def compare_lean(args, key, customer_ids) -> None:
    """Lean server and Meterline, interleaved, ``--pairs`` times; each run on an empty events table."""
    lean_path = Path(args.compare_lean)
    if not (lean_path / "lean_ingest.py").is_file():
        raise SystemExit(f"no lean_ingest.py in {lean_path} (pass its folder: --compare-lean PATH)")
    runs: dict[str, list[dict]] = {"lean": [], "meterline": []}
    for pair in range(args.pairs):
        for side in ("lean", "meterline"):
            _truncate_events()
            load = os.getloadavg()[0]
            print(f"-- pair {pair + 1}, {side} (load average {load:.2f})", flush=True)
            figures = bench_http(args, key, customer_ids, lean_path=str(lean_path) if side == "lean" else None)
            figures["load"] = load
            runs[side].append(figures)

    def row(name: str, field: str, fmt: str) -> None:
        lean = [r[field] for r in runs["lean"]]
        ours = [r[field] for r in runs["meterline"]]
        ratios = [o / v if v else float("nan") for o, v in zip(ours, lean, strict=True)]
        print(
            f"{name:<28} lean {' / '.join(format(v, fmt) for v in lean):<30} "
            f"Meterline {' / '.join(format(v, fmt) for v in ours):<30} "
            f"ratio {' / '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})",
            flush=True,
        )

    print(f"\n== {args.pairs} interleaved pairs (Meterline / lean per pair)")
    row("single req/s", "single_rps", ",.0f")
    row("single p99 ms", "single_p99_ms", ".1f")
    row("single server CPU ms/req", "single_cpu_ms", ".2f")
    row("batch events/s", "batch_eps", ",.0f")
    row("batch server CPU ms/batch", "batch_cpu_ms", ".1f")


def main() -> None:
    args = parse_args()
    setup_environment(args)
    print(f"metering benchmark on {os.cpu_count()} CPUs; database {args.database}", flush=True)
    recreate_database(args)
    key, customer_ids, metric_id = seed(args)
    if args.compare_lean is not None:
        from django.db import connections

        connections.close_all()
        compare_lean(args, key, customer_ids)
        return
    if not args.skip_http:
        from django.db import connections

        connections.close_all()
        bench_http(args, key, customer_ids)
    if not args.skip_aggregation:
        bench_aggregation(args, customer_ids, metric_id)


if __name__ == "__main__":
    main()

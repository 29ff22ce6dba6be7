"""CPU per real-time request, in one process: the figure to compare two versions of the debit path by.

Through HTTP (``benchmarks/realtime.py``) the closed-loop figures move ±10 % between identical runs
on 2 shared cores; here ``POST /v0/events/batch`` requests go straight to the WSGI application, one
at a time, and the script reads this process's CPU time and its PostgreSQL backend's
(``/proc/<pid>/stat``). Own database (default ``meterline_bench_rt_cpu``), the seed of realtime.py,
``VACUUM ANALYZE`` before measuring, warm-up requests untimed.

    .venv/bin/python benchmarks/realtime_cpu.py                 # 1,500 requests per shape
    .venv/bin/python benchmarks/realtime_cpu.py --requests 300  # quick
    .venv/bin/python benchmarks/realtime_cpu.py --dimensional --profile spread  # and where its CPU goes

For an A/B, run it in two checkouts in turn (a ``git worktree`` of the other commit), twice each.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realtime  # noqa: E402
from ingest import recreate_database, setup_environment  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench_rt_cpu")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1500, help="timed requests per shape")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--health-checks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dimensional", action="store_true", help="the 20-combination price of realtime.py")
    parser.add_argument(
        "--profile", choices=("one", "spread"), help="print the top of a CPU-time cProfile of that shape"
    )
    return parser.parse_args()


def _backend_cpu_seconds(pid: int) -> float:
    return realtime.process_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())[1]


def main() -> None:
    args = parse_args()
    setup_environment(args)
    recreate_database(args)
    key, customer_ids, _ = realtime.seed(args)
    from django.db import connection

    from billing_site.wsgi import application

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    def post(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/v0/events/batch",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": f"Bearer {key}",
        }
        status = []
        payload = b"".join(application(environ, lambda line, headers, exc_info=None: status.append(line)))
        if not status[0].startswith("200") or b'"rejected":0' not in payload.replace(b" ", b""):
            raise SystemExit(f"request failed: {status[0]} {payload[:300]!r}")

    def body(subjects, worker: int, batch: int, phase: str) -> bytes:
        events = realtime._batch_events(subjects, args.batch_size, worker, batch, phase, args.dimensional)
        return orjson.dumps({"events": events})

    shapes = (
        ("one", "one customer", customer_ids[:1]),
        ("spread", f"{len(customer_ids) - 1} customers", customer_ids[1:]),
    )
    for shape, label, subjects in shapes:
        for b in range(args.warm_up):
            post(body(subjects, 1, b, f"warm-{shape}"))
        bodies = [body(subjects, 2, b, shape) for b in range(args.requests)]
        profiler = cProfile.Profile(time.process_time) if args.profile == shape else None
        pid = connection.connection.info.backend_pid
        cpu, wall, backend = time.process_time(), time.perf_counter(), _backend_cpu_seconds(pid)
        if profiler:
            profiler.enable()
        for request_body in bodies:
            post(request_body)
        if profiler:
            profiler.disable()
        n = len(bodies)
        print(
            f"{label}, {args.batch_size}-event requests, {n:,} in one process: per request Python CPU "
            f"{(time.process_time() - cpu) / n * 1000:.2f} ms, PostgreSQL backend CPU "
            f"{(_backend_cpu_seconds(pid) - backend) / n * 1000:.2f} ms, wall {(time.perf_counter() - wall) / n * 1000:.2f} ms",
            flush=True,
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(50)


if __name__ == "__main__":
    main()

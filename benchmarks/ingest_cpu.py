"""CPU per post-paid ingestion request, in one process: the figure to compare two versions of the event path by.

Through HTTP (``benchmarks/ingest.py``) the closed-loop figures move with whatever else runs on 2 shared
cores; here ``POST /v0/events`` (one event) and ``POST /v0/events/batch`` (1,000 events) go straight to the
WSGI application gunicorn serves, one at a time, and the script reads this process's CPU time and its
PostgreSQL backend's (``/proc/<pid>/stat``). Own database (default ``meterline_bench_ingest_cpu``), the
seed of ingest.py, warm-up requests untimed, the events table emptied before each shape.

    .venv/bin/python benchmarks/ingest_cpu.py                    # 3,000 single requests, 60 batches
    .venv/bin/python benchmarks/ingest_cpu.py --profile single   # and where the single request's CPU goes

For an A/B, run it in two checkouts in turn (a ``git worktree`` of the other commit), twice each.

    .venv/bin/python benchmarks/ingest_cpu.py --lean --rounds 3   # beside the lean server, in this process

``--lean [PATH]`` also calls the lean ingest server's WSGI application (``lean_ingest.py``, default
``../shared/perf``) with the same bodies, on the same database, alternating with Meterline: the two
applications' own CPU without gunicorn's (issue #24).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import EVENT_TYPE, MODELS, recreate_database, seed, setup_environment  # noqa: E402
from realtime import process_cpu_seconds  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="meterline_bench_ingest_cpu")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, without database")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--single-requests", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=60, help="timed 1,000-event requests")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument("--profile", choices=("single", "batch"), help="print the top of a cProfile of that shape")
    parser.add_argument(
        "--lean",
        nargs="?",
        const=str(Path(__file__).resolve().parent.parent.parent / "shared" / "perf"),
        default=None,
        metavar="PATH",
        help="also time the lean server's application (lean_ingest.py in PATH) the same way, alternating",
    )
    parser.add_argument("--rounds", type=int, default=1, help="with --lean: Meterline/lean rounds")
    parser.add_argument("--health-checks", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _event(customer_ids: list[str], i: int, label: str, started_at: datetime) -> dict:
    return {
        "type": EVENT_TYPE,
        "source": "bench",
        "subject": customer_ids[i % len(customer_ids)],
        "data": {"input_tokens": i % 1000, "model": MODELS[i % 3]},
        "timestamp": (started_at - timedelta(microseconds=i)).isoformat(),
        "idempotencyKey": f"{label}-{i}",
    }


def main() -> None:
    args = parse_args()
    setup_environment(args)
    recreate_database(args)
    key, customer_ids, _ = seed(args)
    from django.db import connection

    from billing_site.wsgi import application

    servers = [("Meterline", application, lambda: connection.connection.info.backend_pid)]
    if args.lean:
        # The lean server reads its DSN at import; it writes the same table of the same database.
        os.environ["BASELINE_DSN"] = os.environ["DATABASE_URL"]
        sys.path.insert(0, args.lean)
        import lean_ingest

        servers.append(("lean", lean_ingest.application, lambda: lean_ingest._conn().info.backend_pid))

    def post(app, path: str, body: bytes, expected: str) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": path,
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
        result = app(environ, lambda line, headers, exc_info=None: status.append(line))
        payload = b"".join(result)
        getattr(result, "close", lambda: None)()
        if not status[0].startswith(expected) or b'"rejected":' in payload and b'"rejected":0' not in payload:
            raise SystemExit(f"request failed: {status[0]} {payload[:300]!r}")

    started_at = datetime.now(UTC)
    singles = [
        orjson.dumps(_event(customer_ids, i, "single", started_at)) for i in range(args.warm_up + args.single_requests)
    ]
    batches = [
        orjson.dumps(
            {
                "events": [
                    _event(customer_ids, b * args.batch_size + i, "batch", started_at) for i in range(args.batch_size)
                ]
            }
        )
        for b in range(args.warm_up // 10 + args.batches)
    ]
    shapes = (
        ("single", "/v0/events", "202", singles, args.warm_up),
        ("batch", "/v0/events/batch", "200", batches, args.warm_up // 10),
    )
    rounds = args.rounds if args.lean else 1
    for label, path, expected, bodies, warm_up in shapes:
        for _ in range(rounds):
            for name, app, backend_pid in servers:
                with connection.cursor() as cursor:
                    cursor.execute("TRUNCATE metering_usageevent")
                    cursor.execute("VACUUM ANALYZE")
                for body in bodies[:warm_up]:
                    post(app, path, body, expected)
                timed = bodies[warm_up:]
                profiler = cProfile.Profile(time.process_time) if args.profile == label else None
                pid = backend_pid()
                cpu, wall, backend = time.process_time(), time.perf_counter(), process_cpu_seconds_of(pid)
                if profiler:
                    profiler.enable()
                for body in timed:
                    post(app, path, body, expected)
                if profiler:
                    profiler.disable()
                n = len(timed)
                print(
                    f"{name:9} {label} ({path}), {n:,} requests in one process: per request Python CPU "
                    f"{(time.process_time() - cpu) / n * 1000:.3f} ms, PostgreSQL backend CPU "
                    f"{(process_cpu_seconds_of(pid) - backend) / n * 1000:.3f} ms, "
                    f"wall {(time.perf_counter() - wall) / n * 1000:.3f} ms"
                    + (" (profiled: CPU inflated)" if profiler else ""),
                    flush=True,
                )
                if profiler:
                    pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(
                        int(os.environ.get("PROFILE_TOP", "45"))
                    )


def process_cpu_seconds_of(pid: int) -> float:
    return process_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())[1]


if __name__ == "__main__":
    main()

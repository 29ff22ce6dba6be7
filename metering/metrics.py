"""Prometheus metrics of usage ingestion (served at ``/metrics``; README, "Health, metrics and logs").

A labelled counter's increment is a dictionary look-up and an add under a lock (a few hundred
nanoseconds), cheap enough for the ingest hot path; the label children are resolved once here.
"""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter(
    "meterline_events",
    "Usage events submitted, by result: accepted (stored), duplicate (idempotency key seen before), "
    "rejected (invalid), refused (the prepaid balance of a block-policy customer could not pay).",
    ["result"],
)
_EVENTS_BY_RESULT = {
    result: EVENTS.labels(result=result) for result in ("accepted", "duplicate", "rejected", "refused")
}


def events_count(*, accepted: int = 0, duplicate: int = 0, rejected: int = 0, refused: int = 0) -> None:
    """Count one ingest request's results (after its transaction: nothing rolled back is counted)."""
    for result, amount in (
        ("accepted", accepted),
        ("duplicate", duplicate),
        ("rejected", rejected),
        ("refused", refused),
    ):
        if amount:
            _EVENTS_BY_RESULT[result].inc(amount)

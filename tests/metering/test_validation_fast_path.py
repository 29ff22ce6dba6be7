"""The straight pass for the common event (``metering.services._validate_common``) never accepts what the full
check (``_validate``) refuses, and builds the same candidate for what both accept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from metering import services
from metering.selectors import MetricRoute

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ROUTES = {
    "llm": [
        MetricRoute("bm_sum", "SUM", ("input_tokens",), True),
        MetricRoute("bm_count", "COUNT", None, True),
        MetricRoute("bm_unique", "UNIQUE_COUNT", ("model",), False),
        MetricRoute("bm_nested", "MAX", ("usage", "ms"), True),
    ]
}
BASE = {
    "type": "llm",
    "source": "app",
    "subject": "cus_1",
    "data": {"input_tokens": 12, "model": "nle-1"},
    "timestamp": "2026-03-10T11:59:00Z",
    "idempotencyKey": "k-1",
}
VARIANTS = [
    {},
    {"timestamp": None},
    {"timestamp": "2026-03-10 11:59:00"},
    {"timestamp": "2026-03-10T12:10:00+00:00"},  # too far ahead
    {"timestamp": "2026-03-10T11:59:00Z\x00"},
    {"timestamp": "yesterday"},
    {"timestamp": 1700000000},
    {"data": {"input_tokens": "12.5"}},
    {"data": {"input_tokens": "twelve"}},
    {"data": {"input_tokens": True}},
    {"data": {"input_tokens": 10**16}},
    {"data": {"input_tokens": 1e-13}},
    {"data": {"input_tokens": 1, "usage": {"ms": 3}}},
    {"data": {"input_tokens": 1, "deep": [[[1]]]}},
    {"data": {"text": "a\x00b"}},
    {"data": {"blob": "x" * (17 * 1024)}},
    {"data": []},
    {"source": ""},
    {"source": "s" * 501},
    {"source": "a\x00"},
    {"subject": ""},
    {"subject": 7},
    {"subject": "cus_\x00"},
    {"externalSubject": "ext-1"},
    {"idempotencyKey": ""},
    {"idempotencyKey": "k" * 256},
    {"idempotencyKey": "k\x00"},
    {"externalId": "ok_1"},
    {"externalId": "bad id"},
    {"namespace": "org_1"},
    {"namespace": "org_other"},
    {"namespace": ""},
    {"unknown": 1},
    {"unknown": None},
    {"externalId": None},
    {"externalSubject": None},
    {"namespace": None},
    {"idempotencyKey": None},
    {"timestamp": "2026-03-10T13:59:00+02:00"},
    {"type": "other"},
]


@pytest.mark.parametrize("changes", VARIANTS, ids=[repr(v)[:40] for v in VARIANTS])
def test_the_fast_pass_agrees_with_the_full_check(changes):
    raw = {**BASE, **changes}
    raw = {key: value for key, value in raw.items() if value is not None or key != "timestamp"}
    limit = NOW + timedelta(minutes=5)
    memo = services._Memo(valid_types={"llm"})

    fast = services._validate_common(0, raw, "org_1", ROUTES, NOW, limit, memo)
    full = services._validate(
        0, raw, merchant_id="org_1", routes=ROUTES, now=NOW, future_limit=limit, memo=services._Memo()
    )

    if fast is not None:
        assert full.__class__ is services._Candidate
        assert fast == full
    # and the common event itself takes the fast pass
    if not changes or changes == {"data": {"input_tokens": "12.5"}}:
        assert fast is not None

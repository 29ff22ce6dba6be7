"""Running counters of dimensional prices: a customer's {model: tokens} map is kept in one counter row, so
a request with a warm counter reads no events; the map always equals the grouped SQL aggregate (the
invoice's source of truth) and the debits stay the increments of the per-model lines."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import MetricFilter
from invoicing import usage_counters
from invoicing.models import Invoice, InvoiceKind, RealtimeUsageCounter
from invoicing.realtime import events_ingest_and_debit, events_link_and_debit
from invoicing.services import billing_run_execute, invoice_finalize
from metering.selectors import usage_aggregate_by_customer_and_values
from metering.services import events_ingest
from tests.factories import CustomerFactory

from .conftest import APRIL, EVENT_TYPE, MARCH, fund
from .test_dimensional_debits import subscribe_per_model
from .test_hot_path import STATEMENTS

pytestmark = pytest.mark.django_db

AT = MARCH + timedelta(days=3)
CLOSE = APRIL + timedelta(hours=1)
SMALL, LARGE = ("nle-small",), ("nle-large",)
_keys = iter(range(1, 10**9))


@pytest.fixture
def per_model(customer, product, tokens):
    return subscribe_per_model(customer, product, tokens)


def _raw(customer, data: dict, at=AT) -> dict:
    return {
        "type": EVENT_TYPE,
        "source": "https://api.example/test",
        "subject": customer.pk if customer else "",
        "timestamp": at.isoformat(),
        "idempotencyKey": f"dim-{next(_keys)}",
        "data": data,
    }


def _send(customer, *data: dict, at=AT, now=None):
    return events_ingest_and_debit(
        merchant=customer.merchant,
        raw_events=[_raw(customer, d, at) for d in data],
        now=now or at + timedelta(minutes=1),
    )


def _counter(customer) -> dict:
    row = RealtimeUsageCounter.objects.get(
        customer=customer,
        window_start=MARCH,
        window_end=APRIL,
        dimensions=usage_counters.dimensions_fingerprint(("$.model",)),
    )
    assert row.combinations["paths"] == ["$.model"]
    return {tuple(values): Decimal(quantity) for values, quantity in row.combinations["usage"]}


def _aggregate(customer, tokens) -> dict:
    return usage_aggregate_by_customer_and_values(
        metric=tokens, start=MARCH, end=APRIL, customers=[customer], paths=("$.model",)
    )[customer.pk]


def _event_reads(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "metering_usageevent" in q["sql"].lower()]


def test_the_first_request_creates_the_counter_from_the_aggregate(customer, per_model, tokens):
    # given 200 small and 500 large tokens stored before real-time debiting counted anything
    fund(customer, "100")
    events_ingest(
        merchant=customer.merchant,
        raw_events=[
            _raw(customer, {"model": "nle-small", "tokens": 200}),
            _raw(customer, {"model": "nle-large", "tokens": 500}),
        ],
        now=AT,
    )
    assert not RealtimeUsageCounter.objects.exists()

    # when the first real-time request adds 100 small tokens
    outcome = _send(customer, {"model": "nle-small", "tokens": 100})

    # then it is priced from the aggregate (200 → 300 small, 100 free at 0.0013 = 0.13) and the counter
    # holds every model's usage, the untouched one included
    assert [d.amount for d in outcome.debits] == [Decimal("0.13")]
    assert _counter(customer) == {SMALL: 300, LARGE: 500} == _aggregate(customer, tokens)


def test_the_next_request_is_priced_from_the_counter_without_reading_events(customer, per_model, tokens):
    # given a counter of 300 small and 500 large tokens
    fund(customer, "100")
    _send(customer, {"model": "nle-small", "tokens": 300}, {"model": "nle-large", "tokens": 500})

    # when 700 large tokens and 10 tokens without a model arrive
    with CaptureQueriesContext(connection) as queries:
        outcome = _send(customer, {"model": "nle-large", "tokens": 700}, {"tokens": 10})

    # then no statement reads events (only the insert touches them); large 500 → 1,200 crosses into the
    # second tier: 500 × 0.0107 + 200 × 0.0051 + 0.5 flat = 6.87, and 10 unmatched at 0.003 = 0.03
    assert [sql.lstrip().upper()[:6] for sql in _event_reads(queries)] == ["INSERT"]
    assert [d.amount for d in outcome.debits] == [Decimal("6.90")]
    assert (outcome.debits[0].usage_before, outcome.debits[0].usage_after) == (800, 1510)
    assert _counter(customer) == {SMALL: 300, LARGE: 1200, (None,): 10} == _aggregate(customer, tokens)


def test_a_warm_counter_costs_the_statements_of_a_counted_price_whatever_the_stored_events(
    customer, per_model, django_assert_num_queries
):
    # given a counter, then 60 more events over two models in three requests
    fund(customer, "1000")
    _send(customer, {"model": "nle-small", "tokens": 1})
    with django_assert_num_queries(STATEMENTS):
        first = _send(customer, {"model": "nle-large", "tokens": 10})
    for _ in range(3):
        _send(customer, *[{"model": m, "tokens": 5} for m in ("nle-small", "nle-large")] * 10)

    # when one more event arrives: the same statements as a plain counted price (the dimensional map is
    # read by the counters' statement and written by the batch's upsert), no grouped aggregate
    with django_assert_num_queries(STATEMENTS) as queries:
        outcome = _send(customer, {"model": "nle-large", "tokens": 10})

    # then no statement reads events, and each is debited its 10 large tokens at 0.0107
    assert [sql.lstrip().upper()[:6] for sql in _event_reads(queries)] == ["INSERT"]
    assert [d.amount for d in first.debits] == [d.amount for d in outcome.debits] == [Decimal("0.107")]


def test_an_edited_metric_rebuilds_the_counter_from_the_events(customer, per_model, tokens):
    # given a counter of 1,100 large tokens without a status
    fund(customer, "100")
    _send(customer, {"model": "nle-large", "tokens": 1100})
    assert _counter(customer) == {LARGE: 1100}

    # when finance counts only status = ok and 100 large ok tokens arrive
    MetricFilter.objects.create(metric=tokens, property_path="$.status", operator="eq", values=["ok"])
    outcome = _send(customer, {"model": "nle-large", "tokens": 100, "status": "ok"})

    # then the usage before is re-read under the new definition (none), so 100 tokens at 0.0107
    [debit] = outcome.debits
    assert (debit.usage_before, debit.usage_after, debit.amount) == (0, 100, Decimal("1.07"))
    assert _counter(customer) == {LARGE: 100} == _aggregate(customer, tokens)


def test_values_python_renders_like_sql_use_the_counter(customer, per_model, tokens):
    # given a counter
    fund(customer, "100")
    _send(customer, {"model": "nle-small", "tokens": 1})

    # when the model is a boolean, an integer, JSON null, a string and missing
    with CaptureQueriesContext(connection) as queries:
        outcome = _send(
            customer,
            {"model": True, "tokens": 1},
            {"model": 7, "tokens": 2},
            {"model": None, "tokens": 3},
            {"model": "7", "tokens": 4},
            {"tokens": 5},
        )

    # then they are grouped as the aggregate groups them ("7" and 7 are one value; null and missing too),
    # without reading events: 15 unmatched tokens at 0.003
    assert [sql.lstrip().upper()[:6] for sql in _event_reads(queries)] == ["INSERT"]
    assert [d.amount for d in outcome.debits] == [Decimal("0.045")]
    assert _counter(customer) == {SMALL: 1, ("true",): 1, ("7",): 6, (None,): 8} == _aggregate(customer, tokens)


def test_an_event_without_a_value_makes_its_combination_present(customer, per_model, tokens):
    # given a counter
    fund(customer, "100")
    _send(customer, {"model": "nle-small", "tokens": 1})

    # when events of new models arrive without tokens (missing, JSON null)
    outcome = _send(customer, {"model": "nle-xl"}, {"model": "nle-large", "tokens": None})

    # then they add nothing to pay, but their combinations are in the map with 0, as the aggregate has them
    assert [d.amount for d in outcome.debits] == [0]
    assert _counter(customer) == {SMALL: 1, ("nle-xl",): 0, LARGE: 0} == _aggregate(customer, tokens)


@pytest.mark.parametrize("model", [1.5, {"name": "nle-large"}, ["nle-large"], 2**63], ids=repr)
def test_a_value_python_cannot_render_like_sql_falls_back_to_the_aggregate(customer, per_model, tokens, model):
    # given a counter
    fund(customer, "100")
    _send(customer, {"model": "nle-small", "tokens": 1})

    # when the model is a float, an object, an array or an integer beyond 64 signed bits (the databases may write it otherwise)
    with CaptureQueriesContext(connection) as queries:
        outcome = _send(customer, {"model": model, "tokens": 10}, {"model": "nle-small", "tokens": 200})

    # then the usage after is aggregated again (not guessed), and the counter rewritten from it: 10 tokens
    # at the default 0.003 plus 200 small (100 free → 101 of them at 0.0013)
    grouped = [sql for sql in _event_reads(queries) if "GROUP BY" in sql.upper()]
    assert len(grouped) == 1
    assert [d.amount for d in outcome.debits] == [Decimal("0.03") + Decimal("0.1313")]
    assert _counter(customer) == _aggregate(customer, tokens)
    assert _counter(customer)[SMALL] == 201 and len(_counter(customer)) == 2


def test_a_late_event_drops_the_counter(customer, per_model, tokens):
    # given March counted and its invoice issued
    fund(customer, "100")
    _send(customer, {"model": "nle-large", "tokens": 100})
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    invoice = Invoice.objects.get(subscription=per_model, kind=InvoiceKind.RECURRING, period_start=MARCH)
    invoice_finalize(invoice=invoice, now=CLOSE)
    assert _counter(customer) == {LARGE: 100}

    # when an event of March arrives after the invoice was issued
    outcome = _send(customer, {"model": "nle-large", "tokens": 50}, now=CLOSE + timedelta(days=2))

    # then it is not debited and March's counter is gone (a later read aggregates the events again)
    assert outcome.debits == [] and outcome.late_event_ids == [outcome.accepted[0].id]
    assert not RealtimeUsageCounter.objects.filter(customer=customer, window_start=MARCH).exists()


def test_beyond_the_bound_on_combinations_no_counter_is_kept(customer, per_model, tokens, monkeypatch):
    # given a counter of two models, then a bound of two combinations
    fund(customer, "100")
    _send(customer, {"model": "nle-small", "tokens": 100}, {"model": "nle-large", "tokens": 100})
    assert len(_counter(customer)) == 2
    monkeypatch.setattr(usage_counters, "MAX_COMBINATIONS", 2)

    # when a third model is used
    outcome = _send(customer, {"model": "nle-xl", "tokens": 100})

    # then it is still debited exactly (100 at the default 0.003) but the counter is removed, and the next
    # request is priced from the aggregate
    assert [d.amount for d in outcome.debits] == [Decimal("0.3")]
    assert not RealtimeUsageCounter.objects.filter(customer=customer).exists()
    with CaptureQueriesContext(connection) as queries:
        outcome = _send(customer, {"model": "nle-large", "tokens": 100})
    # before from the aggregate, after from it plus the request's events (no second read)
    assert len([sql for sql in _event_reads(queries) if "GROUP BY" in sql.upper()]) == 1
    assert [d.amount for d in outcome.debits] == [Decimal("1.07")]
    assert not RealtimeUsageCounter.objects.filter(customer=customer).exists()


def test_linking_early_events_writes_their_counter(merchant, product, tokens):
    # given 1,200 large tokens sent by external id before the customer existed
    early = [{**_raw(None, {"model": "nle-large", "tokens": n}), "externalSubject": "acme-crm-7"} for n in (800, 400)]
    for item in early:
        del item["subject"]
    events_ingest_and_debit(merchant=merchant, raw_events=early, now=AT)
    crm = CustomerFactory(merchant=merchant, name="Acme CRM", currency="USD", time_zone="UTC", external_id="acme-crm-7")
    subscribe_per_model(crm, product, tokens)
    fund(crm, "100", now=AT)

    # when the beat links them
    outcome = events_link_and_debit(now=AT + timedelta(hours=1))

    # then their usage is debited (1,000 × 0.0107 + 200 × 0.0051 + 0.5 flat = 12.22) and counted, so the
    # next request is priced from the counter (100 small tokens, all free)
    assert [d.amount for d in outcome.debits] == [Decimal("12.22")]
    assert _counter(crm) == {LARGE: 1200}
    with CaptureQueriesContext(connection) as queries:
        later = _send(crm, {"model": "nle-small", "tokens": 100}, at=AT + timedelta(hours=2))
    # (the first insert is the post-paid one-statement try, declined: this process never saw the customer)
    assert [sql.lstrip().upper()[:6] for sql in _event_reads(queries)] == ["INSERT", "INSERT"]
    assert [(d.usage_before, d.usage_after, d.amount) for d in later.debits] == [(1200, 1300, 0)]
    assert _counter(crm) == {LARGE: 1200, SMALL: 100}


def test_the_counter_equals_the_aggregate_after_random_batches(customer, per_model, tokens):
    # given a filtered metric (status not "error"), a tight block-policy balance that refuses some
    # events, duplicates, and events stored before the counter existed
    MetricFilter.objects.create(metric=tokens, property_path="$.status", operator="neq", values=["error"])
    fund(customer, "6", policy="block")
    rng = random.Random(20261208)
    events_ingest(
        merchant=customer.merchant, raw_events=[_random_event(rng, customer, f"early-{i}") for i in range(4)], now=AT
    )
    keys: list[str] = []
    refused = duplicates = 0

    # when many random batches arrive (model and status values of every JSON type)
    for batch in range(40):
        raw = []
        for i in range(rng.randint(1, 5)):
            key = rng.choice(keys) if keys and rng.random() < 0.2 else f"b{batch}-{i}"
            keys.append(key)
            raw.append(_random_event(rng, customer, key))
        outcome = events_ingest_and_debit(merchant=customer.merchant, raw_events=raw, now=AT + timedelta(days=1))
        refused += len(outcome.refusals)
        duplicates += outcome.counts["duplicate"]

        # then the map kept for the next request is the grouped aggregate of the stored events
        assert _counter(customer) == _aggregate(customer, tokens), batch

    assert refused > 0 and duplicates > 0  # the loop did exercise both


def _random_event(rng: random.Random, customer, key: str) -> dict:
    data: dict = {}
    for name, choices in (
        ("tokens", [1, 20, 300, "4", "0.5", 2.25, None, "missing"]),
        ("model", ["nle-small", "nle-large", "nle-xl", "7", 7, True, False, None, 1.5, ["nle-small"], "missing"]),
        ("status", ["ok", "error", None, True, {"code": "error"}, "missing"]),
    ):
        value = rng.choice(choices)
        if value != "missing":
            data[name] = value
    raw = _raw(customer, data, at=AT - timedelta(hours=rng.randint(0, 40)))
    raw["idempotencyKey"] = key
    return raw

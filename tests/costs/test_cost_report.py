"""/v0/costs/report: costs grouped by cost, product or customer, with windows and the prior period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from paygentic_sdk import Paygentic

from catalog.services import api_key_create
from metering.models import UsageEvent
from tests.factories import CustomerFactory, MerchantFactory, ProductFactory
from tests.invoicing.factories import record_usage

from .conftest import FEB_1, JAN_1, gpu_cost

PERIOD = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}
APRIL = {"from": "2026-04-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}
MARCH_1 = datetime(2026, 3, 1, tzinfo=UTC)
MARCH_1_Z = "2026-03-01T00:00:00Z"
APRIL_1 = datetime(2026, 4, 1, tzinfo=UTC)


def _usage(merchant, product):
    """January: Acme 1,000 GPU-seconds ($0.50) and 100 GB stored at $0.02 ($2.00); Brio 200 GPU-seconds
    ($0.10). December: Acme 500 GPU-seconds ($0.25)."""
    gpu = gpu_cost(product)
    storage = gpu_cost(
        ProductFactory(merchant=merchant, name="Storage"),
        name="Storage",
        unit="GB",
        unit_cost="0.02",
        event_type="storage.used",
        value_property="$.gb",
        group_by={},
    )
    acme, brio = CustomerFactory(merchant=merchant, name="Acme"), CustomerFactory(merchant=merchant, name="Brio")
    record_usage(acme, gpu, JAN_1 + timedelta(days=1), 1000, gpu="a100")
    record_usage(brio, gpu, JAN_1 + timedelta(days=2), 200, gpu="a100")
    record_usage(acme, storage, JAN_1 + timedelta(days=2), 100)
    record_usage(acme, gpu, JAN_1 - timedelta(days=3), 500, gpu="a100")
    return gpu, storage, acme, brio


@pytest.mark.django_db
def test_report_by_customer_with_windows_prior_period_and_other(api, merchant, gpu_product):
    gpu, storage, acme, brio = _usage(merchant, gpu_product)

    status, body = api.get(
        "/v0/costs/report", groupBy="customer", topN="1", windowSize="DAY", comparePriorPeriod="true", **PERIOD
    )

    assert status == 200, body
    assert (body["totalCost"], body["groupCount"], body["currency"]) == (2.6, 2, "USD")
    [first, other] = body["groups"]
    assert (first["label"], first["totalCost"], first["percentOfTotal"], first["isOther"]) == (
        "Acme",
        2.5,
        96.15,
        False,
    )
    assert first["priorPeriod"] == {"cost": 0.25, "changePercent": 900}
    assert (other["key"], other["totalCost"], other["isOther"]) == ("__other__", 0.1, True)
    assert [(w["windowStart"][:10], w["groups"]) for w in body["timeSeries"]] == [
        ("2026-01-02", {acme.id: 0.5}),
        ("2026-01-03", {"__other__": 0.1, acme.id: 2}),
    ]


@pytest.mark.django_db
def test_report_by_cost_and_by_product(api, merchant, gpu_product):
    gpu, storage, *_ = _usage(merchant, gpu_product)

    by_cost = api.get("/v0/costs/report", groupBy="cost", sort="totalQuantity", sortDir="asc", **PERIOD)[1]
    by_product = api.get("/v0/costs/report", groupBy="product", costId=gpu.id, **PERIOD)[1]

    assert [(g["label"], g["totalQuantity"], g["totalCost"], g["unit"]) for g in by_cost["groups"]] == [
        ("Storage", 100, 2, "GB"),
        ("GPU time", 1200, 0.6, "GPU-seconds"),
    ]
    assert [(g["label"], g["totalCost"]) for g in by_product["groups"]] == [("GPU cloud", 0.6)]


@pytest.mark.django_db
def test_report_bounds(api, merchant, other_merchant):
    assert api.get("/v0/costs/report", groupBy="region", **PERIOD)[0] == 400
    status, body = api.get(
        "/v0/costs/report", groupBy="cost", windowSize="HOUR", to="2026-06-01T00:00:00Z", **{"from": PERIOD["from"]}
    )
    assert (status, body["errors"][0]["code"]) == (400, "parameter_combination")
    assert api.get("/v0/costs/report", groupBy="cost", merchantId=other_merchant.id, **PERIOD)[0] == 403
    assert api.get("/v0/costs/report", groupBy="cost", subject="cus_nope", **PERIOD)[0] == 404


@pytest.mark.django_db(transaction=True)
def test_the_client_reads_the_cost_report(live_server):
    merchant = MerchantFactory(name="GPU Labs")
    _usage(merchant, ProductFactory(merchant=merchant, name="GPU cloud"))
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        result = sdk.costs.get_cost_report(from_=JAN_1, to=FEB_1, group_by="product", window_size="MONTH")
        april = sdk.costs.get_cost_report(from_=APRIL_1, to=APRIL_1 + timedelta(days=30), group_by="product")
        in_euros = sdk.costs.get_cost_report(
            from_=APRIL_1, to=APRIL_1 + timedelta(days=30), group_by="cost", currency="EUR"
        )

    # the client tells the three apart: a range, null (none at any time), absent (not resolved)
    assert (april.cost_range.from_, april.cost_range.to) == (JAN_1 - timedelta(days=3), JAN_1 + timedelta(days=2))
    assert in_euros.cost_range is None and "cost_range" in in_euros.model_fields_set
    assert "cost_range" not in result.model_fields_set
    assert (result.total_cost, result.currency, result.pagination.total) == (2.6, "USD", 2)
    assert [(g.label, g.total_cost) for g in result.groups] == [("Storage", 2.0), ("GPU cloud", 0.6)]
    assert [sorted(w.groups.values()) for w in result.time_series] == [[0.6, 2.0]]


@pytest.mark.django_db
def test_report_by_an_event_dimension_of_one_cost(api, merchant, gpu_product):
    # given: January's A100 seconds (Acme 1,000 + Brio 200) and 400 H100 seconds, at $0.0005 each
    gpu, storage, acme, brio = _usage(merchant, gpu_product)
    record_usage(acme, gpu, JAN_1 + timedelta(days=4), 400, gpu="h100")

    # when
    with CaptureQueriesContext(connection) as queries:
        status, body = api.get("/v0/costs/report", groupBy="gpu", costId=gpu.id, windowSize="MONTH", **PERIOD)

    # then: a100 1,200 × 0.0005 = 0.60 (75 % of 0.80), h100 400 × 0.0005 = 0.20 (25 %)
    assert status == 200, body
    assert (body["groupBy"], body["totalCost"], body["totalQuantity"]) == ("gpu", 0.8, 1600)
    assert [
        (g["key"], g["label"], g["totalQuantity"], g["totalCost"], g["percentOfTotal"]) for g in body["groups"]
    ] == [
        ("a100", "a100", 1200, 0.6, 75),
        ("h100", "h100", 400, 0.2, 25),
    ]
    assert [w["groups"] for w in body["timeSeries"]] == [{"a100": 0.6, "h100": 0.2}]
    assert (body["availableDimensions"], body["groupCount"], body["emptyGroupCount"]) == (["gpu"], 2, 0)
    # one grouped query for the totals, one for the windows
    assert len([q for q in queries.captured_queries if "metering_usageevent" in q["sql"]]) == 2


@pytest.mark.django_db
def test_report_filtered_by_a_dimension_value(api, merchant, gpu_product):
    # given: as above; Storage defines no gpu dimension, so none of its usage has gpu=h100
    gpu, storage, acme, brio = _usage(merchant, gpu_product)
    record_usage(acme, gpu, JAN_1 + timedelta(days=4), 400, gpu="h100")

    # when
    status, body = api.get("/v0/costs/report", groupBy="customer", filterGroupBy='{"gpu": "h100"}', **PERIOD)

    # then: only Acme's 400 H100 seconds, $0.20
    assert status == 200, body
    assert [(g["label"], g["totalQuantity"], g["totalCost"]) for g in body["groups"]] == [("Acme", 400, 0.2)]
    assert body["availableDimensions"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"groupBy": "gpu"}, "groupBy"),  # a dimension needs exactly one costId
        ({"groupBy": "region", "costId": "GPU"}, "groupBy"),  # the cost has no such dimension
        ({"groupBy": "cost", "filterGroupBy": '{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1"}'}, "filterGroupBy"),
    ],
)
@pytest.mark.django_db
def test_report_refuses_a_dimension_it_cannot_group_or_filter_by(api, merchant, gpu_product, query, field):
    gpu = gpu_cost(gpu_product)
    query = {**query, "costId": gpu.id} if "costId" in query else query

    status, body = api.get("/v0/costs/report", **query, **PERIOD)

    assert status == 400, body
    assert (body["errors"][0]["field"], body["errors"][0]["code"]) == (field, "parameter_combination")


@pytest.mark.django_db
def test_report_refuses_a_filter_that_is_not_an_object_of_values(api, merchant):
    status, body = api.get("/v0/costs/report", groupBy="cost", filterGroupBy='{"gpu": 7}', **PERIOD)

    assert status == 400, body
    assert body["errors"][0]["field"] == "filterGroupBy"


@pytest.mark.django_db
def test_an_empty_report_says_where_the_cost_events_lie(api, merchant, gpu_product):
    # given: GPU events on 29 December (Acme), 2 January (Acme) and 3 January (Brio); a storage event on
    # 3 January (Acme); and a GPU event on 1 March whose subject is no customer
    gpu, storage, acme, brio = _usage(merchant, gpu_product)
    UsageEvent.objects.create(
        merchant=merchant,
        external_subject="unknown-subject",
        event_type=gpu.event_type,
        timestamp=MARCH_1,
        received_at=MARCH_1,
        idempotency_key="unattributed",
        data={"seconds": "50", "gpu": "a100"},
    )

    # when: April holds no cost event
    with CaptureQueriesContext(connection) as queries:
        status, by_cost = api.get("/v0/costs/report", groupBy="cost", **APRIL)
    # read before the next request resets the log: one grouped query per cost (2), then one for the range
    event_queries = len([q for q in queries.captured_queries if "metering_usageevent" in q["sql"]])
    by_customer = api.get("/v0/costs/report", groupBy="customer", **APRIL)[1]
    storage_only = api.get("/v0/costs/report", groupBy="cost", costId=storage.id, **APRIL)[1]
    brio_only = api.get("/v0/costs/report", groupBy="cost", subject=brio.id, **APRIL)[1]
    h100 = api.get("/v0/costs/report", groupBy="cost", filterGroupBy='{"gpu": "h100"}', **APRIL)[1]
    in_euros = api.get("/v0/costs/report", groupBy="cost", currency="EUR", **APRIL)[1]
    january = api.get("/v0/costs/report", groupBy="cost", **PERIOD)[1]

    # then: the first and last cost event instants under the report's own filters, both included
    assert status == 200, by_cost
    assert (by_cost["totalCost"], by_cost["costRange"]) == (0, {"from": "2025-12-29T00:00:00Z", "to": MARCH_1_Z})
    # grouped by customer, the unattributed event counts nowhere, so it bounds nothing
    assert by_customer["costRange"] == {"from": "2025-12-29T00:00:00Z", "to": "2026-01-03T00:00:00Z"}
    assert storage_only["costRange"] == {"from": "2026-01-03T00:00:00Z", "to": "2026-01-03T00:00:00Z"}
    assert brio_only["costRange"] == {"from": "2026-01-03T00:00:00Z", "to": "2026-01-03T00:00:00Z"}
    # null: no such cost event at any time (no h100 usage; no cost defined in EUR)
    assert h100["costRange"] is None and "costRange" in h100
    assert in_euros["costRange"] is None and "costRange" in in_euros
    # absent when the period held cost (the client reads absence as "not resolved", never as "none")
    assert "costRange" not in january
    assert event_queries == 3

"""/v0/costs/report: costs grouped by cost, product or customer, with windows and the prior period."""

from __future__ import annotations

from datetime import timedelta

import pytest
from paygentic_sdk import Paygentic

from catalog.services import api_key_create
from tests.factories import CustomerFactory, MerchantFactory, ProductFactory
from tests.invoicing.factories import record_usage

from .conftest import FEB_1, JAN_1, gpu_cost

PERIOD = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


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

    assert (result.total_cost, result.currency, result.pagination.total) == (2.6, "USD", 2)
    assert [(g.label, g.total_cost) for g in result.groups] == [("Storage", 2.0), ("GPU cloud", 0.6)]
    assert [sorted(w.groups.values()) for w in result.time_series] == [[0.6, 2.0]]

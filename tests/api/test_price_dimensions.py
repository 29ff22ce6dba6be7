"""/v0/prices ``dimensionalRates`` (our extension): rates per event property value, validated by the engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Price
from catalog.pricing import rate_dimensional
from catalog.pricing_adapter import dimension_paths, price_dimensional_spec
from tests.factories import BillableMetricFactory, PlanFactory

RATES = {
    "dimensions": ["model"],
    "tierScope": "combination",
    "unmatched": "default",
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001", "freeUnits": "1000"},
        {
            "values": {"model": "nle-large"},
            "model": "graduated",
            "tiers": [{"upTo": "1000000", "unitPrice": "0.000004"}, {"upTo": None, "unitPrice": "0.000003"}],
        },
    ],
}


@pytest.fixture
def metric(merchant):
    return BillableMetricFactory(product__merchant=merchant, name="Input tokens", unit="tokens")


def body(metric, **extra):
    return {
        "billableMetricId": metric.id,
        "model": "standard",
        "invoiceDisplayName": "Input tokens",
        "paymentTerm": "in_arrears",
        "properties": {"unitPrice": "0.000002"},
        **extra,
    }


def test_a_price_with_rates_per_model_is_stored_and_read_back_as_sent(api, metric):
    status, created = api.post("/v0/prices", body(metric, dimensionalRates=RATES))
    assert status == 201, created
    assert created["dimensionalRates"] == RATES
    status, read = api.get(f"/v0/prices/{created['id']}")
    assert status == 200 and read["dimensionalRates"] == RATES


def test_the_stored_rates_rate_each_model_with_the_price_as_default(api, metric):
    # given a price on a USD plan
    _, created = api.post("/v0/prices", body(metric, dimensionalRates=RATES))
    price = Price.objects.get(pk=created["id"])
    price.plan = PlanFactory(merchant=price.merchant, product=metric.product, currency="USD")
    # when
    spec = price_dimensional_spec(price)
    result = rate_dimensional(
        spec, {("nle-small",): Decimal(3000), ("nle-large",): Decimal(1_500_000), ("x",): Decimal(500)}
    )
    # then 0.002 + 5.5 + 500 × 0.000002 (the price's own rate)
    assert [c.amount for c in result.combinations] == [Decimal("0.002"), Decimal("5.5"), Decimal("0.001")]
    assert dimension_paths(price) == ("$.model",)


def test_a_dimension_the_metric_groups_by_reads_the_metric_path(api, metric):
    metric.group_by = {"model": "$.request.model"}
    metric.save()
    _, created = api.post("/v0/prices", body(metric, dimensionalRates=RATES))
    assert dimension_paths(Price.objects.get(pk=created["id"])) == ("$.request.model",)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"dimensionalRates": {"dimensions": ["model"], "rates": [{"values": {"model": "a"}, "model": "dynamic"}]}},
            "model must be",
        ),
        ({"dimensionalRates": {**RATES, "tierScope": "sideways"}}, "tierScope must be"),
        ({"dimensionalRates": RATES, "minimumCommitment": "10"}, "no usage discount"),
        ({"dimensionalRates": {"dimensions": [], "rates": []}}, "at least one dimension"),
    ],
)
def test_invalid_rates_answer_400_on_the_field(api, metric, extra, message):
    status, answer = api.post("/v0/prices", body(metric, **extra))
    assert status == 400
    fields = {error["field"]: error["message"] for error in answer["errors"]} if "errors" in answer else answer
    assert message in str(fields.get("dimensionalRates")), answer


def test_a_fee_has_no_rates_per_property(api, merchant):
    from tests.factories import FeeFactory

    fee = FeeFactory(product__merchant=merchant)
    status, answer = api.post(
        "/v0/prices",
        {
            "feeId": fee.id,
            "invoiceDisplayName": "Platform",
            "paymentTerm": "in_advance",
            "billingCadence": "P1M",
            "properties": {"unitPrice": "10"},
            "dimensionalRates": RATES,
        },
    )
    assert status == 400 and "fee has one amount" in str(answer)

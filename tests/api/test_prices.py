"""/v0/prices: every property shape, our extensions, validation through the model rules, 409s."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Price
from tests.factories import (
    BillableMetricFactory,
    FeeFactory,
    FeePriceFactory,
    MeteredPriceFactory,
    SubscriptionFactory,
)


@pytest.fixture
def metric(merchant):
    return BillableMetricFactory(product__merchant=merchant, name="Input tokens")


def metric_price(metric, model, properties, **extra):
    return {
        "billableMetricId": metric.id,
        "model": model,
        "invoiceDisplayName": "Input tokens",
        "paymentTerm": "in_arrears",
        "properties": properties,
        **extra,
    }


def test_create_standard_answers_every_required_key(api, merchant, metric):
    # when
    status, body = api.post(
        "/v0/prices",
        metric_price(metric, "standard", {"unitPrice": "0.000002000"}, grantDiscountEnabled=False, isObligation=False),
    )

    # then
    price = Price.objects.get()
    assert status == 201
    assert body == {
        "id": price.id,
        "object": "price",
        "merchantId": merchant.id,
        "billableMetricId": metric.id,
        "invoiceDisplayName": "Input tokens",
        "invoiceDisplayGroup": None,
        "paymentTerm": "in_arrears",
        "model": "standard",
        "properties": {"unitPrice": "0.000002"},
        "billingCadence": None,
        "tax": {"supplyScope": "IN_SCOPE"},
        "quantity": 1,
        "grantDiscountEnabled": False,
        "isObligation": False,
        "rateType": "amount",
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
        "planId": None,
        "key": None,
        "freeUnits": "0",
        "usageDiscountUnits": None,
        "discountPercent": None,
        "minimumCommitment": None,
        "allowsRebate": False,
        "dimensionalRates": None,
    }
    assert price.plan_id is None and price.unit_price == Decimal("0.000002")


def test_fee_price_accepts_snake_case_properties_and_a_quantity(api, merchant):
    fee = FeeFactory(product__merchant=merchant)

    status, body = api.post(
        "/v0/prices",
        {
            "feeId": fee.id,
            "invoiceDisplayName": "Seats",
            "paymentTerm": "in_advance",
            "billingCadence": "P1M",
            "properties": {"unit_price": "49.00"},
            "quantity": 3,
            "tax": {"supplyScope": "OUTSIDE_SCOPE"},
        },
    )

    assert status == 201
    assert (body["properties"], body["quantity"], body["feeId"], body["tax"]) == (
        {"unitPrice": "49"},
        3,
        fee.id,
        {"supplyScope": "OUTSIDE_SCOPE"},
    )
    assert "billableMetricId" not in body


@pytest.mark.parametrize(
    ("model", "properties", "expected"),
    [
        (
            "volume",
            {"tiers": [{"upTo": "1000", "unitPrice": "0.002"}, {"upTo": None, "unitPrice": "0.001"}]},
            {"tiers": [{"upTo": "1000", "unitPrice": "0.002"}, {"upTo": None, "unitPrice": "0.001"}]},
        ),
        (
            "graduated",
            {"tiers": [{"up_to": 1000, "unit_price": "0", "flat_fee": "5"}, {"up_to": None, "unit_price": "0.01"}]},
            {
                "tiers": [
                    {"upTo": "1000", "unitPrice": "0", "flatFee": "5"},
                    {"upTo": None, "unitPrice": "0.01", "flatFee": "0"},
                ]
            },
        ),
        (
            "package",
            {"unitPrice": "2.00", "packageSize": "1000", "packageRounding": "up"},
            {"unitPrice": "2", "packageSize": "1000", "packageRounding": "up"},
        ),
        (
            "standard",
            {"unitPrice": "0.002", "packageSize": "1000"},
            {"unitPrice": "0.002", "packageSize": "1000", "packageRounding": "exact"},
        ),
        (
            "percentage",
            {"percentage": "0.029", "minCharge": "0", "maxCharge": "0", "fixedFeePerEvent": "0.30"},
            {"percentage": "0.029", "minCharge": "0", "maxCharge": "0", "fixedFeePerEvent": "0.3"},
        ),
        (
            "dynamic",
            {"mode": "event_price", "eventPriceProperty": "$.unit_price", "minPrice": "0.01", "maxPrice": "0.10"},
            {"minPrice": "0.01", "maxPrice": "0.1", "mode": "event_price", "eventPriceProperty": "$.unit_price"},
        ),
        (
            "dynamic",
            {"rates": [{"effectiveFrom": "2026-01-01T00:00:00Z", "unitPrice": "0.02"}]},
            {
                "minPrice": "0",
                "maxPrice": "0",
                "mode": "schedule",
                "rates": [{"effectiveFrom": "2026-01-01T00:00:00Z", "unitPrice": "0.02"}],
            },
        ),
    ],
)
def test_property_shapes_round_trip(api, metric, model, properties, expected):
    status, body = api.post("/v0/prices", metric_price(metric, model, properties))

    assert status == 201, body
    assert (body["model"], body["properties"]) == (model, expected)
    assert api.get(f"/v0/prices/{body['id']}")[1]["properties"] == expected


def test_extension_fields_are_stored_and_returned(api, metric):
    status, body = api.post(
        "/v0/prices",
        metric_price(
            metric,
            "standard",
            {"unitPrice": "-0.001"},
            freeUnits="10000",
            usageDiscountUnits="500",
            discountPercent="40",
            minimumCommitment="25.00",
            allowsRebate=True,
        ),
    )

    assert status == 201, body
    assert (body["freeUnits"], body["usageDiscountUnits"], body["discountPercent"], body["minimumCommitment"]) == (
        "10000",
        "500",
        "40",
        "25",
    )
    price = Price.objects.get()
    assert (price.unit_price, price.allows_rebate, price.free_units) == (Decimal("-0.001"), True, Decimal("10000"))


@pytest.mark.parametrize(
    ("model", "properties", "field"),
    [
        ("standard", {}, "properties.unitPrice"),
        ("standard", {"unitPrice": "-1"}, "properties.unitPrice"),
        ("standard", {"unitPrice": "abc"}, "properties.unitPrice"),
        ("standard", {"unitPrice": "1", "colour": "red"}, "properties.colour"),
        ("package", {"unitPrice": "1"}, "properties.packageSize"),
        ("volume", {"tiers": []}, "properties.tiers"),
        ("volume", {"tiers": [{"upTo": "10", "unitPrice": "1"}]}, "properties.tiers"),
        (
            "graduated",
            {"tiers": [{"upTo": "10", "unitPrice": "1"}, {"upTo": "5", "unitPrice": "1"}]},
            "properties.tiers",
        ),
        ("percentage", {"percentage": "11", "minCharge": "0", "maxCharge": "0"}, "properties.percentage"),
        ("dynamic", {"mode": "event_price"}, "properties.eventPriceProperty"),
        ("surge", {"unitPrice": "1"}, "model"),
    ],
)
def test_invalid_properties_name_the_field(api, metric, model, properties, field):
    status, body = api.post("/v0/prices", metric_price(metric, model, properties))

    assert status == 400
    assert body["error"] == "validation_error"
    assert field in [e["field"] for e in body["errors"]], body
    assert not Price.objects.exists()


def test_needs_exactly_one_of_metric_or_fee(api, merchant, metric):
    fee = FeeFactory(product__merchant=merchant)
    both = {**metric_price(metric, "standard", {"unitPrice": "1"}), "feeId": fee.id}

    status, body = api.post("/v0/prices", both)
    assert status == 400 and body["errors"][0]["field"] == "billableMetricId"

    status, body = api.post(
        "/v0/prices", {**metric_price(metric, "standard", {"unitPrice": "1"}), "billableMetricId": "bm_nope"}
    )
    assert status == 400 and body["errors"][0] == {
        "field": "billableMetricId",
        "message": "No such object: “bm_nope”.",
        "code": "does_not_exist",
    }


def test_fee_price_without_cadence_is_refused_by_the_model_rules(api, merchant):
    fee = FeeFactory(product__merchant=merchant)

    status, body = api.post(
        "/v0/prices",
        {"feeId": fee.id, "invoiceDisplayName": "Fee", "paymentTerm": "in_advance", "properties": {"unitPrice": "1"}},
    )

    assert status == 400 and [e["field"] for e in body["errors"]] == ["billingCadence"]


def test_list_and_filter_by_metric(api, merchant, metric):
    price = MeteredPriceFactory(plan__product__merchant=merchant)
    api.post("/v0/prices", metric_price(metric, "standard", {"unitPrice": "1"}))

    status, body = api.get("/v0/prices", billableMetricId=price.billable_metric_id)

    assert status == 200
    assert [p["id"] for p in body["data"]] == [price.id]
    assert body["data"][0]["planId"] == price.plan_id
    assert body["pagination"] == {"limit": 10, "offset": 0, "total": 1}


def test_patch_changes_the_price_when_nothing_bills_it(api, metric):
    _, created = api.post("/v0/prices", metric_price(metric, "standard", {"unitPrice": "1"}))

    status, body = api.patch(
        f"/v0/prices/{created['id']}",
        {
            "model": "volume",
            "properties": {"tiers": [{"upTo": "10", "unitPrice": "2"}, {"upTo": None, "unitPrice": "1"}]},
        },
    )

    assert status == 200, body
    assert body["model"] == "volume"
    price = Price.objects.get()
    assert price.unit_price is None
    assert [(t.up_to, t.unit_price) for t in price.tiers.all()] == [(Decimal("10"), Decimal("2")), (None, Decimal("1"))]


def test_patch_model_without_properties_is_refused(api, metric):
    _, created = api.post("/v0/prices", metric_price(metric, "standard", {"unitPrice": "1"}))

    status, body = api.patch(f"/v0/prices/{created['id']}", {"model": "volume"})

    assert status == 400 and body["errors"][0]["field"] == "properties"


def test_patch_pricing_of_a_billed_price_answers_409_price_in_use(api, merchant):
    # given
    price = MeteredPriceFactory(plan__product__merchant=merchant, unit_price=Decimal("0.000002"))
    SubscriptionFactory(plan=price.plan)

    # when
    status, body = api.patch(
        f"/v0/prices/{price.id}", {"properties": {"unitPrice": "0.000003"}, "paymentTerm": "in_arrears"}
    )

    # then
    assert status == 409
    assert body["code"] == "PRICE_IN_USE"
    assert body["details"] == {"priceId": price.id, "fields": ["properties"], "subscriptionCount": 1}
    price.refresh_from_db()
    assert price.unit_price == Decimal("0.000002")


def test_patch_display_name_of_a_billed_price_is_allowed(api, merchant):
    price = MeteredPriceFactory(plan__product__merchant=merchant)
    SubscriptionFactory(plan=price.plan)

    status, body = api.patch(
        f"/v0/prices/{price.id}", {"invoiceDisplayName": "Prompt tokens", "properties": {"unitPrice": "0.000002"}}
    )

    assert (status, body["invoiceDisplayName"]) == (200, "Prompt tokens")


def test_delete(api, merchant, metric):
    _, unattached = api.post("/v0/prices", metric_price(metric, "standard", {"unitPrice": "1"}))
    attached = FeePriceFactory(plan__product__merchant=merchant)

    assert api.delete(f"/v0/prices/{unattached['id']}") == (204, None)
    status, body = api.delete(f"/v0/prices/{attached.id}")
    assert status == 409
    assert body["details"]["blockers"] == [
        {"type": "plans", "count": 1, "items": [{"id": attached.plan_id, "name": attached.plan.name}]}
    ]


def test_features_are_refused_not_dropped(api, metric):
    status, body = api.post(
        "/v0/prices", metric_price(metric, "standard", {"unitPrice": "1"}, feature={"featureId": "f"})
    )
    assert status == 400 and body["errors"][0]["field"] == "feature"


@pytest.mark.parametrize(
    ("tiers", "field"),
    [
        (
            [{"upTo": "1000000000000000000000000000000", "unitPrice": "1"}, {"upTo": None, "unitPrice": "1"}],
            "properties.tiers.0.upTo",
        ),
        (
            [{"upTo": "10", "unitPrice": "0.0000000000001"}, {"upTo": None, "unitPrice": "1"}],
            "properties.tiers.0.unitPrice",
        ),
        # the shared bound (catalog.pricing.limits): 10^15 is one past it
        (
            [{"upTo": "10", "unitPrice": "1"}, {"upTo": None, "unitPrice": "1000000000000000"}],
            "properties.tiers.1.unitPrice",
        ),
    ],
)
def test_tier_values_beyond_the_stored_precision_are_a_400(api, metric, tiers, field):
    status, body = api.post("/v0/prices", metric_price(metric, "volume", {"tiers": tiers}))

    assert status == 400
    assert body["errors"] == [
        {
            "field": field,
            "message": "Enter a number with at most 15 digits before the decimal point and 12 after it.",
            "code": "out_of_bounds",
        }
    ]
    assert not Price.objects.exists()


def test_listing_prices_takes_a_fixed_number_of_queries(api, merchant, django_assert_num_queries):
    for _ in range(3):
        MeteredPriceFactory(plan__product__merchant=merchant)

    # auth (key) + count + prices + tiers + rates
    with django_assert_num_queries(5):
        status, body = api.get("/v0/prices")

    assert status == 200 and len(body["data"]) == 3

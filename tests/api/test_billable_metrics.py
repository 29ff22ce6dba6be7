"""/v0/billableMetrics: create, list (merchantId required), get, PATCH with null semantics, delete."""

from __future__ import annotations

from catalog.models import BillableMetric
from tests.factories import BillableMetricFactory, MeteredPriceFactory, ProductFactory


def test_create_answers_201(api, merchant):
    product = ProductFactory(merchant=merchant)

    status, body = api.post(
        "/v0/billableMetrics",
        {
            "merchantId": merchant.id,
            "productId": product.id,
            "name": "Input tokens",
            "description": "Prompt tokens",
            "unit": "tokens",
            "aggregation": "SUM",
            "eventType": "llm.completion",
            "valueProperty": "$.input_tokens",
            "groupBy": {"model": "$.model"},
        },
    )

    metric = BillableMetric.objects.get()
    assert status == 201
    assert body == {
        "id": metric.id,
        "object": "billableMetric",
        "merchantId": merchant.id,
        "productId": product.id,
        "name": "Input tokens",
        "description": "Prompt tokens",
        "unit": "tokens",
        "aggregation": "SUM",
        "eventType": "llm.completion",
        "itemId": None,
        "valueProperty": "$.input_tokens",
        "groupBy": {"model": "$.model"},
        "eventFrom": None,
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }


def test_create_applies_the_model_rules(api, merchant):
    product = ProductFactory(merchant=merchant)
    base = {"merchantId": merchant.id, "productId": product.id, "name": "n", "description": "", "unit": "calls"}

    status, body = api.post("/v0/billableMetrics", {**base, "aggregation": "SUM", "eventType": "x"})
    assert status == 400 and [e["field"] for e in body["errors"]] == ["valueProperty"]

    status, body = api.post("/v0/billableMetrics", {**base, "aggregation": "MEDIAN", "eventType": "x"})
    assert status == 400 and [e["field"] for e in body["errors"]] == ["aggregation"]

    status, body = api.post(
        "/v0/billableMetrics", {**base, "aggregation": "COUNT", "eventType": "x", "productId": "prod_nope"}
    )
    assert status == 400 and body["errors"][0]["field"] == "productId"


def test_create_requires_a_product(api, merchant):
    status, body = api.post(
        "/v0/billableMetrics",
        {
            "merchantId": merchant.id,
            "name": "n",
            "description": "",
            "unit": "calls",
            "aggregation": "COUNT",
            "eventType": "x",
        },
    )
    assert status == 400 and [e["field"] for e in body["errors"]] == ["productId"]


def test_list_requires_merchant_id_and_wraps_in_a_list_object(api, merchant):
    metric = BillableMetricFactory(product__merchant=merchant)
    BillableMetricFactory()

    status, body = api.get("/v0/billableMetrics")
    assert status == 400 and body["errors"][0]["field"] == "merchantId"

    status, body = api.get("/v0/billableMetrics", merchantId=merchant.id, productId=metric.product_id)
    assert status == 200
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [metric.id]
    assert body["pagination"] == {"limit": 10, "offset": 0, "total": 1}


def test_patch_null_clears_nullable_fields_and_absent_keeps(api, merchant):
    metric = BillableMetricFactory(
        product__merchant=merchant,
        aggregation="UNIQUE_COUNT",
        value_property="$.user",
        group_by={"m": "$.m"},
        item_id="itm_1",
    )

    status, body = api.patch(
        f"/v0/billableMetrics/{metric.id}", {"itemId": None, "valueProperty": None, "groupBy": None, "name": "Users"}
    )

    assert status == 200
    assert (body["itemId"], body["valueProperty"], body["groupBy"], body["name"]) == (None, None, {}, "Users")
    metric.refresh_from_db()
    assert (metric.item_id, metric.value_property, metric.group_by, metric.unit) == ("", "", {}, "tokens")


def test_patch_cannot_clear_the_value_of_a_sum(api, merchant):
    metric = BillableMetricFactory(product__merchant=merchant)

    status, body = api.patch(f"/v0/billableMetrics/{metric.id}", {"valueProperty": None})

    assert status == 400 and body["errors"][0]["field"] == "valueProperty"


def test_delete_answers_204_or_409_when_priced(api, merchant):
    unused = BillableMetricFactory(product__merchant=merchant)
    price = MeteredPriceFactory(plan__product__merchant=merchant, invoice_display_name="Input tokens")

    assert api.delete(f"/v0/billableMetrics/{unused.id}") == (204, None)
    status, body = api.delete(f"/v0/billableMetrics/{price.billable_metric_id}")
    assert status == 409
    assert body["details"]["blockers"] == [
        {"type": "prices", "count": 1, "items": [{"id": price.id, "invoiceDisplayName": "Input tokens"}]}
    ]

"""A key sees only its merchant's objects: another merchant's id is 404, naming another merchant is 403."""

from __future__ import annotations

import pytest

from catalog.models import BillableMetric, Customer, Fee, Plan, Price, Product
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    FeeFactory,
    MeteredPriceFactory,
    PlanFactory,
    ProductFactory,
)

RESOURCES = [
    ("products", ProductFactory, {"name": "Stolen"}),
    ("billableMetrics", BillableMetricFactory, {"name": "Stolen"}),
    ("fees", FeeFactory, {"name": "Stolen"}),
    ("prices", MeteredPriceFactory, {"invoiceDisplayName": "Stolen"}),
    ("plans", PlanFactory, {"name": "Stolen"}),
    ("customers", CustomerFactory, {"taxId": "Stolen"}),
]


@pytest.mark.parametrize(("resource", "factory", "change"), RESOURCES)
def test_another_merchants_object_is_not_found(rival, merchant, resource, factory, change):
    # given: an object of the api_client's merchant, seen through the rival's key
    obj = (
        factory(merchant=merchant)
        if factory in (ProductFactory, CustomerFactory)
        else factory(merchant=merchant, **_owner(factory, merchant))
    )

    # when / then
    for call in (rival.get(f"/v0/{resource}/{obj.pk}"), rival.patch(f"/v0/{resource}/{obj.pk}", change)):
        status, body = call
        assert status == 404
        assert body["error"] == "not_found" and body["message"]
    if resource != "plans":
        assert rival.delete(f"/v0/{resource}/{obj.pk}")[0] == 404
    model = type(obj)
    assert model.objects.filter(pk=obj.pk).exists()
    assert not model.objects.filter(pk=obj.pk, **_stolen(model)).exists()


def _owner(factory, merchant):
    if factory is MeteredPriceFactory:
        return {"plan__product__merchant": merchant}
    return {"product__merchant": merchant}


def _stolen(model):
    field = {Price: "invoice_display_name", Customer: "tax_id"}.get(model, "name")
    return {field: "Stolen"}


@pytest.mark.parametrize("path", ["/v0/products", "/v0/billableMetrics", "/v0/fees", "/v0/prices", "/v0/plans"])
def test_listing_another_merchant_is_forbidden(api, other_merchant, path):
    status, body = api.get(path, merchantId=other_merchant.id)

    assert status == 403
    assert body["error"] == "forbidden" and body["code"] == "FORBIDDEN_MERCHANT"


def test_listing_customers_of_another_organization_is_forbidden(api, other_merchant):
    status, body = api.get("/v0/customers", organizationId=other_merchant.id)
    assert status == 403


def test_lists_show_only_the_callers_objects(api, merchant, other_merchant):
    mine = MeteredPriceFactory(plan__product__merchant=merchant)
    MeteredPriceFactory(plan__product__merchant=other_merchant)
    CustomerFactory(merchant=other_merchant)

    assert [p["id"] for p in api.get("/v0/prices")[1]["data"]] == [mine.id]
    assert [p["id"] for p in api.get("/v0/plans")[1]["data"]] == [mine.plan_id]
    assert [p["id"] for p in api.get("/v0/products")[1]["data"]] == [mine.plan.product_id]
    assert api.get("/v0/billableMetrics", merchantId=merchant.id)[1]["data"][0]["id"] == mine.billable_metric_id
    assert api.get("/v0/customers", organizationId=merchant.id)[1]["data"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v0/products", {"name": "x", "description": ""}),
        (
            "/v0/billableMetrics",
            {"name": "x", "description": "", "unit": "u", "aggregation": "COUNT", "eventType": "e"},
        ),
        ("/v0/fees", {"name": "x", "description": ""}),
        ("/v0/plans", {"name": "x", "currency": "USD"}),
        ("/v0/customers", {"consumer": {"name": "x", "email": "x@example.com", "address": {}}}),
    ],
)
def test_creating_for_another_merchant_is_forbidden(api, merchant, other_merchant, path, body):
    product = ProductFactory(merchant=merchant)

    status, response = api.post(
        path,
        {"merchantId": other_merchant.id, "productId": product.id, **body}
        if path not in ("/v0/products", "/v0/customers")
        else {"merchantId": other_merchant.id, **body},
    )

    assert status == 403, response
    assert response["message"]
    assert not Customer.objects.exists()
    assert Product.objects.count() == 1
    assert not (BillableMetric.objects.exists() or Fee.objects.exists() or Plan.objects.exists())


def test_body_ids_of_another_merchant_are_unknown(api, merchant, other_merchant):
    their_product = ProductFactory(merchant=other_merchant)
    their_metric = BillableMetricFactory(product=their_product)

    status, body = api.post(
        "/v0/fees", {"merchantId": merchant.id, "productId": their_product.id, "name": "x", "description": ""}
    )
    assert status == 400 and body["errors"][0]["field"] == "productId"

    status, body = api.post(
        "/v0/prices",
        {
            "billableMetricId": their_metric.id,
            "invoiceDisplayName": "x",
            "paymentTerm": "in_arrears",
            "properties": {"unitPrice": "1"},
        },
    )
    assert status == 400 and body["errors"][0]["field"] == "billableMetricId"


def test_attaching_another_merchants_price_names_the_line(api, merchant, other_merchant):
    product = ProductFactory(merchant=merchant)
    theirs = MeteredPriceFactory(plan__product__merchant=other_merchant)

    status, body = api.post(
        "/v0/plans",
        {"merchantId": merchant.id, "productId": product.id, "name": "x", "currency": "USD", "prices": [theirs.id]},
    )

    assert status == 400 and [e["field"] for e in body["errors"]] == ["prices[0]"]


def test_available_plans_for_another_merchants_customer_is_not_found(api, other_merchant):
    status, _ = api.get("/v0/plans/available", customerId=CustomerFactory(merchant=other_merchant).id)
    assert status == 404

"""/v0/products: create, list, get, update, delete."""

from __future__ import annotations

from catalog.models import Product
from tests.factories import BillableMetricFactory, FeeFactory, PlanFactory, ProductFactory


def test_create_answers_201_with_the_product(api, merchant):
    # when
    status, body = api.post(
        "/v0/products", {"merchantId": merchant.id, "name": "Neural Language Engine", "description": "LLM API"}
    )

    # then
    product = Product.objects.get()
    assert status == 201
    assert body == {
        "id": product.id,
        "object": "product",
        "name": "Neural Language Engine",
        "description": "LLM API",
        "merchantId": merchant.id,
        "metadata": {},
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }
    assert product.id.startswith("prod_") and product.merchant == merchant


def test_create_requires_name_and_description(api, merchant):
    status, body = api.post("/v0/products", {"merchantId": merchant.id})

    assert status == 400
    assert body["error"] == "validation_error"
    assert sorted(e["field"] for e in body["errors"]) == ["description", "name"]


def test_list_pages_the_merchants_products(api, merchant):
    # given
    first, second, third = (ProductFactory(merchant=merchant, name=n) for n in ("A", "B", "C"))
    ProductFactory()  # another merchant's

    # when
    status, body = api.get("/v0/products", merchantId=merchant.id, limit="2", offset="1")

    # then
    assert status == 200
    assert [p["id"] for p in body["data"]] == [second.id, third.id]
    assert body["pagination"] == {"limit": 2, "offset": 1, "total": 3}
    assert "object" not in body


def test_get_and_patch(api, merchant):
    product = ProductFactory(merchant=merchant, name="Old", description="Was")

    status, body = api.patch(f"/v0/products/{product.id}", {"name": "New"})
    assert (status, body["name"], body["description"]) == (200, "New", "Was")

    status, body = api.get(f"/v0/products/{product.id}")
    assert (status, body["name"]) == (200, "New")


def test_delete_answers_204(api, merchant):
    product = ProductFactory(merchant=merchant)

    status, body = api.delete(f"/v0/products/{product.id}")

    assert (status, body) == (204, None)
    assert not Product.objects.exists()


def test_delete_in_use_answers_409_with_blockers(api, merchant):
    # given
    product = ProductFactory(merchant=merchant)
    metric = BillableMetricFactory(product=product, name="Tokens")
    FeeFactory(product=product)
    PlanFactory(product=product)

    # when
    status, body = api.delete(f"/v0/products/{product.id}")

    # then
    assert status == 409
    assert body["error"] == "conflict" and body["code"] == "RESOURCE_IN_USE"
    blockers = {b["type"]: b for b in body["details"]["blockers"]}
    assert set(blockers) == {"billableMetrics", "fees", "plans"}
    assert blockers["billableMetrics"] == {
        "type": "billableMetrics",
        "count": 1,
        "items": [{"id": metric.id, "name": "Tokens"}],
    }
    assert Product.objects.filter(pk=product.pk).exists()

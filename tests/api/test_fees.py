"""/v0/fees: create, list, get, PATCH, DELETE 204 or 409 with the prices that charge it."""

from __future__ import annotations

from catalog.models import Fee
from tests.factories import FeeFactory, FeePriceFactory, ProductFactory


def test_crud(api, merchant):
    product = ProductFactory(merchant=merchant)

    status, body = api.post(
        "/v0/fees",
        {"merchantId": merchant.id, "productId": product.id, "name": "Platform fee", "description": "Access"},
    )
    fee = Fee.objects.get()
    assert status == 201
    assert body == {
        "id": fee.id,
        "object": "fee",
        "merchantId": merchant.id,
        "productId": product.id,
        "name": "Platform fee",
        "description": "Access",
        "itemId": None,
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }

    status, body = api.patch(f"/v0/fees/{fee.id}", {"itemId": "itm_9", "description": "Monthly access"})
    assert (status, body["itemId"], body["description"]) == (200, "itm_9", "Monthly access")

    status, body = api.get("/v0/fees", merchantId=merchant.id)
    assert (status, body["object"], [f["id"] for f in body["data"]]) == (200, "list", [fee.id])

    assert api.get(f"/v0/fees/{fee.id}")[1]["itemId"] == "itm_9"
    assert api.delete(f"/v0/fees/{fee.id}") == (204, None)


def test_delete_priced_fee_answers_409_with_price_blockers(api, merchant):
    price = FeePriceFactory(plan__product__merchant=merchant, invoice_display_name="Platform fee")

    status, body = api.delete(f"/v0/fees/{price.fee_id}")

    assert status == 409
    assert body["error"] == "conflict"
    assert body["message"]
    assert body["details"] == {
        "blockers": [{"type": "prices", "count": 1, "items": [{"id": price.id, "invoiceDisplayName": "Platform fee"}]}]
    }


def test_list_requires_merchant_id(api):
    status, body = api.get("/v0/fees")
    assert status == 400 and body["errors"][0]["field"] == "merchantId"


def test_fee_needs_a_product(api, merchant):
    status, body = api.post("/v0/fees", {"merchantId": merchant.id, "name": "x", "description": ""})
    assert status == 400 and [e["field"] for e in body["errors"]] == ["productId"]
    assert not FeeFactory._meta.model.objects.exists()

"""Regression tests for what fuzzing the schema found: each was a 500 (mostly PostgreSQL only), a silently
accepted value, or an error body outside the client's shape."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from tests.factories import BillableMetricFactory, MeteredPriceFactory, ProductFactory


def _post_raw(api_client, path: str, text: str):
    response = api_client.post(path, data=text.encode(), content_type="application/json")
    return response.status_code, response.json()


# Paging


@pytest.mark.parametrize("offset", ["100000000000000000000", "9223372036854775808", "2147483648"])
def test_offset_past_the_database_range_is_a_400_naming_offset(api, merchant, offset):
    # given an offset no database accepts (it was a 500 on SQLite and PostgreSQL)
    # when
    status, body = api.get("/v0/products", offset=offset)
    # then
    assert status == 400
    assert body["errors"] == [{"field": "offset", "message": "offset must be at most 2147483647.", "code": "invalid"}]


def test_the_largest_offset_is_an_empty_page(api, merchant):
    ProductFactory(merchant=merchant)

    status, body = api.get("/v0/products", offset="2147483647")

    assert status == 200
    assert body == {"data": [], "pagination": {"limit": 10, "offset": 2147483647, "total": 1}}


# Null characters: PostgreSQL cannot store or compare them, so they must never reach a query.


@pytest.mark.parametrize(
    "path",
    [
        "/v0/products/prod_a%00b",
        "/v0/billableMetrics/%00",
        "/v0/fees/fee_%00",
        "/v0/prices/price_%00",
        "/v0/plans/plan_%00",
        "/v0/customers/cus_%00",
    ],
)
def test_a_path_id_with_a_null_character_is_not_found(api, merchant, path):
    status, body = api.get(path)
    assert (status, body) == (404, {"message": "No such object.", "error": "not_found"})


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v0/billableMetrics?merchantId={m}&productId=a%00b", "productId"),
        ("/v0/fees?merchantId={m}&itemId=%00", "itemId"),
        ("/v0/prices?billableMetricId=bm_%00", "billableMetricId"),
        ("/v0/plans?productId=%00", "productId"),
        ("/v0/customers?organizationId={m}&name=ab%00c", "name"),
        ("/v0/customers?organizationId={m}&externalId=%00", "externalId"),
        ("/v0/plans/available?customerId=%00", "customerId"),
    ],
)
def test_a_query_parameter_with_a_null_character_is_a_400_naming_it(api_client, merchant, path, name):
    response = api_client.get(path.format(m=merchant.id))

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": name, "message": "Null characters are not allowed.", "code": "null_characters_not_allowed"}
    ]


def test_a_body_id_with_a_null_character_is_a_400_naming_the_field(api, merchant):
    status, body = api.post(
        "/v0/billableMetrics",
        {
            "merchantId": merchant.id,
            "productId": "prod_\x00",
            "name": "Tokens",
            "description": "",
            "unit": "tokens",
            "aggregation": "SUM",
            "eventType": "llm.tokens",
            "valueProperty": "$.tokens",
        },
    )

    assert status == 400
    assert body["errors"] == [
        {"field": "productId", "message": "Null characters are not allowed.", "code": "null_characters_not_allowed"}
    ]


def test_a_consumer_id_with_a_null_character_is_a_400(api, merchant):
    status, body = api.post("/v0/customers", {"merchantId": merchant.id, "consumerId": "cus_\x00"})

    assert status == 400
    assert [e["field"] for e in body["errors"]] == ["consumerId"]


@pytest.mark.parametrize("entry", ["price_\x00", {"priceId": "price_\x00"}, {"priceId": "x", "key": "a\x00"}])
def test_a_plan_price_with_a_null_character_is_a_400_naming_its_index(api, merchant, entry):
    product = ProductFactory(merchant=merchant)

    status, body = api.post(
        "/v0/plans",
        {"merchantId": merchant.id, "productId": product.id, "name": "Pro", "currency": "USD", "prices": [entry]},
    )

    assert status == 400
    assert body["errors"] == [{"field": "prices[0]", "message": "Null characters are not allowed.", "code": "invalid"}]


@pytest.mark.parametrize(
    ("path", "field", "make"),
    [
        ("/v0/products", "metadata", lambda m: {"merchantId": m.id, "name": "x", "description": "", "metadata": {}}),
        ("/v0/billableMetrics/{id}", "groupBy", None),
    ],
)
def test_an_object_key_with_a_null_character_is_a_400_naming_the_field(api, merchant, path, field, make):
    if make is None:
        metric = BillableMetricFactory(product__merchant=merchant, merchant=merchant)
        status, body = api.patch(path.format(id=metric.id), {"groupBy": {"model\x00": "$.model"}})
    else:
        payload = make(merchant)
        payload["metadata"] = {"tier\x00": "gold"}
        status, body = api.post(path, payload)

    assert status == 400
    assert body["errors"] == [
        {"field": field, "message": "Null characters are not allowed in keys.", "code": "null_characters_not_allowed"}
    ]


# JSON the parser used to accept or crash on


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 5_000 + "1" + "}" * 5_000])
def test_too_deeply_nested_json_is_a_400_malformed_json(api_client, merchant, text):
    status, body = _post_raw(api_client, "/v0/products", text)

    assert status == 400
    assert body == {
        "message": "The body is not valid JSON: it is nested too deeply.",
        "error": "bad_request",
        "code": "MALFORMED_JSON",
    }


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api_client, merchant, constant):
    # given a description of NaN, which used to be stored as the text "nan"
    text = f'{{"merchantId": "{merchant.id}", "name": "x", "description": {constant}}}'

    status, body = _post_raw(api_client, "/v0/products", text)

    assert status == 400
    assert body["code"] == "MALFORMED_JSON"
    assert body["message"].startswith(f"The body is not valid JSON: {constant} is not a JSON value")


def test_a_property_sent_in_both_spellings_is_a_400_not_a_silent_choice(api, merchant):
    metric = BillableMetricFactory(product__merchant=merchant, merchant=merchant)

    status, body = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric.id,
            "invoiceDisplayName": "Tokens",
            "paymentTerm": "in_arrears",
            "properties": {"unit_price": "1", "unitPrice": "2"},
        },
    )

    assert status == 400
    assert body["errors"] == [
        {"field": "properties.unitPrice", "message": "Given twice (as unitPrice and in snake_case).", "code": "invalid"}
    ]


def test_a_plan_price_sent_in_both_spellings_is_a_400(api, merchant):
    metric = BillableMetricFactory(product__merchant=merchant, merchant=merchant)
    price = MeteredPriceFactory(plan=None, merchant=merchant, billable_metric=metric)

    status, body = api.post(
        "/v0/plans",
        {
            "merchantId": merchant.id,
            "productId": price.billable_metric.product_id,
            "name": "Pro",
            "currency": "USD",
            "prices": [{"priceId": price.id, "price_id": price.id}],
        },
    )

    assert status == 400
    assert body["errors"] == [
        {"field": "prices[0]", "message": "Give priceId once (not also as price_id).", "code": "invalid"}
    ]


# Error bodies for requests DRF never sees


@pytest.mark.parametrize("path", ["/v0/products/a%2Fb", "/v0/products/a/b", "/v0/products/", "/v0/nothing"])
def test_an_unrouted_api_path_is_a_json_404(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "message": "No such endpoint or object (paths have no trailing slash; ids contain no '/').",
        "error": "not_found",
    }


def test_an_unrouted_admin_path_keeps_django_html_404(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_the_upload_limit_is_a_json_413(api_client, merchant):
    text = json.dumps({"merchantId": merchant.id, "name": "x", "description": "d" * 2000})

    status, body = _post_raw(api_client, "/v0/products", text)

    assert status == 413
    assert body == {"message": "The body is larger than the 1000 bytes accepted.", "error": "payload_too_large"}

"""Bad requests get a 4xx in the Paygentic error shape, never a 500."""

from __future__ import annotations

import pytest

from tests.factories import BillableMetricFactory, ProductFactory


def test_malformed_json_is_a_400_with_a_message(api_client, merchant):
    response = api_client.post("/v0/products", data='{"merchantId": "x", "name": ', content_type="application/json")

    body = response.json()
    assert response.status_code == 400
    assert body["error"] == "bad_request" and body["code"] == "MALFORMED_JSON"
    assert body["message"].startswith("The body is not valid JSON")


def test_a_json_array_body_is_a_400(api, merchant):
    status, body = api.post("/v0/products", [1, 2])
    assert status == 400 and body["errors"][0]["field"] == "body"


def test_wrong_types_name_the_field(api, merchant):
    product = ProductFactory(merchant=merchant)

    status, body = api.post(
        "/v0/billableMetrics",
        {
            "merchantId": merchant.id,
            "productId": product.id,
            "name": "n",
            "description": "",
            "unit": "u",
            "aggregation": "COUNT",
            "eventType": "e",
            "groupBy": ["not", "a", "map"],
            "eventFrom": "yesterday",
        },
    )

    assert status == 400
    assert sorted(e["field"] for e in body["errors"]) == ["eventFrom", "groupBy"]


def test_unknown_enum_value_names_the_field(api, merchant):
    metric = BillableMetricFactory(product__merchant=merchant)

    status, body = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric.id,
            "invoiceDisplayName": "x",
            "paymentTerm": "monthly",
            "properties": {"unitPrice": "1"},
        },
    )

    assert status == 400
    assert body["errors"] == [
        {"field": "paymentTerm", "message": '"monthly" is not a valid choice.', "code": "invalid_choice"}
    ]
    assert body["message"] == 'paymentTerm: "monthly" is not a valid choice.'


def test_unknown_fields_are_refused_not_dropped(api, merchant):
    status, body = api.post(
        "/v0/products", {"merchantId": merchant.id, "name": "x", "description": "", "colour": "red"}
    )
    assert status == 400 and body["errors"][0] == {"field": "colour", "message": "Unknown field.", "code": "invalid"}


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [("1000", "0", "limit"), ("0", "0", "limit"), ("x", "0", "limit"), ("10", "-1", "offset")],
)
def test_bad_paging_is_a_400_naming_the_parameter(api, merchant, limit, offset, field):
    status, body = api.get("/v0/products", limit=limit, offset=offset)
    assert status == 400 and [e["field"] for e in body["errors"]] == [field]


def test_unknown_path_id_is_a_404(api):
    status, body = api.get("/v0/plans/plan_doesnotexist")
    assert status == 404 and body == {"message": body["message"], "error": "not_found"}


@pytest.mark.parametrize(
    "path", ["/v0/products", "/v0/billableMetrics", "/v0/fees", "/v0/prices", "/v0/plans", "/v0/customers"]
)
def test_missing_or_wrong_key_is_a_401(db, anonymous_client, path):
    response = anonymous_client.get(path)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"

    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer ml_live_wrong")
    response = anonymous_client.get(path)
    assert (
        response.status_code == 401 and response.json()["message"] == "This API key is not valid or has been revoked."
    )


def test_trailing_slash_is_not_redirected(api):
    status, _ = api.get("/v0/products/")
    assert status == 404


def test_oversized_decimal_is_a_400_not_a_500(api, merchant):
    metric = BillableMetricFactory(product__merchant=merchant)

    status, body = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric.id,
            "invoiceDisplayName": "x",
            "paymentTerm": "in_arrears",
            "properties": {"unitPrice": "0.0000000000001"},
        },
    )

    assert status == 400 and body["errors"][0]["field"] == "properties.unitPrice"

"""The schema and the behaviour agree (issue 18, defect 9): what the schema allows is accepted, what it
refuses is a 400, and every status an operation answers is documented. Each test is a finding of the
schema fuzz run (tests/api/test_schema_fuzz.py)."""

from __future__ import annotations

import json
import typing

import pytest
from django.test import Client
from paygentic_sdk import models as client_models
from pydantic import BaseModel

from tests.factories import CustomerFactory, ProductFactory


@pytest.fixture(scope="module")
def document(django_db_blocker):
    # Served as the fuzz test reads it; generated once for the module (it takes a second or two).
    with django_db_blocker.unblock():
        return json.loads(Client().get("/v0/schema?format=json").content)


def _parameters(document, path: str, method: str = "get") -> dict:
    return {p["name"]: p["schema"] for p in document["paths"][path][method]["parameters"]}


# Wrong types in a body


def test_a_number_for_a_text_field_is_a_400_naming_it(api, merchant):
    product = ProductFactory(merchant=merchant, description="kept")

    status, body = api.patch(f"/v0/products/{product.pk}", {"description": 0})

    assert status == 400
    assert body["errors"] == [{"field": "description", "message": "Not a string.", "code": "invalid"}]
    product.refresh_from_db()
    assert product.description == "kept"


def test_a_number_for_a_credit_grant_text_field_is_a_400(api, merchant):
    customer = CustomerFactory(merchant=merchant)

    status, body = api.post(
        f"/v0/customers/{customer.pk}/grants", {"amount": "5", "idempotencyKey": 7, "description": "promo"}
    )

    assert status == 400
    assert body["errors"] == [{"field": "idempotencyKey", "message": "Not a string.", "code": "invalid"}]


# Empty query values


@pytest.mark.parametrize(
    ("path", "name"),
    [("/v0/subscriptions", "startedBefore"), ("/v0/products", "merchantId"), ("/v0/products", "limit")],
)
def test_an_empty_query_value_is_a_400_not_ignored(api, merchant, path, name):
    status, body = api.get(path, **{name: ""})

    assert status == 400
    assert body["error"] == "validation_error"
    assert body["errors"] == [
        {"field": name, "message": "An empty value is not allowed; leave the parameter out instead.", "code": "blank"}
    ]


def test_string_query_parameters_are_documented_non_empty_and_without_null_characters(document):
    started_before = _parameters(document, "/v0/subscriptions")["startedBefore"]
    merchant_id = _parameters(document, "/v0/products")["merchantId"]

    assert started_before == {"type": "string", "format": "date-time", "minLength": 1}
    assert merchant_id == {"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"}
    assert _parameters(document, "/v0/customers")["name"]["minLength"] == 3


# Paging bounds


@pytest.mark.parametrize(
    ("path", "maximum"),
    [
        ("/v0/customers/{customer_id}/ledger", 100),
        ("/v0/subscriptions", 100),
        ("/v0/testClocks", 100),
        ("/v2/invoices", 100),
        ("/v2/invoices/lineItems", 1000),
        ("/v0/billableMetrics/{metric_id}/events", 100),
    ],
)
def test_every_limit_is_documented_with_the_bounds_it_is_checked_against(document, path, maximum):
    assert _parameters(document, path)["limit"] == {"type": "integer", "minimum": 1, "maximum": maximum}


def test_a_ledger_limit_of_zero_is_refused_as_documented(api, merchant):
    customer = CustomerFactory(merchant=merchant)

    status, body = api.get(f"/v0/customers/{customer.pk}/ledger", limit="0")

    assert status == 400
    assert body["errors"][0]["field"] == "limit"


# Documented answers


def test_the_wallet_routes_document_their_error_answers(document):
    grants = document["paths"]["/v0/customers/{customer_id}/grants"]["post"]["responses"]
    balance = document["paths"]["/v0/customers/{customer_id}/balance"]["get"]["responses"]

    assert set(grants) == {"200", "201", "400", "401", "404", "409", "503"}
    assert set(balance) == {"200", "400", "401", "404", "503"}
    assert grants["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOutput"}


def test_every_operation_documents_400_401_and_503_and_404_with_a_path_id(document):
    missing = [
        f"{method.upper()} {path} {code}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for code in ("400", "401", "503", *(("404",) if "{" in path else ()))
        if code not in operation["responses"]
    ]
    assert missing == []


# Rules between query parameters


def test_a_refused_combination_of_query_parameters_says_so_by_its_code(api, merchant):
    customer = CustomerFactory(merchant=merchant, external_id="ext-1")

    status, body = api.get("/v1/entitlements", customerId=customer.pk, externalCustomerId="ext-1")

    assert status == 400
    assert body["errors"] == [
        {
            "field": "customerId",
            "message": "Give exactly one of customerId and externalCustomerId.",
            "code": "parameter_combination",
        }
    ]


def test_a_method_no_view_answers_is_a_405_even_with_a_null_character_in_the_query(api_client):
    response = api_client.generic("TRACE", "/v1/entitlements/ent_0?at=id%00")

    assert response.status_code == 405


# Response shapes: the client's models are the wire contract (issue 23)


def _resolve(document, schema: dict) -> dict:
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        schema = schema["allOf"][0] if "allOf" in schema else schema
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _client_model(annotation):
    """The client model an annotation holds (through Optional, Nullable, List, Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _client_model(argument)
        if found is not None:
            return found
    return None


def _disagreements(document, schema: dict, model, where: str) -> list[str]:
    schema = _resolve(document, schema)
    properties, required = schema.get("properties", {}), set(schema.get("required", []))
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    found = [f"{where}.{key}: documented, not in {model.__name__}" for key in properties if key not in fields]
    found += [
        f"{where}.{key}: required by {model.__name__}, not by the schema"
        for key, field in fields.items()
        if field.is_required() and key not in required
    ]
    for key in set(properties) & set(fields):
        nested = _client_model(fields[key].annotation)
        if nested is not None:
            child = _resolve(document, properties[key])
            child = _resolve(document, child["items"]) if child.get("type") == "array" else child
            found += _disagreements(document, child, nested, f"{where}.{key}")
    return found


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v0/revenue", client_models.RevenueSummaryResponse),
        ("/v0/revenue/accounts", client_models.RevenueAccountsResponse),
        ("/v0/costs/report", client_models.CostReportResponse),
        ("/v0/costs/{id}/summary", client_models.CostUsageResponse),
        ("/v0/profitability", client_models.ProfitabilitySummaryResponse),
    ],
)
def test_the_cost_and_revenue_reads_document_the_clients_response_shape(document, path, model):
    schema = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]

    assert _disagreements(document, schema, model, path) == []


def test_the_shape_check_sees_a_missing_required_key_and_an_unknown_one(document):
    # The check itself can fail: a schema missing the client's required key, with a key it does not know.
    schema = {"type": "object", "properties": {"count": {}, "extra": {}}, "required": ["count"]}

    assert _disagreements(document, schema, client_models.InvoiceCategorySummary, "x") == [
        "x.extra: documented, not in InvoiceCategorySummary",
        "x.amount: required by InvoiceCategorySummary, not by the schema",
    ]

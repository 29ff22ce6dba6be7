"""Every billing resource is scoped to the API key's merchant: other ids are 404, another merchantId 403."""

from __future__ import annotations

import pytest

from invoicing.models import Invoice, InvoiceKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(subscribe, plan, clock):
    """Our subscription, clock and Invoice 0, seen by the other merchant."""
    sub = subscribe(plan).json()
    return {"subscription": sub["id"], "clock": clock.id, "invoice": sub["payment"]["invoiceId"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v0/subscriptions/{subscription}", None),
        ("patch", "/v0/subscriptions/{subscription}", {"autoCharge": True}),
        ("post", "/v0/subscriptions/{subscription}/termination", {"reason": "x"}),
        ("get", "/v0/testClocks/{clock}", None),
        ("patch", "/v0/testClocks/{clock}", {"advanceBy": "P1M"}),
        ("delete", "/v0/testClocks/{clock}", None),
        ("get", "/v2/invoices/{invoice}", None),
        ("get", "/v2/invoices/{invoice}/lineItems", None),
        ("get", "/v2/invoices/{invoice}/pdf", None),
        ("post", "/v2/invoices/{invoice}/payment", {"method": "out_of_band"}),
        ("get", "/v2/invoices/lineItems?subscriptionId={subscription}", None),
        ("get", "/v2/invoices/lineItems?invoiceId={invoice}", None),
    ],
)
def test_other_merchants_objects_are_not_found(other_client, theirs, method, path, body):
    response = getattr(other_client, method)(path.format(**theirs), body, format="json")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    opening = Invoice.objects.get(pk=theirs["invoice"])
    assert opening.status == "issued"


def test_lists_show_only_the_callers_objects(other_client, theirs):
    assert other_client.get("/v0/subscriptions").json()["data"] == []
    assert other_client.get("/v0/testClocks").json()["data"] == []
    assert other_client.get("/v2/invoices").json()["data"] == []
    assert other_client.get("/v2/invoices", {"subscriptionId": theirs["subscription"]}).json()["data"] == []


@pytest.mark.parametrize("path", ["/v0/subscriptions", "/v0/testClocks", "/v2/invoices"])
def test_naming_another_merchant_is_forbidden(api_client, other_merchant, path):
    response = api_client.get(path, {"merchantId": other_merchant.id})

    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN_MERCHANT"


def test_another_merchants_plan_customer_or_clock_is_a_bad_reference(other_client, theirs, plan, customer, clock):
    response = other_client.post(
        "/v0/subscriptions",
        {
            "name": "X",
            "planId": plan.id,
            "customerId": customer.id,
            "startedAt": "2025-01-01T00:00:00Z",
            "testClockId": clock.id,
        },
        format="json",
    )

    assert response.status_code == 400
    assert {error["field"] for error in response.json()["errors"]} == {"planId", "customerId", "testClockId"}
    assert Invoice.objects.filter(kind=InvoiceKind.OPENING).count() == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v0/subscriptions"),
        ("post", "/v0/subscriptions"),
        ("get", "/v0/testClocks"),
        ("get", "/v2/invoices"),
        ("get", "/v2/invoices/inv_x/pdf"),
    ],
)
def test_without_a_key_is_unauthorized(anonymous_client, method, path):
    response = getattr(anonymous_client, method)(path)

    assert response.status_code == 401
    assert response.json()["message"]


def test_malformed_json_is_a_bad_request(api_client):
    response = api_client.post("/v0/subscriptions", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"

"""GET /v2/invoices/projected (fixed charges only, never stored) and GET /v0/subscriptions/{id}/upcomingInvoice
(the current period with usage to date, rated like the billing run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from paygentic_sdk.models import Invoice as ClientInvoice
from paygentic_sdk.models import ListProjectedInvoicesResponse

from invoicing.models import Invoice

from .factories import record_usage

pytestmark = pytest.mark.django_db

APRIL = "2025-04-01T00:00:01Z"


@pytest.fixture
def sub(api_client, subscribe, plan):
    return subscribe(plan).json()


def test_projects_the_fee_invoices_of_a_range(api_client, sub, customer, plan):
    # given: usage that a projection must ignore
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    stored = Invoice.objects.count()
    # when
    body = api_client.get("/v2/invoices/projected", {"subscriptionId": sub["id"], "to": APRIL}).json()
    again = api_client.get("/v2/invoices/projected", {"subscriptionId": sub["id"], "to": APRIL}).json()
    # then: the closes of January, February and March each bill the next month's platform fee, 49.00
    ListProjectedInvoicesResponse.model_validate(body)
    assert body["pagination"] == {"limit": 10, "offset": 0, "total": 3}
    assert [row["periodStart"] for row in body["data"]] == [
        "2025-01-01T00:00:00Z",
        "2025-02-01T00:00:00Z",
        "2025-03-01T00:00:00Z",
    ]
    assert [row["status"] for row in body["data"]] == ["PROJECTED"] * 3
    assert [row["subtotal"] for row in body["data"]] == ["49.00"] * 3
    assert [[line["kind"] for line in row["lineItems"]["lineItems"]] for row in body["data"]] == [["fee"]] * 3
    assert [row["id"] for row in body["data"]] == [row["id"] for row in again["data"]]
    assert api_client.get(f"/v2/invoices/{body['data'][0]['id']}").status_code == 404
    assert Invoice.objects.count() == stored  # never stored


def test_default_range_is_a_month_from_now_and_pages(api_client, sub):
    default = api_client.get("/v2/invoices/projected", {"subscriptionId": sub["id"]}).json()
    page = api_client.get(
        "/v2/invoices/projected", {"subscriptionId": sub["id"], "to": APRIL, "limit": 1, "offset": 1}
    ).json()

    # the January close is at February 1st, the end of the default range (exclusive)
    assert default["data"] == []
    assert page["pagination"] == {"limit": 1, "offset": 1, "total": 3}
    assert [row["periodStart"] for row in page["data"]] == ["2025-02-01T00:00:00Z"]


def test_usage_only_plan_projects_nothing(api_client, subscribe, arrears_plan):
    sub = subscribe(arrears_plan).json()

    body = api_client.get("/v2/invoices/projected", {"subscriptionId": sub["id"], "to": APRIL}).json()

    assert body["data"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"to": "2026-01-01T00:00:01Z"}, "to"),
        ({"from": "2025-03-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}, "to"),
        ({"to": "soon"}, "to"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_range_is_a_400(api_client, sub, query, field):
    response = api_client.get("/v2/invoices/projected", {"subscriptionId": sub["id"], **query})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_missing_subscription_is_a_400_and_another_merchants_a_404(api_client, other_client, sub):
    assert api_client.get("/v2/invoices/projected").status_code == 400
    assert other_client.get("/v2/invoices/projected", {"subscriptionId": sub["id"]}).status_code == 404


def test_upcoming_invoice_rates_usage_to_date_and_pending_manual_lines(api_client, sub, customer, plan, clock):
    # given: Invoice 0 paid, 3,000,000 tokens on January 9th, the clock on January 15th, a pending workshop line
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P14D"}, format="json")
    manual = {
        "subscriptionId": sub["id"],
        "displayName": "Workshop",
        "currency": "USD",
        "quantity": 2,
        "unitPrice": "150",
    }
    api_client.post("/v2/invoices/lineItems", manual, format="json")
    stored = Invoice.objects.count()
    # when
    response = api_client.get(f"/v0/subscriptions/{sub['id']}/upcomingInvoice")
    # then: tokens 3,000,000 × 0.000002 = 6.00, February's fee 49.00, the workshop 2 × 150 = 300.00
    assert response.status_code == 200
    body = response.json()
    ClientInvoice.model_validate(body)
    lines = {line["kind"]: line["totalPrice"] for line in body["lineItems"]["lineItems"]}
    assert lines == {"usage": "6.00", "fee": "49.00", "manual": "300.00"}
    assert body["subtotal"] == "355.00"
    assert body["periodEnd"] == "2025-02-01T00:00:00Z"
    assert Invoice.objects.count() == stored


def test_no_upcoming_invoice_before_invoice_0_is_paid(api_client, sub):
    response = api_client.get(f"/v0/subscriptions/{sub['id']}/upcomingInvoice")

    assert (response.status_code, response.json()["code"]) == (409, "NO_CURRENT_PERIOD")

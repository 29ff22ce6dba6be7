"""Change history names who made a change: the API key for REST API changes, the person for admin ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.urls import reverse

from catalog.models import ApiKey, BillableMetric, Plan, Price, Product, Subscription
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus
from tests.api_billing.factories import llm_plan
from tests.factories import CustomerFactory, TestClockFactory

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def api_key(api_key_secret) -> ApiKey:
    return ApiKey.objects.get()


def latest(obj):
    return obj.history.order_by("-history_id").first()


def attribution(record) -> tuple:
    return record.history_type, record.history_api_key_id, record.history_user_id


def test_products_metrics_prices_and_plans_made_through_the_api_name_the_key(api_client, api_key, merchant):
    # when: a product, a metric, a price and a plan are created, then the product and plan changed
    product_id = api_client.post(
        "/v0/products", {"merchantId": merchant.id, "name": "Engine", "description": "LLM API"}, format="json"
    ).json()["id"]
    metric_id = api_client.post(
        "/v0/billableMetrics",
        {
            "merchantId": merchant.id,
            "productId": product_id,
            "name": "Input tokens",
            "description": "Prompt tokens",
            "unit": "tokens",
            "aggregation": "SUM",
            "eventType": "llm.completion",
            "valueProperty": "$.input_tokens",
        },
        format="json",
    ).json()["id"]
    price_id = api_client.post(
        "/v0/prices",
        {
            "billableMetricId": metric_id,
            "model": "standard",
            "invoiceDisplayName": "Input tokens",
            "paymentTerm": "in_arrears",
            "properties": {"unitPrice": "0.000002"},
        },
        format="json",
    ).json()["id"]
    plan_id = api_client.post(
        "/v0/plans",
        {"merchantId": merchant.id, "productId": product_id, "name": "Pro", "currency": "USD", "prices": [price_id]},
        format="json",
    ).json()["id"]
    assert api_client.patch(f"/v0/products/{product_id}", {"name": "Engine 2"}, format="json").status_code == 200
    assert api_client.patch(f"/v0/plans/{plan_id}", {"name": "Pro 2"}, format="json").status_code == 200

    # then: every record carries the key and no user
    product = Product.objects.get(pk=product_id)
    plan = Plan.objects.get(pk=plan_id)
    assert [attribution(r) for r in product.history.order_by("history_id")] == [
        ("+", api_key.pk, None),
        ("~", api_key.pk, None),
    ]
    assert attribution(latest(BillableMetric.objects.get(pk=metric_id))) == ("+", api_key.pk, None)
    assert attribution(latest(Price.objects.get(pk=price_id))) == ("~", api_key.pk, None)  # attached to the plan
    assert attribution(latest(plan)) == ("~", api_key.pk, None)
    assert latest(plan).name == "Pro 2"


def test_an_admin_change_names_the_person_and_no_key(superuser_client, api_client, api_key, merchant):
    # given: a product made through the API
    product_id = api_client.post(
        "/v0/products", {"merchantId": merchant.id, "name": "Engine", "description": "LLM API"}, format="json"
    ).json()["id"]

    # when: someone renames it in the admin
    response = superuser_client.post(
        reverse("admin:catalog_product_change", args=[quote(product_id)]),
        {
            "merchant": merchant.pk,
            "name": "Engine (admin)",
            "description": "LLM API",
            "metadata": "{}",
            "billable_metrics-TOTAL_FORMS": "0",
            "billable_metrics-INITIAL_FORMS": "0",
            "fees-TOTAL_FORMS": "0",
            "fees-INITIAL_FORMS": "0",
        },
    )

    # then
    assert response.status_code == 302
    record = latest(Product.objects.get(pk=product_id))
    assert (record.name, record.history_api_key_id, record.history_user) == (
        "Engine (admin)",
        None,
        User.objects.get(username="root"),
    )


def test_changes_outside_any_request_name_nobody(api_key, merchant):
    product = Product.objects.create(merchant=merchant, name="Seeded")

    assert attribution(latest(product)) == ("+", None, None)


def test_the_history_page_shows_the_api_key(superuser_client, api_client, api_key, merchant):
    product_id = api_client.post(
        "/v0/products", {"merchantId": merchant.id, "name": "Engine", "description": "LLM API"}, format="json"
    ).json()["id"]

    page = superuser_client.get(reverse("admin:catalog_product_history", args=[quote(product_id)]))

    assert page.status_code == 200
    assert f"API key test key ({api_key.pk})" in page.content.decode()


# --- invoices ------------------------------------------------------------------------------------


@pytest.fixture
def opening_invoice(api_client, merchant) -> Invoice:
    """A subscription started through the API on a plan with a $49 fee in advance: Invoice 0 is issued."""
    customer = CustomerFactory(merchant=merchant, name="Acme Inc", time_zone="UTC")
    clock = TestClockFactory(merchant=merchant, current_time=JAN_1)
    body = {
        "name": "Acme - Pro",
        "planId": llm_plan(merchant).id,
        "customerId": customer.id,
        "startedAt": "2025-01-01T00:00:00Z",
        "testClockId": clock.id,
        "autoCharge": False,
        "taxExempt": False,
        "elapsedPeriodBilling": "none",
    }
    response = api_client.post("/v0/subscriptions", body, format="json")
    assert response.status_code == 201, response.content
    return Invoice.objects.get(subscription_id=response.json()["id"], kind=InvoiceKind.OPENING)


def test_an_invoice_paid_through_the_api_names_the_key(api_client, api_key, opening_invoice):
    # when
    response = api_client.post(f"/v2/invoices/{opening_invoice.id}/payment", {"method": "out_of_band"}, format="json")

    # then: the billing run's insert left no record (the invoice names its run); issuing and paying did
    assert response.status_code == 200, response.content
    records = opening_invoice.history.order_by("history_id")
    assert [(r.status, r.history_type, r.history_api_key_id, r.history_user_id) for r in records] == [
        (InvoiceStatus.ISSUED, "~", api_key.pk, None),
        (InvoiceStatus.PAID, "~", api_key.pk, None),
    ]
    subscription = Subscription.objects.get(pk=opening_invoice.subscription_id)
    assert attribution(subscription.history.order_by("history_id").first()) == ("+", api_key.pk, None)


def test_an_invoice_voided_in_the_admin_names_the_person(superuser_client, api_key, opening_invoice):
    # when
    response = superuser_client.post(
        reverse("admin:invoicing_invoice_changelist"),
        {"action": "action_void", "_selected_action": [opening_invoice.pk], "post": "yes", "reason": "duplicate"},
    )

    # then
    assert response.status_code == 302
    record = latest(opening_invoice)
    assert (record.status, record.history_api_key_id, record.history_user.username) == (
        InvoiceStatus.VOID,
        None,
        "root",
    )


def test_the_invoice_history_page_lists_who_changed_it(superuser_client, api_client, api_key, opening_invoice):
    api_client.post(f"/v2/invoices/{opening_invoice.id}/payment", {"method": "out_of_band"}, format="json")
    change_page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[quote(opening_invoice.pk)]))
    history_url = reverse("admin:invoicing_invoice_history", args=[quote(opening_invoice.pk)])

    history_page = superuser_client.get(history_url)

    assert history_url in change_page.content.decode()
    assert history_page.status_code == 200
    assert history_page.content.decode().count(f"API key test key ({api_key.pk})") == 2


def test_an_invoice_history_record_reads_but_cannot_revert(viewer_client, superuser_client, opening_invoice):
    record = latest(opening_invoice)
    # simple-history links its record pages with the raw pk and does not unquote it
    record_url = reverse("admin:invoicing_invoice_simple_history", args=(opening_invoice.pk, record.history_id))

    assert (
        viewer_client.get(reverse("admin:invoicing_invoice_history", args=[quote(opening_invoice.pk)])).status_code
        == 200
    )
    assert superuser_client.get(record_url).status_code == 200
    assert superuser_client.post(record_url, {"void_reason": "Reverted"}).status_code == 403

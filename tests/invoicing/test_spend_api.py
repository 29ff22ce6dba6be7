"""The spend alerts and spend cap API (Meterline extension): managed per customer, bounded (400 naming the
field beyond every bound), another merchant's customer is not found, and end to end: an alert created through
the API fires after usage sent through the API, and a cap set through the API refuses usage until lifted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.services import api_key_create
from invoicing.services import subscription_start
from invoicing.spend.services import spend_evaluate_due
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price

pytestmark = pytest.mark.django_db

ALERT = {"currency": "USD", "thresholdKind": "percent", "budget": "1000", "thresholds": ["80", "50", "100"]}


@pytest.fixture
def customer(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, currency="USD")
    metered_price(plan, "0.01", name="Calls", unit="calls", event_type="api.calls")
    customer = CustomerFactory(merchant=merchant, name="Acme")
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    subscription_start(customer=customer, plan=plan, started_at=start, now=start)
    return customer


def calls(customer, n: int, key: str) -> dict:
    moment = (timezone.now() - timedelta(seconds=1)).isoformat()
    return {
        "type": "api.calls",
        "source": "https://api.example/test",
        "subject": customer.pk,
        "timestamp": moment,
        "idempotencyKey": key,
        "data": {"tokens": n},
    }


def test_an_alert_is_created_listed_replaced_and_deleted(api_client, customer):
    base = f"/v0/customers/{customer.pk}/spendAlerts"

    created = api_client.post(base, {**ALERT, "name": "Budget", "recipients": ["cfo@acme.example"]}, format="json")

    assert created.status_code == 201, created.json()
    alert = created.json()
    assert (alert["object"], alert["thresholds"], alert["budget"], alert["recipients"]) == (
        "spend_alert",
        ["50", "80", "100"],
        "1000",
        ["cfo@acme.example"],
    )
    assert [a["id"] for a in api_client.get(base).json()["data"]] == [alert["id"]]

    replaced = api_client.put(f"{base}/{alert['id']}", {**ALERT, "thresholds": ["90"], "active": False}, format="json")
    assert replaced.status_code == 200
    assert (replaced.json()["thresholds"], replaced.json()["active"]) == (["90"], False)

    assert api_client.delete(f"{base}/{alert['id']}").status_code == 204
    assert api_client.get(f"{base}/{alert['id']}").status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget": "1000000001"}, "budget"),
        ({"budget": None}, "budget"),
        ({"thresholds": ["1001"]}, "thresholds"),
        ({"thresholds": ["0"]}, "thresholds"),
        ({"thresholds": []}, "thresholds"),
        ({"thresholds": [str(n) for n in range(1, 12)]}, "thresholds"),
        ({"thresholdKind": "ratio"}, "thresholdKind"),
        ({"currency": "ZZZ"}, "currency"),
        ({"recipients": ["nobody"]}, "recipients"),
        ({"subscriptionId": "sub_unknown"}, "subscriptionId"),
        ({"metricId": "bm_unknown"}, "metricId"),
    ],
)
def test_alert_bounds_answer_400_naming_the_field(api_client, customer, changes, field):
    response = api_client.post(f"/v0/customers/{customer.pk}/spendAlerts", {**ALERT, **changes}, format="json")

    assert response.status_code == 400
    assert field in str(response.json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "USD", "amount": "0"}, "amount"),
        ({"currency": "USD", "amount": "1000000000.5"}, "amount"),
        ({"currency": "USD", "amount": "10", "onReach": "warn"}, "onReach"),
        ({"currency": "USD"}, "amount"),
    ],
)
def test_cap_bounds_answer_400_naming_the_field(api_client, customer, body, field):
    response = api_client.put(f"/v0/customers/{customer.pk}/spendCap", body, format="json")

    assert response.status_code == 400
    assert field in str(response.json())


def test_another_merchants_customer_is_not_found(api_client, customer):
    rival = MerchantFactory(name="Rival")
    _, key = api_key_create(merchant=rival, name="rival")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert api_client.get(f"/v0/customers/{customer.pk}/spendAlerts").status_code == 404
    assert (
        api_client.put(f"/v0/customers/{customer.pk}/spendCap", {"currency": "USD", "amount": "1"}).status_code == 404
    )


def test_end_to_end_an_alert_fires_after_usage_and_a_cap_refuses_until_lifted(api_client, customer):
    base = f"/v0/customers/{customer.pk}"
    alert = api_client.post(f"{base}/spendAlerts", ALERT, format="json").json()
    cap = api_client.put(f"{base}/spendCap", {"currency": "USD", "amount": "600"}, format="json")
    assert (cap.status_code, cap.json()["onReach"], cap.json()["reachedAt"]) == (200, "block", None)

    # 55,000 calls at $0.01 = $550: 50 % of the $1,000 budget crossed, the $600 cap not reached
    assert api_client.post("/v0/events", calls(customer, 55_000, "e1"), format="json").status_code == 202
    spend_evaluate_due(now=timezone.now())
    firings = api_client.get(f"{base}/spendAlerts/{alert['id']}/firings").json()["data"]
    assert [(f["threshold"], f["thresholdAmount"], f["accrued"]) for f in firings] == [("50", "500", "550")]

    # 5,000 more: $600, the cap is reached; the next event is refused
    api_client.post("/v0/events", calls(customer, 5_000, "e2"), format="json")
    spend_evaluate_due(now=timezone.now())
    state = api_client.get(f"{base}/spendCap").json()
    assert (state["accrued"], state["reachedAt"] is not None) == ("600", True)
    refused = api_client.post("/v0/events", calls(customer, 1, "e3"), format="json")
    assert (refused.status_code, refused.json()["code"]) == (402, "SPEND_CAP_REACHED")

    # finance lifts it for the rest of the period: accepted again
    lifted = api_client.post(f"{base}/spendCap/lift")
    assert lifted.status_code == 200 and lifted.json()["liftedAt"] is not None
    assert api_client.post("/v0/events", calls(customer, 1, "e4"), format="json").status_code == 202

    assert api_client.delete(f"{base}/spendCap").status_code == 204
    assert api_client.get(f"{base}/spendCap").status_code == 404

"""The event endpoints debit real-time subscriptions; 402 INSUFFICIENT_BALANCE under the block policy;
GET usageCost answers the current period's cost."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from metering.models import UsageEvent
from tests.factories import CustomerFactory, SubscriptionFactory

from .conftest import balance, event, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_subscription(customer, real_time_plan):
    """Subscribed since the start of the current (real) month, so events stamped now are in its period."""
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return SubscriptionFactory(
        plan=real_time_plan, merchant=customer.merchant, customer=customer, started_at=start, billing_anchor=start
    )


def live_event(customer, tokens_used, key=None):
    return event(customer, tokens_used, key=key, at=timezone.now() - timedelta(seconds=1))


def test_post_event_stores_and_debits(api_client, customer, live_subscription):
    fund(customer, "10", now=timezone.now())

    response = api_client.post("/v0/events", live_event(customer, 300, key="k1"), format="json")

    assert response.status_code == 202
    assert response.json()["idempotencyKey"] == "k1"
    assert balance(customer) == Decimal(7)
    # a resend is metering's duplicate answer and debits nothing
    again = api_client.post("/v0/events", live_event(customer, 300, key="k1"), format="json")
    assert (again.status_code, again.json()["duplicate"], again["Idempotent-Replayed"]) == (202, True, "true")
    assert balance(customer) == Decimal(7)


def test_post_event_over_the_balance_under_block_is_402(api_client, customer, live_subscription):
    fund(customer, "5", policy="block", now=timezone.now())

    response = api_client.post("/v0/events", live_event(customer, 600, key="big"), format="json")

    assert response.status_code == 402
    body = response.json()
    assert body["error"] == "payment_required"
    assert body["code"] == "INSUFFICIENT_BALANCE"
    assert body["details"] == {"available": "5", "required": "6", "currency": "USD"}
    assert "Insufficient prepaid balance" in body["message"]
    assert not UsageEvent.objects.filter(idempotency_key="big").exists()
    assert balance(customer) == Decimal(5)


def test_batch_reports_the_refused_item_with_code_and_details(api_client, customer, live_subscription):
    fund(customer, "5", policy="block", now=timezone.now())
    events = [live_event(customer, 300, "a"), live_event(customer, 600, "b"), live_event(customer, 100, "c")]

    response = api_client.post("/v0/events/batch", {"events": events}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"accepted": 2, "duplicate": 0, "rejected": 1}
    refused = body["results"][1]
    assert refused["status"] == "rejected"
    assert refused["code"] == "INSUFFICIENT_BALANCE"
    assert refused["details"] == {"available": "2", "required": "6", "currency": "USD"}
    assert "id" not in refused
    assert balance(customer) == Decimal(1)


def test_bad_event_is_still_a_400_naming_the_field(api_client, customer, live_subscription):
    bad = live_event(customer, 300)
    del bad["source"]

    response = api_client.post("/v0/events", bad, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "source"


def test_usage_cost_answers_the_current_period(api_client, customer, live_subscription, merchant):
    fund(customer, "10", now=timezone.now())
    api_client.post(
        "/v0/events/batch", {"events": [live_event(customer, 900), live_event(customer, 300)]}, format="json"
    )

    response = api_client.get(f"/v0/customers/{customer.pk}/usageCost")

    assert response.status_code == 200
    body = response.json()
    [cost] = body["subscriptions"]
    assert cost["subscriptionId"] == live_subscription.pk
    assert (cost["usageCost"], cost["paidFromBalance"], cost["overage"]) == ("11", "10", "1")
    assert body["balances"][0]["balance"] == "-1"
    # another merchant's customer is a 404; an unknown currency a 400
    other = CustomerFactory()
    assert api_client.get(f"/v0/customers/{other.pk}/usageCost").status_code == 404
    bad = api_client.get(f"/v0/customers/{customer.pk}/usageCost?currency=XXQ")
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (400, "currency")


def test_usage_cost_reads_a_fixed_number_of_statements(
    api_client, customer, live_subscription, django_assert_num_queries
):
    fund(customer, "10", now=timezone.now())
    for batch in range(3):
        api_client.post(
            "/v0/events/batch", {"events": [live_event(customer, 100 + batch), live_event(customer, 7)]}, format="json"
        )

    # The API key comes from the per-process cache (the POSTs above looked it up); then the customer
    # with its wallets (one statement), its real-time subscriptions, their running period totals —
    # whatever the number of events and debits
    with django_assert_num_queries(3):
        response = api_client.get(f"/v0/customers/{customer.pk}/usageCost?currency=USD")

    assert response.status_code == 200
    assert [b["currency"] for b in response.json()["balances"]] == ["USD"]


def test_usage_cost_of_a_customer_without_a_wallet_lists_no_balance(api_client, customer):
    response = api_client.get(f"/v0/customers/{customer.pk}/usageCost")

    assert response.status_code == 200
    assert response.json()["balances"] == []

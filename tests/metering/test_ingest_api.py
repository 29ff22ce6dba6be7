"""POST /v0/events: 202 with the event in the Paygentic shape; duplicates answered, never counted twice."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metering.models import UsageEvent
from metering.selectors import usage_aggregate
from tests.metering.conftest import FEB, JAN

pytestmark = pytest.mark.django_db


def _event(customer, **overrides):
    body = {
        "type": "llm.completion",
        "source": "https://api.example.com",
        "subject": customer.pk,
        "data": {"input_tokens": 1200, "model": "nle-1"},
        "timestamp": "2026-01-05T03:04:05Z",
        "idempotencyKey": "req_0001",
    }
    body.update(overrides)
    return body


def test_single_event_is_accepted_with_202_and_the_event_body(api_client, merchant, input_tokens, customer):
    # when
    response = api_client.post("/v0/events", _event(customer, externalId="ref-1"), format="json")

    # then
    assert response.status_code == 202
    assert response["Content-Type"] == "application/json"
    event = UsageEvent.objects.get()
    assert response.json() == {
        "id": f"evt_{event.pk}",
        "object": "event",
        "type": "llm.completion",
        "source": "https://api.example.com",
        "subject": customer.pk,
        "timestamp": "2026-01-05T03:04:05Z",
        "idempotencyKey": "req_0001",
        "externalId": "ref-1",
        "namespace": merchant.pk,
    }
    assert event.data == {"input_tokens": 1200, "model": "nle-1"}
    assert event.customer_id == customer.pk


def test_resend_is_a_duplicate_with_the_original_body_and_counts_once(api_client, input_tokens, customer):
    first = api_client.post("/v0/events", _event(customer), format="json")

    # when: the same key again, even with other data
    second = api_client.post("/v0/events", _event(customer, data={"input_tokens": 5}), format="json")

    # then
    assert second.status_code == 202
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == {**first.json(), "duplicate": True}
    assert UsageEvent.objects.count() == 1
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal("1200")


def test_idempotency_key_is_generated_when_absent(api_client, input_tokens, customer):
    body = _event(customer)
    del body["idempotencyKey"]

    first = api_client.post("/v0/events", body, format="json")
    second = api_client.post("/v0/events", body, format="json")

    assert first.status_code == second.status_code == 202
    assert len(first.json()["idempotencyKey"]) == 32
    assert first.json()["idempotencyKey"] != second.json()["idempotencyKey"]
    assert UsageEvent.objects.count() == 2


def test_same_key_in_two_merchants_is_two_events(api_client, input_tokens, customer):
    from rest_framework.test import APIClient

    from catalog.services import api_key_create
    from tests.factories import BillableMetricFactory, CustomerFactory, MerchantFactory

    other = MerchantFactory()
    BillableMetricFactory(merchant=other, product__merchant=other, event_type="llm.completion")
    other_customer = CustomerFactory(merchant=other)
    _, raw_key = api_key_create(merchant=other, name="k")
    other_client = APIClient()
    other_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    assert api_client.post("/v0/events", _event(customer), format="json").status_code == 202
    response = other_client.post("/v0/events", _event(other_customer), format="json")

    assert response.status_code == 202
    assert "duplicate" not in response.json()
    assert UsageEvent.objects.count() == 2


def test_timestamp_defaults_to_server_time(api_client, input_tokens, customer):
    body = _event(customer)
    del body["timestamp"]

    response = api_client.post("/v0/events", body, format="json")

    event = UsageEvent.objects.get()
    assert response.status_code == 202
    assert event.timestamp == event.received_at


def test_backdated_event_is_accepted(api_client, input_tokens, customer):
    response = api_client.post("/v0/events", _event(customer, timestamp="2020-02-29T23:59:59+01:00"), format="json")

    assert response.status_code == 202
    assert response.json()["timestamp"] == "2020-02-29T22:59:59Z"


def test_numeric_string_value_is_accepted(api_client, input_tokens, customer):
    response = api_client.post("/v0/events", _event(customer, data={"input_tokens": "12.5"}), format="json")

    assert response.status_code == 202
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal("12.5")

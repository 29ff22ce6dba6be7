"""API keys: a revoked key is refused; one merchant's key never reads or writes another's data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from catalog.models import ApiKey
from catalog.services import api_key_create, api_key_revoke
from metering.models import UsageEvent
from tests.factories import BillableMetricFactory, CustomerFactory, MerchantFactory
from tests.metering.factories import UsageEventFactory

pytestmark = pytest.mark.django_db

EVENT = {"type": "llm.completion", "source": "app", "data": {"input_tokens": 1}}
RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


def test_revoked_key_is_refused_with_401_in_the_error_shape(api_client, merchant, input_tokens, customer):
    api_key_revoke(api_key=ApiKey.objects.get(merchant=merchant), now=datetime(2026, 1, 1, tzinfo=UTC))

    response = api_client.post("/v0/events", {**EVENT, "subject": customer.pk}, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "message": "This API key is not valid or has been revoked.",
        "error": "unauthorized",
    }
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("path", ["/v0/events", "/v0/events/batch"])
def test_no_key_is_refused(anonymous_client, path):
    response = anonymous_client.post(path, EVENT, format="json")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


@pytest.fixture
def other_merchant_client():
    other = MerchantFactory(name="Other")
    _, raw_key = api_key_create(merchant=other, name="k")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    client.merchant = other
    return client


def test_other_merchant_cannot_write_events_for_my_customer(other_merchant_client, customer):
    BillableMetricFactory(
        merchant=other_merchant_client.merchant,
        product__merchant=other_merchant_client.merchant,
        event_type="llm.completion",
        value_property="$.input_tokens",
    )

    single = other_merchant_client.post("/v0/events", {**EVENT, "subject": customer.pk}, format="json")
    batch = other_merchant_client.post("/v0/events/batch", [{**EVENT, "subject": customer.pk}], format="json")

    assert single.status_code == 400
    assert single.json()["errors"][0]["field"] == "subject"
    assert batch.json()["counts"] == {"accepted": 0, "duplicate": 0, "rejected": 1}
    assert UsageEvent.objects.count() == 0


def test_other_merchant_cannot_use_my_event_types(other_merchant_client, input_tokens):
    stranger = CustomerFactory(merchant=other_merchant_client.merchant)

    response = other_merchant_client.post("/v0/events", {**EVENT, "subject": stranger.pk}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "type"


@pytest.mark.parametrize("endpoint", ["meter", "events"])
def test_other_merchant_metric_is_404(other_merchant_client, input_tokens, customer, endpoint):
    UsageEventFactory(customer=customer, data={"input_tokens": 5})

    response = other_merchant_client.get(f"/v0/billableMetrics/{input_tokens.pk}/{endpoint}", RANGE)

    assert response.status_code == 404
    assert response.json() == {"message": "No such billable metric.", "error": "not_found"}


def test_other_merchant_customer_as_subject_is_refused(api_client, input_tokens):
    stranger = CustomerFactory()

    response = api_client.get(f"/v0/billableMetrics/{input_tokens.pk}/meter", {**RANGE, "subject": stranger.pk})

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "subject", "message": f"No customer {stranger.pk} in your organization."}
    ]

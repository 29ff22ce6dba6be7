from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from catalog.services import api_key_create
from tests.factories import MerchantFactory

from .factories import CustomerFactory, TestClockFactory, llm_plan, usage_plan

JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def plan(merchant):
    return llm_plan(merchant)


@pytest.fixture
def arrears_plan(merchant):
    return usage_plan(merchant)


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, name="Acme Inc", time_zone="UTC")


@pytest.fixture
def clock(merchant):
    return TestClockFactory(merchant=merchant, current_time=JAN_1)


@pytest.fixture
def other_merchant(db):
    return MerchantFactory(name="Other Labs")


@pytest.fixture
def other_client(other_merchant) -> APIClient:
    _, raw_key = api_key_create(merchant=other_merchant, name="other")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def subscribe(api_client, customer, clock):
    """POST /v0/subscriptions on the clock; returns the response."""

    def create(plan, **extra):
        body = {
            "name": "Acme - Pro",
            "planId": plan.id,
            "customerId": customer.id,
            "startedAt": "2025-01-01T00:00:00Z",
            "testClockId": clock.id,
            "autoCharge": False,
            "taxExempt": False,
            "elapsedPeriodBilling": "none",
            **extra,
        }
        return api_client.post("/v0/subscriptions", body, format="json")

    return create

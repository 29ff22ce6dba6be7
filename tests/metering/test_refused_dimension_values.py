"""A price that refuses values it has no rate for: ingestion answers 400 on the property for such events."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metering.models import UsageEvent
from tests.factories import MeteredPriceFactory

pytestmark = pytest.mark.django_db

RATES = {
    "dimensions": ["model"],
    "unmatched": "refuse",
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001"},
        {"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000004"},
    ],
}


@pytest.fixture
def refusing_price(input_tokens):
    return MeteredPriceFactory(
        merchant=input_tokens.merchant,
        billable_metric=input_tokens,
        plan=None,
        unit_price=Decimal("0.000002"),
        invoice_display_name="Input tokens",
        dimensional_rates=RATES,
    )


def _event(customer, **data):
    return {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {"input_tokens": 5, **data}}


def test_a_priced_model_is_accepted(api_client, customer, refusing_price):
    response = api_client.post("/v0/events", _event(customer, model="nle-large"), format="json")
    assert response.status_code in (200, 201, 202), response.content
    assert UsageEvent.objects.count() == 1


@pytest.mark.parametrize("data", [{"model": "nle-xl"}, {}, {"model": 7}])
def test_a_model_without_a_rate_is_refused_on_the_property(api_client, customer, refusing_price, data):
    response = api_client.post("/v0/events", _event(customer, **data), format="json")
    assert response.status_code == 400
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "has no rate on the price “Input tokens”; priced values: nle-large, nle-small." in errors["data.model"]
    assert not UsageEvent.objects.exists()


def test_a_price_that_prices_other_values_at_its_own_rate_refuses_nothing(api_client, customer, refusing_price):
    refusing_price.dimensional_rates = {**RATES, "unmatched": "default"}
    refusing_price.save()
    response = api_client.post("/v0/events", _event(customer, model="nle-xl"), format="json")
    assert response.status_code in (200, 201, 202), response.content

"""Rates per event property on the admin's price page: a validated JSON editor with the engine's messages."""

from __future__ import annotations

import json

import pytest

from catalog.models import Price
from tests.catalog.test_admin_prices import PRICE_ADD, metric, plan, price_form  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

RATES = {
    "dimensions": ["model"],
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001"},
        {"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000004"},
    ],
}


def test_finance_saves_a_per_model_price_with_the_price_rate_as_default(superuser_client, plan, metric):  # noqa: F811
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "unit_price": "0.000002",
            "dimensional_rates": json.dumps(RATES),
        }
    )
    response = superuser_client.post(PRICE_ADD, data)
    assert response.status_code == 302
    assert Price.objects.get(plan=plan).dimensional_rates == RATES


def test_the_page_shows_the_example_and_the_engine_message(superuser_client, plan, metric):  # noqa: F811
    broken = {**RATES, "rates": [{"values": {"model": "a"}, "model": "standard"}]}
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "unit_price": "0.000002",
            "dimensional_rates": json.dumps(broken),
        }
    )
    response = superuser_client.post(PRICE_ADD, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"dimensional_rates": ["Rate 1 (standard) needs unitPrice"]}
    assert "Rates per event property" in response.content.decode()
    assert not Price.objects.exists()

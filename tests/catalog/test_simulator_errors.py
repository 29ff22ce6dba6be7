"""The price simulator refuses input it cannot simulate with a clear message, and names prices by their names."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.models import PriceModel
from catalog.simulator import SimulatedUsage, plan_simulate
from tests.factories import MeteredPriceFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _simulate(client, price, typed: str):
    url = reverse("admin:catalog_plan_simulate", args=(quote(price.plan.pk),))
    return client.get(url, {"simulate": "1", f"q_{price.pk}": typed})


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1e30", "The usage must be below 1,000,000,000,000,000 (10^15)."),
        ("1000000000000000", "The usage must be below 1,000,000,000,000,000 (10^15)."),
        ("-5", "The usage cannot be negative."),
        ("lots", "Enter a number, e.g. 250000 or 1.5 (amounts separated by commas)."),
        ("NaN", "Enter a finite number, e.g. 250000."),
        ("Infinity", "Enter a finite number, e.g. 250000."),
        ("0.0000000000001", "Use at most 12 decimal places."),
    ],
)
def test_absurd_quantities_are_refused_with_a_clear_message(superuser_client, typed, message):
    price = MeteredPriceFactory(invoice_display_name="Input tokens")

    response = _simulate(superuser_client, price, typed)

    assert [entry["error"] for entry in response.context["inputs"]] == [message]
    assert response.context["simulation"] is None


def test_the_largest_allowed_quantity_is_simulated(superuser_client):
    price = MeteredPriceFactory(invoice_display_name="Input tokens", unit_price=Decimal("0.000002"))

    response = _simulate(superuser_client, price, "999,999,999,999,999")

    assert response.context["simulation"].total == Decimal("2000000000.00")


def test_negative_transaction_amounts_are_refused(superuser_client):
    price = MeteredPriceFactory(
        invoice_display_name="Card fees", model=PriceModel.PERCENTAGE, unit_price=None, percentage_rate=Decimal("0.029")
    )

    response = _simulate(superuser_client, price, "100, -20")

    assert [entry["error"] for entry in response.context["inputs"]] == ["The transaction amount cannot be negative."]


def test_a_price_the_engine_refuses_is_named_by_its_display_name_not_its_id():
    price = MeteredPriceFactory(invoice_display_name="Input tokens", model=PriceModel.GRADUATED, unit_price=None)

    simulation = plan_simulate(
        plan=price.plan, usage={price.pk: SimulatedUsage(quantity=Decimal(10))}, at=NOW, rounding="ROUND_HALF_UP"
    )

    error = simulation.lines[0].error
    assert error == "Input tokens: Add at least one tier; the last one must be open-ended."
    assert price.pk not in error

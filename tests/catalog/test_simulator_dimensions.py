"""The simulator takes a quantity per combination of a price with rates per model and prices each like the invoice."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.simulator import SimulatedUsage, plan_simulate
from tests.factories import MeteredPriceFactory, PlanFactory

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 10, tzinfo=UTC)
RATES = {
    "dimensions": ["model"],
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001"},
        {
            "values": {"model": "nle-large"},
            "model": "graduated",
            "tiers": [{"upTo": "1000000", "unitPrice": "0.000004"}, {"upTo": None, "unitPrice": "0.000003"}],
        },
    ],
}


@pytest.fixture
def plan_and_price():
    plan = PlanFactory(name="Per model", currency="USD")
    price = MeteredPriceFactory(
        plan=plan, unit_price=Decimal("0.000002"), invoice_display_name="Input", dimensional_rates=RATES
    )
    return plan, price


def test_each_combination_is_a_line_of_its_own(plan_and_price):
    plan, price = plan_and_price
    usage = SimulatedUsage(
        by_values=(
            (("nle-small",), Decimal(2_000_000)),
            (("nle-large",), Decimal(1_500_000)),
            ((None,), Decimal(500_000)),
        )
    )
    simulation = plan_simulate(plan=plan, usage={price.pk: usage}, at=AT, rounding="ROUND_HALF_UP")
    assert [(line.name, line.amount) for line in simulation.lines] == [
        ("Input — model=nle-small", Decimal("2.00")),
        ("Input — model=nle-large", Decimal("5.50")),
        ("Input — other values", Decimal("1.00")),
    ]
    assert simulation.total == Decimal("8.50")


def test_the_page_asks_a_quantity_per_model(admin_client, plan_and_price):
    plan, price = plan_and_price
    url = reverse("admin:catalog_plan_simulate", args=[quote(plan.pk)])
    response = admin_client.get(url, {"simulate": "1", f"q_{price.pk}__1": "1,500,000", f"q_{price.pk}__other": "10"})
    body = response.content.decode()
    assert "Input — model=nle-small" in body and "Input — other values (priced at this price" in body
    assert "1,000,000–1,500,000" in body
    assert 'id="simulation-total"><strong>$5.50</strong>' in body


def test_a_price_per_model_and_region_asks_a_quantity_per_pair(admin_client):
    plan = PlanFactory(name="Per region", currency="USD")
    price = MeteredPriceFactory(
        plan=plan,
        unit_price=Decimal("0.000002"),
        invoice_display_name="Input",
        dimensional_rates={
            "dimensions": ["model", "region"],
            "rates": [
                {"values": {"model": "nle-small", "region": "eu"}, "model": "standard", "unitPrice": "0.000001"},
                {"values": {"model": "nle-small", "region": "us"}, "model": "standard", "unitPrice": "0.0000015"},
            ],
        },
    )
    url = reverse("admin:catalog_plan_simulate", args=[quote(plan.pk)])
    # 2M eu tokens × $0.000001 = $2.00; 1M us × $0.0000015 = $1.50; 250,000 of other pairs × $0.000002 = $0.50
    response = admin_client.get(
        url,
        {
            "simulate": "1",
            f"q_{price.pk}__0": "2,000,000",
            f"q_{price.pk}__1": "1,000,000",
            f"q_{price.pk}__other": "250,000",
        },
    )
    body = response.content.decode()
    assert "Input — model=nle-small, region=eu" in body and "Input — model=nle-small, region=us" in body
    assert 'id="simulation-total"><strong>$4.00</strong>' in body

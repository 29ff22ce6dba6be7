"""Numbers people read in the admin: inputs, change lists and read-only fields show decimals normalized
(no 0E-12, no 1000000.000000000000, no 59.5000) and money in its currency."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from tests.factories import MeteredPriceFactory, PlanFactory, PriceTierFactory

pytestmark = pytest.mark.django_db


def _input_value(page: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page)
    assert match, f"no input {name}"
    value = re.search(r'value="([^"]*)"', match.group(0))
    return value.group(1) if value else ""


def test_price_inputs_show_stored_decimals_normalized(superuser_client):
    price = MeteredPriceFactory(
        unit_price=Decimal("0.000002000000"),
        free_units=Decimal("0E-12"),
        minimum_commitment=Decimal("1000000.000000000000"),
    )

    page = superuser_client.get(reverse("admin:catalog_price_change", args=(quote(price.pk),))).content.decode()

    assert _input_value(page, "unit_price") == "0.000002"
    assert _input_value(page, "free_units") == "0"
    assert _input_value(page, "minimum_commitment") == "1000000"
    assert "0E-12" not in page
    assert "000000000000" not in page


def test_tier_inline_inputs_show_stored_decimals_normalized(superuser_client):
    price = MeteredPriceFactory(model="graduated", unit_price=None)
    PriceTierFactory(price=price, up_to=Decimal("10000000.000000000000"), unit_price=Decimal("0.000002"))
    PriceTierFactory(price=price, up_to=None, unit_price=Decimal("0E-12"))

    page = superuser_client.get(reverse("admin:catalog_price_change", args=(quote(price.pk),))).content.decode()

    assert _input_value(page, "tiers-0-up_to") == "10000000"
    assert _input_value(page, "tiers-0-unit_price") == "0.000002"
    assert _input_value(page, "tiers-0-flat_fee") == "0"
    assert _input_value(page, "tiers-1-unit_price") == "0"


def test_plan_inputs_and_change_list_show_money_in_its_currency(superuser_client):
    plan = PlanFactory(
        name="Scale",
        currency="USD",
        minimum_commitment=Decimal("1000000.000000000000"),
        discount_percent=Decimal("59.5000"),
        default_tax_rate=Decimal("8.5000"),
    )

    change = superuser_client.get(reverse("admin:catalog_plan_change", args=(quote(plan.pk),))).content.decode()
    listing = superuser_client.get(reverse("admin:catalog_plan_changelist")).content.decode()

    assert _input_value(change, "minimum_commitment") == "1000000"
    assert _input_value(change, "discount_percent") == "59.5"
    assert _input_value(change, "default_tax_rate") == "8.5"
    assert '<td class="field-minimum_commitment_display">$1,000,000.00</td>' in listing
    assert '<td class="field-discount_display">59.5 %</td>' in listing
    assert "59.5000" not in listing
    assert "1000000.000000000000" not in listing


def test_simulator_shows_allowances_normalized_and_amounts_in_the_plan_currency(superuser_client):
    price = MeteredPriceFactory(
        invoice_display_name="Input tokens",
        unit_price=Decimal("0.000002"),
        free_units=Decimal("10000.000000000000"),
        plan__currency="USD",
    )
    url = reverse("admin:catalog_plan_simulate", args=(quote(price.plan.pk),))

    page = superuser_client.get(url, {"simulate": "1", f"q_{price.pk}": "1010000"}).content.decode()

    assert "first 10,000 free" in page
    assert "<td>1,010,000 tokens</td>" in page
    assert 'id="simulation-total"><strong>$2.00</strong>' in page
    assert "1E+4" not in page

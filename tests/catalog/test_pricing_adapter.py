"""Catalog prices rate through the engine exactly as configured."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import DynamicRate, PriceModel, PriceTier
from catalog.pricing import PricingError, Usage, rate
from catalog.pricing_adapter import price_spec_from_price
from tests.factories import FeePriceFactory, MeteredPriceFactory

pytestmark = pytest.mark.django_db


def test_graduated_price_with_free_allowance_rates_from_its_tier_rows():
    # given Pro input tokens: 10K free, then 0–10M at $0.000002 and beyond at $0.000001
    price = MeteredPriceFactory(model=PriceModel.GRADUATED, unit_price=None, free_units=Decimal("10000"))
    PriceTier.objects.create(price=price, up_to=None, unit_price=Decimal("0.000001"))
    PriceTier.objects.create(price=price, up_to=Decimal("10000000"), unit_price=Decimal("0.000002"))

    # when 25,010,000 tokens are used
    result = rate(price_spec_from_price(price), Decimal("25010000"))

    # then 10M × 0.000002 + 15M × 0.000001 = 35.00
    assert result.amount == Decimal("35")
    assert result.rounded == Decimal("35.00")


def test_standard_per_thousand_package_rounds_up_when_configured():
    price = MeteredPriceFactory(unit_price=Decimal("0.002"), package_size=Decimal("1000"), package_rounding="up")

    assert rate(price_spec_from_price(price), Decimal("1500")).amount == Decimal("0.004")


def test_reserved_discount_and_fee_quantity():
    compute = MeteredPriceFactory(unit_price=Decimal("0.0001"), discount_percent=Decimal("40"))
    platform = FeePriceFactory(unit_price=Decimal("49.00"))

    assert rate(price_spec_from_price(compute), Decimal("1234567")).rounded == Decimal("74.07")
    assert rate(price_spec_from_price(platform), Decimal(platform.quantity)).rounded == Decimal("49.00")


def test_dynamic_schedule_uses_the_rate_in_force(django_assert_num_queries):
    price = MeteredPriceFactory(model=PriceModel.DYNAMIC, unit_price=None, dynamic_mode="schedule")
    DynamicRate.objects.create(price=price, effective_from=datetime(2026, 1, 1, tzinfo=UTC), unit_price=Decimal("1"))
    DynamicRate.objects.create(price=price, effective_from=datetime(2026, 1, 15, tzinfo=UTC), unit_price=Decimal("2"))
    spec = price_spec_from_price(price)
    usage = Usage(
        events=[(datetime(2026, 1, 2, tzinfo=UTC), Decimal("3")), (datetime(2026, 1, 20, tzinfo=UTC), Decimal("4"))]
    )

    assert rate(spec, usage).amount == Decimal("11")
    with django_assert_num_queries(0):  # cached on the instance
        assert price_spec_from_price(price) is spec


def test_inconsistent_stored_price_raises_an_error_naming_it():
    price = MeteredPriceFactory(model=PriceModel.GRADUATED, unit_price=None, invoice_display_name="Egress")
    PriceTier.objects.create(price=price, up_to=Decimal("100"), unit_price=Decimal("1"))

    with pytest.raises(PricingError, match="Egress"):
        price_spec_from_price(price)

"""Catalog prices rate through the engine exactly as configured."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import DynamicRate, Price, PriceModel, PriceTier
from catalog.pricing import PricingError, Usage, rate, rate_dimensional
from catalog.pricing_adapter import price_dimensional_spec, price_spec_from_price
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


def _per_model(small_rate: str) -> dict:
    return {
        "dimensions": ["model"],
        "unmatched": "default",
        "rates": [{"values": {"model": "nle-small"}, "model": "standard", "unitPrice": small_rate}],
    }


def test_a_dimensional_price_read_again_after_an_edit_rates_at_its_new_rates():
    """The parsed rates are kept per process (the real-time path reads its prices afresh per request):
    what they are kept by is the stored rates and the price's own spec, so an edit is seen at once."""
    price = MeteredPriceFactory(unit_price=Decimal("0.003"), dimensional_rates=_per_model("0.001"))
    twin = MeteredPriceFactory(
        plan=price.plan,
        billable_metric=price.billable_metric,
        unit_price=Decimal("0.004"),
        dimensional_rates=_per_model("0.001"),
    )
    usage = {("nle-small",): Decimal("1000"), ("other",): Decimal("1000")}

    before = rate_dimensional(price_dimensional_spec(Price.objects.get(pk=price.pk)), usage).amount
    price.dimensional_rates = _per_model("0.002")
    price.save(update_fields=["dimensional_rates"])
    after = rate_dimensional(price_dimensional_spec(Price.objects.get(pk=price.pk)), usage).amount
    twin_spec = price_dimensional_spec(Price.objects.get(pk=twin.pk))

    # 1,000 × 0.001 + 1,000 × 0.003 (the price's own rate for other models) = 4.00; then 2.00 + 3.00
    assert (before, after) == (Decimal("4.000"), Decimal("5.000"))
    # the same rates on another price: its own id and default rate (1,000 × 0.004 for other models)
    assert twin_spec.price_id == twin.pk
    assert rate_dimensional(twin_spec, usage).amount == Decimal("5.000")

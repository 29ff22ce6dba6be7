"""Volume model: the tier reached by the period's total applies to every unit."""

from decimal import Decimal

import pytest

from catalog.pricing import LineKind, PriceSpec, PricingModel, Tier, rate

TIERS = (
    Tier(up_to=Decimal(100), unit_price=Decimal(5)),
    Tier(up_to=None, unit_price=Decimal(3)),
)


def _spec(tiers=TIERS) -> PriceSpec:
    return PriceSpec(
        price_id="price_vol", name="Messages", model=PricingModel.VOLUME, currency="USD", tiers=tiers
    )


@pytest.mark.parametrize(
    ("quantity", "expected", "tier"),
    [
        ("1", "5", 1),
        ("99", "495", 1),
        ("100", "500", 1),  # a band matches when quantity <= up_to
        ("101", "303", 2),
        ("100.5", "301.5", 2),
        ("1000000000000", "3000000000000", 2),
    ],
)
def test_the_reached_tier_prices_every_unit(quantity, expected, tier):
    result = rate(_spec(), Decimal(quantity))
    assert result.amount == Decimal(expected)
    (line,) = result.lines
    assert line.kind == LineKind.VOLUME_TIER
    assert line.tier == tier
    assert line.quantity == Decimal(quantity)


def test_zero_usage_charges_nothing():
    result = rate(_spec(), Decimal(0))
    assert result.amount == Decimal(0)
    assert result.lines == ()
    assert result.describe() == "0 units = $0.00"


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("50", "60"), ("100", "110"), ("101", "141.2"), ("500", "620.0")],
)
def test_flat_fee_of_the_reached_tier(quantity, expected):
    # given: 100 @ 1 + 10 flat, then open @ 1.2 + 20 flat
    spec = _spec(
        tiers=(
            Tier(up_to=Decimal(100), unit_price=Decimal(1), flat_fee=Decimal(10)),
            Tier(up_to=None, unit_price=Decimal("1.2"), flat_fee=Decimal(20)),
        )
    )
    # when
    result = rate(spec, Decimal(quantity))
    # then
    assert result.amount == Decimal(expected)
    assert [line.kind for line in result.lines] == [LineKind.VOLUME_TIER, LineKind.FLAT_FEE]


def test_descriptions_name_the_band():
    assert rate(_spec(), Decimal(100)).describe() == "100 units × $5.00 (tier 1: up to 100 units) = $500.00"
    assert rate(_spec(), Decimal(101)).describe() == "101 units × $3.00 (tier 2: above 100 units) = $303.00"

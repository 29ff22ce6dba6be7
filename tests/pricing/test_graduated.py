"""Graduated model: each tier's rate applies to the units inside that tier, plus optional flat fees."""

from decimal import Decimal

import pytest

from catalog.pricing import LineKind, PriceSpec, PricingModel, Tier, Usage, rate

TIERS = (
    Tier(up_to=Decimal(100), unit_price=Decimal(5)),
    Tier(up_to=Decimal(1000), unit_price=Decimal(3)),
    Tier(up_to=None, unit_price=Decimal(1)),
)


def _spec(tiers=TIERS, **overrides) -> PriceSpec:
    fields = {
        "price_id": "price_grad",
        "name": "Seats",
        "model": PricingModel.GRADUATED,
        "currency": "USD",
        "tiers": tiers,
    }
    fields.update(overrides)
    return PriceSpec(**fields)


@pytest.mark.parametrize(
    ("quantity", "expected", "tier_quantities"),
    [
        ("0", "0", []),
        ("1", "5", ["1"]),
        ("99", "495", ["99"]),
        ("100", "500", ["100"]),
        ("101", "503", ["100", "1"]),
        ("999", "3197", ["100", "899"]),
        ("1000", "3200", ["100", "900"]),
        ("1001", "3201", ["100", "900", "1"]),
        ("100.5", "501.5", ["100", "0.5"]),
        ("1000000000000", "1000000002200", ["100", "900", "999999999000"]),
    ],
)
def test_each_tier_prices_its_own_units(quantity, expected, tier_quantities):
    # when
    result = rate(_spec(), Usage(quantity=Decimal(quantity)))
    # then
    assert result.amount == Decimal(expected)
    assert [line.quantity for line in result.lines] == [Decimal(q) for q in tier_quantities]
    assert all(line.kind == LineKind.TIER for line in result.lines)


def test_lines_carry_tier_bounds_and_numbers():
    result = rate(_spec(), Decimal(1500))
    assert [(line.tier, line.lower, line.upper) for line in result.lines] == [
        (1, Decimal(0), Decimal(100)),
        (2, Decimal(100), Decimal(1000)),
        (3, Decimal(1000), None),
    ]
    assert [line.unit_price for line in result.lines] == [Decimal(5), Decimal(3), Decimal(1)]


def test_description_matches_the_issue_wording():
    # given
    spec = _spec(
        tiers=(
            Tier(up_to=Decimal(100000), unit_price=Decimal("0.000002")),
            Tier(up_to=None, unit_price=Decimal("0.000001")),
        ),
        unit_name="tokens",
    )
    # when
    result = rate(spec, Decimal(250000))
    # then
    assert result.amount == Decimal("0.35")
    assert result.describe() == (
        "0–100,000 tokens × $0.000002 = $0.20; 100,000–250,000 tokens × $0.000001 = $0.15"
    )


FLAT_TIERS = (
    Tier(up_to=Decimal(10), unit_price=Decimal(0), flat_fee=Decimal(20)),
    Tier(up_to=Decimal(50), unit_price=Decimal(2), flat_fee=Decimal(5)),
    Tier(up_to=None, unit_price=Decimal(1)),
)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "0"),  # no unit in any tier: no flat fee either
        ("1", "20"),
        ("10", "20"),
        ("11", "27"),  # 20 + (1 x 2 + 5)
        ("50", "105"),  # 20 + (40 x 2 + 5)
        ("51", "106"),
    ],
)
def test_flat_fee_is_charged_when_any_unit_falls_in_the_tier(quantity, expected):
    result = rate(_spec(tiers=FLAT_TIERS), Decimal(quantity))
    assert result.amount == Decimal(expected)
    assert sum((line.amount for line in result.lines), Decimal(0)) == result.amount


def test_flat_fee_lines_follow_their_tier():
    result = rate(_spec(tiers=FLAT_TIERS), Decimal(11))
    assert [(line.kind, line.tier) for line in result.lines] == [
        (LineKind.TIER, 1),
        (LineKind.FLAT_FEE, 1),
        (LineKind.TIER, 2),
        (LineKind.FLAT_FEE, 2),
    ]
    assert result.lines[1].description == "tier 1 flat fee = $20.00"


def test_single_open_tier():
    spec = _spec(tiers=(Tier(up_to=None, unit_price=Decimal("0.25")),))
    assert rate(spec, Decimal(8)).amount == Decimal("2.00")

"""Free allowance, usage discount, percentage discount and minimum commitments (price and plan)."""

from decimal import ROUND_DOWN, Decimal

import pytest

from catalog.pricing import (
    InvalidPriceError,
    LineKind,
    PriceSpec,
    PricingError,
    PricingModel,
    Tier,
    apply_plan_minimum,
    apply_subtotal_discount,
    rate,
)

D = Decimal
TIERS = (Tier(up_to=D(1000), unit_price=D("0.01")), Tier(up_to=None, unit_price=D("0.005")))


def _spec(**overrides) -> PriceSpec:
    fields = {
        "price_id": "price_api",
        "name": "API requests",
        "model": PricingModel.GRADUATED,
        "currency": "USD",
        "tiers": TIERS,
        "unit_name": "requests",
    }
    fields.update(overrides)
    return PriceSpec(**fields)


@pytest.mark.parametrize(
    ("quantity", "free", "expected", "billable"),
    [
        ("0", "10000", "0", "0"),
        ("9999", "10000", "0", "0"),  # allowance larger than usage
        ("10000", "10000", "0", "0"),
        ("10001", "10000", "0.01", "1"),
        ("12000", "10000", "15.00", "2000"),  # remainder starts at tier 1: 1000 x 0.01 + 1000 x 0.005
        ("10000.5", "10000", "0.005", "0.5"),
    ],
)
def test_free_allowance_is_applied_before_tiers(quantity, free, expected, billable):
    result = rate(_spec(free_units=D(free)), D(quantity))
    assert result.amount == D(expected)
    assert result.billable_quantity == D(billable)
    assert result.lines[0].kind == LineKind.FREE_ALLOWANCE


def test_free_allowance_line_text():
    assert rate(_spec(free_units=D(10000)), D(12000)).lines[0].description == "first 10,000 requests free"
    assert rate(_spec(free_units=D(10000)), D(8000)).lines[0].description == (
        "first 8,000 requests free (allowance 10,000)"
    )


def test_usage_discount_comes_before_the_allowance():
    # 12,500 - 500 usage discount = 12,000; - 10,000 free = 2,000 billable
    result = rate(_spec(usage_discount_units=D(500), free_units=D(10000)), D(12500))
    assert result.billable_quantity == D(2000)
    assert result.amount == D("15.000")
    assert [line.kind for line in result.lines[:2]] == [LineKind.USAGE_DISCOUNT, LineKind.FREE_ALLOWANCE]
    assert result.lines[0].description == "usage discount: 500 requests not billed"


def test_usage_discount_larger_than_usage():
    result = rate(_spec(usage_discount_units=D(500), free_units=D(100)), D(300))
    assert result.amount == D(0)
    assert [line.quantity for line in result.lines] == [D(300), D(0)]


def test_percentage_discount_on_a_price():
    # 2,000 requests = 1000 x 0.01 + 1000 x 0.005 = 15.00; 40% off = -6.00
    result = rate(_spec(discount_percent=D(40)), D(2000))
    assert result.amount == D("9.000")
    discount = result.lines[-1]
    assert discount.kind == LineKind.DISCOUNT
    assert discount.amount == D("-6.000")
    assert discount.description == "40% off $15.00 = -$6.00"


@pytest.mark.parametrize(("percent", "expected"), [("0", "15.000"), ("100", "0"), ("12.5", "13.125")])
def test_discount_bounds(percent, expected):
    assert rate(_spec(discount_percent=D(percent)), D(2000)).amount == D(expected)


@pytest.mark.parametrize("percent", ["-1", "100.01"])
def test_discount_outside_0_to_100_is_refused(percent):
    with pytest.raises(InvalidPriceError, match="API requests"):
        _spec(discount_percent=D(percent))


@pytest.mark.parametrize(
    ("quantity", "expected", "true_up"),
    [
        ("0", "20", "20"),  # no usage: the commitment is still owed
        ("1000", "20", "10.00"),
        ("3000", "20", "0.000"),  # exactly at the minimum: no true-up line
        ("5000", "30.000", None),
    ],
)
def test_price_minimum_commitment(quantity, expected, true_up):
    result = rate(_spec(minimum_amount=D(20)), D(quantity))
    assert result.amount == D(expected)
    true_ups = [line for line in result.lines if line.kind == LineKind.MINIMUM_TRUE_UP]
    if true_up is None or D(true_up) == 0:
        assert true_ups == []
    else:
        assert [line.amount for line in true_ups] == [D(true_up)]
        assert true_ups[0].description == f"minimum commitment $20.00: true-up = ${D(true_up):.2f}"


def test_minimum_applies_after_the_discount():
    # 3,000 requests = 20.00; 50% off = 10.00; minimum 15 -> true-up 5.00
    result = rate(_spec(discount_percent=D(50), minimum_amount=D(15)), D(3000))
    assert result.amount == D(15)
    assert [line.kind for line in result.lines[-2:]] == [LineKind.DISCOUNT, LineKind.MINIMUM_TRUE_UP]
    assert result.lines[-1].amount == D("5.000")


def test_plan_minimum_tops_up_the_rounded_lines():
    # given two priced lines: 15.00 and 0.005 (rounds to 0.01)
    lines = [rate(_spec(), D(2000)), rate(_spec(), D("0.5"))]
    # when
    outcome = apply_plan_minimum(lines, minimum=D(50), currency="USD")
    # then
    assert outcome.lines == (D("15.00"), D("0.01"))
    assert outcome.minimum_true_up == D("34.99")
    assert outcome.total == D("50.00")


def test_plan_minimum_met_adds_nothing():
    outcome = apply_plan_minimum([D("60.004")], minimum=D(50), currency="USD")
    assert outcome.minimum_true_up == D(0)
    assert outcome.total == D("60.00")


def test_plan_minimum_honours_the_rounding_mode():
    outcome = apply_plan_minimum([D("1.009"), D("2.009")], minimum=None, currency="USD", rounding=ROUND_DOWN)
    assert outcome.total == D("3.00")


def test_plan_minimum_refuses_mixed_currencies():
    eur = PriceSpec(price_id="p_eur", name="EUR seats", model="standard", currency="EUR", unit_price=D(1))
    with pytest.raises(PricingError, match="Cannot add a EUR line to a USD plan"):
        apply_plan_minimum([rate(eur, D(1))], minimum=D(5), currency="USD")


@pytest.mark.parametrize(
    ("subtotal", "percent", "discount", "total"),
    [
        ("123.46", "40", "-49.38", "74.08"),
        ("100.00", "0", "0.00", "100.00"),
        ("100.00", "100", "-100.00", "0.00"),
        ("0.05", "50", "-0.03", "0.02"),  # 0.025 rounds half-up to 0.03
    ],
)
def test_subscription_subtotal_discount(subtotal, percent, discount, total):
    outcome = apply_subtotal_discount(D(subtotal), percent=D(percent), currency="USD")
    assert outcome.discount == D(discount)
    assert outcome.total == D(total)
    assert outcome.subtotal + outcome.discount == outcome.total


def test_subtotal_discount_out_of_range_is_refused():
    with pytest.raises(PricingError, match="between 0 and 100"):
        apply_subtotal_discount(D(10), percent=D(101), currency="USD")

"""Worked examples with hand-computed figures, as they would appear on customers' invoices."""

from decimal import ROUND_HALF_UP, Decimal

import pytest

from catalog.pricing import (
    LineKind,
    PackageRounding,
    PriceSpec,
    PricingModel,
    Tier,
    Usage,
    apply_plan_minimum,
    rate,
)

D = Decimal


# -- "Neural Language Engine" --------------------------------------------------------------------

PRO_INPUT = PriceSpec(
    price_id="nle_pro_input",
    name="Pro input tokens",
    model=PricingModel.GRADUATED,
    currency="USD",
    # $0.002 / 1K tokens, 50% volume discount beyond 10,000,000 tokens per month
    tiers=(
        Tier(up_to=D("10000000"), unit_price=D("0.000002")),
        Tier(up_to=None, unit_price=D("0.000001")),
    ),
    unit_name="tokens",
)
PRO_OUTPUT = PriceSpec(
    price_id="nle_pro_output",
    name="Pro output tokens",
    model=PricingModel.GRADUATED,
    currency="USD",
    # $0.006 / 1K tokens, 50% beyond 10,000,000 tokens
    tiers=(
        Tier(up_to=D("10000000"), unit_price=D("0.000006")),
        Tier(up_to=None, unit_price=D("0.000003")),
    ),
    unit_name="tokens",
)
FREE_TOKENS = PriceSpec(
    price_id="nle_free",
    name="Free plan tokens",
    model=PricingModel.STANDARD,
    currency="USD",
    unit_price=D("0.002"),
    package_size=D(1000),
    package_rounding=PackageRounding.EXACT,
    free_units=D(10000),
    unit_name="tokens",
)


def test_pro_input_25_million_tokens():
    # 10M x 0.000002 + 15M x 0.000001 = 20 + 15 = $35.00
    result = rate(PRO_INPUT, Usage(quantity=D("25000000")))
    assert result.amount == D("35")
    assert result.rounded == D("35.00")
    assert [line.amount for line in result.lines] == [D("20"), D("15")]
    assert result.describe() == (
        "0–10,000,000 tokens × $0.000002 = $20.00; 10,000,000–25,000,000 tokens × $0.000001 = $15.00"
    )


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ("0", "0.00"),
        ("1000", "0.00"),  # 1K x $0.002/1K = $0.002 -> $0.00
        ("10000000", "20.00"),  # exactly at the boundary: all at the first rate
        ("10000001", "20.00"),  # + 1 token at 0.000001
        ("9999999", "20.00"),  # 19.999998 -> $20.00
    ],
)
def test_pro_input_boundaries(tokens, expected):
    assert rate(PRO_INPUT, D(tokens)).rounded == D(expected)


def test_pro_plan_invoice_sums_its_rounded_lines():
    # input 25M = $35.00; output 12,345,678 = 10M x 0.000006 + 2,345,678 x 0.000003 = 60 + 7.037034
    lines = [rate(PRO_INPUT, D("25000000")), rate(PRO_OUTPUT, D("12345678"))]
    assert lines[1].amount == D("67.037034")
    invoice = apply_plan_minimum(lines, minimum=None, currency="USD")
    assert invoice.lines == (D("35.00"), D("67.04"))
    assert invoice.total == D("102.04")


def test_free_plan_12500_tokens():
    # 12,500 - 10,000 free = 2,500 x 0.000002 = $0.005 -> $0.01 (half-up)
    result = rate(FREE_TOKENS, Usage(quantity=D("12500")))
    assert result.amount == D("0.005")
    assert result.rounded_amount(ROUND_HALF_UP) == D("0.01")
    assert [line.kind for line in result.lines] == [LineKind.FREE_ALLOWANCE, LineKind.PACKAGE]
    assert result.describe() == "first 10,000 tokens free; 2,500 tokens × $0.002 per 1,000 tokens = $0.005"


def test_free_plan_within_the_allowance():
    result = rate(FREE_TOKENS, D("9000"))
    assert result.amount == D(0)
    assert (
        result.describe()
        == "first 9,000 tokens free (allowance 10,000); 0 tokens × $0.002 per 1,000 tokens = $0.00"
    )


# -- "Cloud Analytics" ---------------------------------------------------------------------------

RESERVED_COMPUTE = PriceSpec(
    price_id="ca_reserved_compute",
    name="Reserved compute",
    model=PricingModel.STANDARD,
    currency="USD",
    unit_price=D("0.0001"),
    discount_percent=D(40),
    unit_name="compute seconds",
)


def test_reserved_plan_40_percent_off_compute():
    # 1,234,567 s x $0.0001 = $123.4567; 40% off = -$49.38268; $74.07402 -> $74.07
    result = rate(RESERVED_COMPUTE, Usage(quantity=D("1234567")))
    assert result.amount == D("74.07402")
    assert result.rounded == D("74.07")
    unit, discount = result.lines
    assert unit.amount == D("123.4567")
    assert discount.kind == LineKind.DISCOUNT
    assert discount.amount == D("-49.38268")
    assert result.describe() == (
        "1,234,567 compute seconds × $0.0001 = $123.4567; 40% off $123.4567 = -$49.38268"
    )


# -- other currencies ----------------------------------------------------------------------------


def test_yen_and_dinar_lines():
    # JPY: 1,234 calls x ¥0.35 = ¥431.9 -> ¥432; KWD: 1,234 x 0.0125 = 15.425 -> KWD 15.425
    yen = PriceSpec(price_id="jp", name="JP calls", model="standard", currency="JPY", unit_price=D("0.35"))
    dinar = PriceSpec(
        price_id="kw", name="KW calls", model="standard", currency="KWD", unit_price=D("0.0125")
    )
    assert rate(yen, D(1234)).rounded == D("432")
    assert rate(yen, D(1234)).describe() == "1,234 units × ¥0.35 = ¥431.9"
    assert rate(dinar, D(1234)).rounded == D("15.425")
    assert rate(dinar, D(1234)).describe() == "1,234 units × KWD 0.0125 = KWD 15.425"

"""ISO 4217 minor units, money rounding, line rounding and the engine's decimal context."""

import decimal
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from fractions import Fraction

import pytest

from catalog.pricing import (
    MINOR_UNITS,
    PriceSpec,
    PricingError,
    UnknownCurrencyError,
    is_known_currency,
    minor_units,
    rate,
    round_fraction,
    round_lines,
    round_money,
)

D = Decimal


@pytest.mark.parametrize(
    ("code", "units"),
    [("JPY", 0), ("USD", 2), ("EUR", 2), ("GBP", 2), ("KWD", 3), ("BHD", 3), ("CLP", 0), ("ISK", 0),
     ("KRW", 0), ("TND", 3), ("CLF", 4), ("UYW", 4), ("XOF", 0), ("CHF", 2)],
)  # fmt: skip
def test_minor_units(code, units):
    assert minor_units(code) == units
    assert is_known_currency(code)


@pytest.mark.parametrize("code", ["XXX", "usd", "", "DOGE", "XAU"])
def test_unknown_currencies(code):
    assert not is_known_currency(code)
    with pytest.raises(UnknownCurrencyError, match="Unknown currency code"):
        minor_units(code)


def test_table_is_broad():
    assert len(MINOR_UNITS) >= 150
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)


@pytest.mark.parametrize(
    ("amount", "currency", "rounding", "expected"),
    [
        ("0.005", "USD", ROUND_HALF_UP, "0.01"),
        ("0.004999", "USD", ROUND_HALF_UP, "0.00"),
        ("0.015", "USD", ROUND_HALF_EVEN, "0.02"),
        ("0.025", "USD", ROUND_HALF_EVEN, "0.02"),
        ("0.025", "USD", ROUND_HALF_DOWN, "0.02"),
        ("0.021", "USD", ROUND_UP, "0.03"),
        ("0.029", "USD", ROUND_DOWN, "0.02"),
        ("-0.021", "USD", ROUND_CEILING, "-0.02"),
        ("-0.021", "USD", ROUND_FLOOR, "-0.03"),
        ("-0.005", "USD", ROUND_HALF_UP, "-0.01"),
        ("1234.5", "JPY", ROUND_HALF_UP, "1235"),
        ("1234.4999", "JPY", ROUND_HALF_UP, "1234"),
        ("1.2345", "KWD", ROUND_HALF_UP, "1.235"),
        ("1.2344", "KWD", ROUND_HALF_UP, "1.234"),
        ("7", "USD", ROUND_HALF_UP, "7.00"),
        ("0", "BHD", ROUND_HALF_UP, "0.000"),
    ],
)
def test_round_money(amount, currency, rounding, expected):
    rounded = round_money(D(amount), currency, rounding)
    assert rounded == D(expected)
    assert str(rounded) == expected  # carries exactly the currency's places


def test_round_money_defaults_to_half_up():
    assert round_money(D("2.675"), "USD") == D("2.68")


def test_unknown_rounding_mode_is_refused():
    with pytest.raises(PricingError, match="Unknown rounding mode"):
        round_money(D(1), "USD", "ROUND_RANDOM")


def test_floats_are_refused():
    with pytest.raises(PricingError, match="must be Decimal"):
        round_money(0.1, "USD")


def test_result_rounds_per_currency():
    cases = (("JPY", "1235", "1234"), ("USD", "1234.57", "1234.56"), ("KWD", "1234.568", "1234.567"))
    for currency, expected, expected_down in cases:
        spec = PriceSpec(
            price_id="p", name="Thing", model="standard", currency=currency, unit_price=D("1.2345675")
        )
        result = rate(spec, D(1000))
        assert result.amount == D("1234.5675000")
        assert result.rounded == D(expected)
        assert result.rounded_amount(ROUND_DOWN) == D(expected_down)


def test_rounded_lines_sum_exactly_to_the_total():
    # three lines of 0.005: rounding each gives 0.01, the total is 0.03 (not round(0.015) = 0.02)
    outcome = round_lines([D("0.005")] * 3, "USD")
    assert outcome.lines == (D("0.01"),) * 3
    assert outcome.total == D("0.03")


@pytest.mark.parametrize(
    ("value", "currency", "rounding", "expected"),
    [
        (Fraction(10, 3), "USD", ROUND_HALF_UP, "3.33"),
        (Fraction(20, 3), "USD", ROUND_HALF_UP, "6.67"),
        (Fraction(1, 200), "USD", ROUND_HALF_UP, "0.01"),
        (Fraction(1, 200), "USD", ROUND_HALF_EVEN, "0.00"),
        (Fraction(-1, 200), "USD", ROUND_HALF_UP, "-0.01"),
        (Fraction(1001, 1000), "USD", ROUND_UP, "1.01"),
        (Fraction(2999, 3), "JPY", ROUND_HALF_UP, "1000"),
    ],
)
def test_round_fraction_rounds_once(value, currency, rounding, expected):
    assert round_fraction(value, currency, rounding) == D(expected)


def test_engine_does_not_depend_on_or_change_the_callers_context():
    spec = PriceSpec(
        price_id="p", name="Precise", model="standard", currency="USD", unit_price=D("0.123456789012345678")
    )
    before = decimal.getcontext().copy()
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = ROUND_DOWN
        result = rate(spec, D("1000000000000.5"))
        assert decimal.getcontext().prec == 3
    assert Fraction(result.amount) == Fraction(D("0.123456789012345678")) * Fraction(D("1000000000000.5"))
    after = decimal.getcontext()
    assert (after.prec, after.rounding) == (before.prec, before.rounding)

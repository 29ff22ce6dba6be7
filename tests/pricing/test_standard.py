"""Standard model: quantity x unit price, optional package size with rounding, rebates."""

from decimal import Decimal
from fractions import Fraction

import pytest

from catalog.pricing import (
    InvalidUsageError,
    LineKind,
    PackageRounding,
    PriceSpec,
    PricingModel,
    Usage,
    rate,
)


def _spec(**overrides) -> PriceSpec:
    fields = {
        "price_id": "price_std",
        "name": "API calls",
        "model": PricingModel.STANDARD,
        "currency": "USD",
        "unit_price": Decimal("0.002"),
        "unit_name": "calls",
    }
    fields.update(overrides)
    return PriceSpec(**fields)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "0"),
        ("1", "0.002"),
        ("1500", "3.000"),
        ("0.5", "0.001"),
        ("1000000000000", "2000000000.000"),
    ],
)
def test_quantity_times_unit_price(quantity, expected):
    # given
    spec = _spec()
    # when
    result = rate(spec, Usage(quantity=Decimal(quantity)))
    # then
    assert result.amount == Decimal(expected)
    assert [line.kind for line in result.lines] == [LineKind.UNIT]
    assert result.lines[0].quantity == Decimal(quantity)


def test_a_bare_decimal_is_accepted_as_the_quantity():
    assert rate(_spec(), Decimal(10)).amount == Decimal("0.020")


def test_description_reads_like_an_invoice_line():
    assert rate(_spec(), Decimal(1500)).describe() == "1,500 calls × $0.002 = $3.00"


@pytest.mark.parametrize(
    ("rounding", "quantity", "packages", "expected"),
    [
        (PackageRounding.EXACT, "1500", "1.5", "0.003"),
        (PackageRounding.UP, "1500", "2", "0.004"),
        (PackageRounding.DOWN, "1500", "1", "0.002"),
        (PackageRounding.UP, "1000", "1", "0.002"),
        (PackageRounding.UP, "1001", "2", "0.004"),
        (PackageRounding.UP, "999", "1", "0.002"),
        (PackageRounding.DOWN, "999", "0", "0"),
        (PackageRounding.EXACT, "0", "0", "0"),
        (PackageRounding.UP, "0", "0", "0"),
    ],
)
def test_package_size_with_rounding_modes(rounding, quantity, packages, expected):
    # given: "$0.002 per 1,000 tokens"
    spec = _spec(package_size=Decimal(1000), package_rounding=rounding, unit_name="tokens")
    # when
    result = rate(spec, Decimal(quantity))
    # then
    assert result.amount == Decimal(expected)
    (line,) = result.lines
    assert line.kind == LineKind.PACKAGE
    assert line.quantity == Decimal(packages)
    assert line.units == Decimal(quantity)


def test_package_size_defaults_to_exact():
    spec = _spec(package_size=Decimal(1000))
    assert spec.package_rounding is PackageRounding.EXACT
    assert rate(spec, Decimal(1500)).amount == Decimal("0.003")


def test_package_descriptions():
    exact = _spec(package_size=Decimal(1000), unit_name="tokens")
    up = _spec(package_size=Decimal(1000), package_rounding=PackageRounding.UP, unit_name="tokens")
    assert rate(exact, Decimal(1500)).describe() == "1,500 tokens × $0.002 per 1,000 tokens = $0.003"
    assert (
        rate(up, Decimal(1500)).describe() == "1,500 tokens billed as 2 packages of 1,000 × $0.002 = $0.004"
    )


def test_exact_packages_that_do_not_terminate_are_deterministic():
    spec = _spec(unit_price=Decimal(1), package_size=Decimal(3))
    first = rate(spec, Decimal(10)).amount
    assert first == rate(spec, Decimal(10)).amount
    assert abs(Fraction(first) - Fraction(10, 3)) < Fraction(1, 10**40)


@pytest.mark.parametrize("quantity", ["-1", "-0.0001"])
def test_negative_quantity_is_refused(quantity):
    with pytest.raises(
        InvalidUsageError, match=r"Price 'API calls' \(price_std\): Quantity cannot be negative"
    ):
        rate(_spec(), Decimal(quantity))


def test_float_quantity_is_refused():
    with pytest.raises(InvalidUsageError, match="must be a Decimal, got float"):
        rate(_spec(), Usage(quantity=1.5))


def test_nan_quantity_is_refused():
    with pytest.raises(InvalidUsageError, match="finite"):
        rate(_spec(), Decimal("NaN"))


def test_int_quantity_is_accepted():
    assert rate(_spec(), 3).amount == Decimal("0.006")


@pytest.mark.parametrize(
    ("unit_price", "quantity", "expected"),
    [
        ("-0.50", "4", "-2.00"),
        ("0.50", "-4", "-2.00"),
        ("-0.50", "-4", "2.00"),
    ],
)
def test_rebates_allow_negative_prices_and_quantities(unit_price, quantity, expected):
    spec = _spec(unit_price=Decimal(unit_price), allow_rebates=True)
    assert rate(spec, Decimal(quantity)).amount == Decimal(expected)


def test_rebate_packages_round_the_magnitude():
    spec = _spec(
        unit_price=Decimal(1),
        package_size=Decimal(10),
        package_rounding=PackageRounding.UP,
        allow_rebates=True,
    )
    assert rate(spec, Decimal(-15)).amount == Decimal(-2)


def test_usage_for_another_model_is_refused():
    with pytest.raises(InvalidUsageError, match="single aggregated quantity"):
        rate(_spec(), Usage(amounts=[Decimal(1)]))

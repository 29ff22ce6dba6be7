"""Package model: whole packages of N units at a package price; partial packages round up."""

from decimal import Decimal

import pytest

from catalog.pricing import InvalidPriceError, InvalidUsageError, LineKind, PackageRounding, PriceSpec, rate


def _spec(**overrides) -> PriceSpec:
    fields = {
        "price_id": "price_pkg",
        "name": "SMS bundles",
        "model": "package",
        "currency": "EUR",
        "unit_price": Decimal("5.00"),
        "package_size": Decimal(100),
        "unit_name": "SMS",
    }
    fields.update(overrides)
    return PriceSpec(**fields)


@pytest.mark.parametrize(
    ("quantity", "packages", "expected"),
    [
        ("0", "0", "0"),
        ("1", "1", "5.00"),
        ("99", "1", "5.00"),
        ("100", "1", "5.00"),
        ("101", "2", "10.00"),
        ("250.5", "3", "15.00"),
        ("1000000000000", "10000000000", "50000000000.00"),
    ],
)
def test_partial_packages_round_up(quantity, packages, expected):
    result = rate(_spec(), Decimal(quantity))
    assert result.amount == Decimal(expected)
    (line,) = result.lines
    assert line.kind == LineKind.PACKAGE
    assert line.quantity == Decimal(packages)


def test_round_down_is_available():
    spec = _spec(package_rounding=PackageRounding.DOWN)
    assert rate(spec, Decimal(199)).amount == Decimal("5.00")


def test_exact_rounding_is_refused_for_package_prices():
    with pytest.raises(InvalidPriceError, match="use a standard price with a package size"):
        _spec(package_rounding=PackageRounding.EXACT)


def test_package_size_is_required():
    with pytest.raises(InvalidPriceError, match="package prices need package_size"):
        _spec(package_size=None)


def test_zero_package_size_is_refused():
    with pytest.raises(InvalidPriceError, match="package_size must be greater than 0"):
        _spec(package_size=Decimal(0))


def test_rebates_are_refused_on_package_prices():
    with pytest.raises(InvalidPriceError, match="only allowed on standard prices"):
        _spec(allow_rebates=True)


def test_negative_quantity_is_refused():
    with pytest.raises(InvalidUsageError, match="SMS bundles"):
        rate(_spec(), Decimal(-1))


def test_description():
    assert rate(_spec(), Decimal(150)).describe() == "150 SMS billed as 2 packages of 100 × €5.00 = €10.00"

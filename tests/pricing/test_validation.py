"""Specs the engine refuses: unknown models, bad tier tables, contradictory settings."""

from decimal import Decimal

import pytest

from catalog.pricing import (
    InvalidPriceError,
    InvalidTierTableError,
    PriceSpec,
    PricingError,
    Tier,
    rate,
    validate_tiers,
)

D = Decimal


def _tiered(tiers, model="graduated") -> PriceSpec:
    return PriceSpec(price_id="price_42", name="Storage", model=model, currency="USD", tiers=tiers)


def test_unknown_model_is_refused_naming_the_price():
    with pytest.raises(
        InvalidPriceError, match=r"Price 'Storage' \(price_42\): Unknown pricing model 'auction'"
    ):
        PriceSpec(price_id="price_42", name="Storage", model="auction", currency="USD", unit_price=D(1))


def test_unknown_currency_is_refused():
    with pytest.raises(InvalidPriceError, match="Unknown currency code 'ZZZ'"):
        PriceSpec(price_id="price_42", name="Storage", model="standard", currency="ZZZ", unit_price=D(1))


def test_rate_refuses_anything_but_a_spec():
    with pytest.raises(PricingError, match="needs a PriceSpec"):
        rate({"model": "standard"}, D(1))


@pytest.mark.parametrize(
    ("tiers", "messages"),
    [
        ((), ["Add at least one tier; the last one must be open-ended"]),
        (
            (Tier(D(100000), D(1)), Tier(D(100000), D(1)), Tier(None, D(1))),
            ["Tier 2 must start above tier 1's upper bound of 100,000"],
        ),
        (
            (Tier(D(100), D(1)), Tier(D(50), D(1)), Tier(None, D(1))),
            ["Tier 2 must start above tier 1's upper bound of 100"],
        ),
        (
            (Tier(None, D(1)), Tier(D(100), D(1))),
            [
                "Only the last tier may be open-ended",
                "The last tier (tier 2) must be open-ended: leave its upper bound empty",
            ],
        ),
        (
            (Tier(D(100), D(1)), Tier(D(200), D(1))),
            ["The last tier (tier 2) must be open-ended: leave its upper bound empty"],
        ),
        ((Tier(D(0), D(1)), Tier(None, D(1))), ["Tier 1's upper bound must be greater than 0"]),
        ((Tier(D(100), D(-1)), Tier(None, D(1))), ["Tier 1's unit price cannot be negative"]),
        ((Tier(D(100), D(1)), Tier(None, D(1), D(-5))), ["Tier 2's flat fee cannot be negative"]),
        ((Tier(D(100), 1.5), Tier(None, D(1))), ["Tier 1's unit price must be a number"]),
        ((Tier(D(100), D(1)), Tier(None, D(1))), []),
    ],
)
def test_validate_tiers_returns_finance_friendly_messages(tiers, messages):
    assert validate_tiers(tiers) == messages


@pytest.mark.parametrize("model", ["graduated", "volume"])
def test_bad_tier_table_is_refused_naming_the_price(model):
    with pytest.raises(InvalidTierTableError) as caught:
        _tiered((Tier(D(100), D(1)), Tier(D(50), D(1)), Tier(None, D(1))), model=model)
    assert (
        str(caught.value) == "Price 'Storage' (price_42): Tier 2 must start above tier 1's upper bound of 100"
    )
    assert caught.value.price_id == "price_42"
    assert caught.value.messages == ("Tier 2 must start above tier 1's upper bound of 100",)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "standard"}, "standard prices need unit_price"),
        ({"model": "standard", "unit_price": D(1), "tiers": (Tier(None, D(1)),)}, "tiers does not apply"),
        (
            {"model": "graduated", "tiers": (Tier(None, D(1)),), "unit_price": D(1)},
            "unit_price does not apply",
        ),
        ({"model": "standard", "unit_price": D(-1)}, "unit_price cannot be negative"),
        ({"model": "standard", "unit_price": 0.5}, "unit_price must be a Decimal, got float"),
        (
            {"model": "standard", "unit_price": D(1), "percentage_rate": D("0.1")},
            "percentage_rate does not apply",
        ),
        (
            {"model": "standard", "unit_price": D(1), "package_rounding": "up"},
            "package_rounding does not apply",
        ),
        ({"model": "standard", "unit_price": D(1), "free_units": D(-1)}, "free_units cannot be negative"),
        ({"model": "standard", "unit_price": D(1), "minimum_amount": D("NaN")}, "finite"),
        (
            {"model": "volume", "tiers": (Tier(None, D(1)),), "allow_rebates": True},
            "only allowed on standard",
        ),
    ],
)
def test_contradictory_specs_are_refused(fields, message):
    with pytest.raises(InvalidPriceError, match=message):
        PriceSpec(price_id="price_42", name="Storage", currency="USD", **fields)


def test_int_fields_are_accepted_as_decimals():
    spec = PriceSpec(price_id="p", name="Ints", model="standard", currency="USD", unit_price=2, free_units=1)
    assert spec.unit_price == D(2)
    assert rate(spec, 3).amount == D(4)


def test_specs_are_immutable_and_hashable():
    spec = _tiered((Tier(D(100), D(1)), Tier(None, D(1))))
    with pytest.raises(AttributeError):
        spec.currency = "EUR"
    assert hash(spec) == hash(_tiered((Tier(D(100), D(1)), Tier(None, D(1)))))

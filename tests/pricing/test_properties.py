"""Property-based tests (hypothesis) of the invariants invoices and real-time debit rely on."""

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.pricing import (
    MINOR_UNITS,
    PriceSpec,
    PricingModel,
    Tier,
    minor_units,
    rate,
    round_fraction,
    round_lines,
    round_money,
)

D = Decimal

quantities = st.decimals(min_value=0, max_value=10**12, places=4, allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=0, max_value=100, places=12, allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(sorted(MINOR_UNITS))
amounts = st.decimals(min_value=-(10**9), max_value=10**9, places=8, allow_nan=False, allow_infinity=False)
half_modes = st.sampled_from([ROUND_HALF_UP, ROUND_HALF_EVEN])


@st.composite
def tier_tables(draw) -> tuple[Tier, ...]:
    bounds = sorted(
        draw(
            st.lists(
                st.decimals(
                    min_value=D("0.01"), max_value=10**10, places=2, allow_nan=False, allow_infinity=False
                ),
                unique=True,
                max_size=5,
            )
        )
    )
    ups: list[Decimal | None] = [*bounds, None]
    return tuple(
        Tier(up_to=up, unit_price=draw(rates), flat_fee=draw(st.sampled_from([D(0), draw(fees)])))
        for up in ups
    )


def _spec(model: PricingModel, tiers: tuple[Tier, ...], **extra) -> PriceSpec:
    return PriceSpec(
        price_id="price_prop", name="Property", model=model, currency="USD", tiers=tiers, **extra
    )


def _reference_graduated(tiers: tuple[Tier, ...], quantity: Decimal) -> Fraction:
    """Straightforward exact re-implementation, independent of the engine's precomputed tables."""
    total = Fraction(0)
    lower = Fraction(0)
    q = Fraction(quantity)
    for tier in tiers:
        upper = None if tier.up_to is None else Fraction(tier.up_to)
        if q <= lower:
            break
        top = q if upper is None else min(q, upper)
        total += (top - lower) * Fraction(tier.unit_price) + Fraction(tier.flat_fee)
        if upper is None:
            break
        lower = upper
    return total


@settings(max_examples=300)
@given(tiers=tier_tables(), a=quantities, b=quantities)
def test_graduated_totals_are_monotone_in_quantity(tiers, a, b):
    spec = _spec(PricingModel.GRADUATED, tiers)
    low, high = sorted((a, b))
    assert rate(spec, low).amount <= rate(spec, high).amount


@settings(max_examples=300)
@given(tiers=tier_tables(), quantity=quantities)
def test_graduated_matches_an_exact_reference(tiers, quantity):
    assert Fraction(rate(_spec(PricingModel.GRADUATED, tiers), quantity).amount) == _reference_graduated(
        tiers, quantity
    )


@given(price=rates, fee=fees, quantity=quantities)
def test_volume_and_graduated_agree_for_a_single_open_tier(price, fee, quantity):
    tiers = (Tier(up_to=None, unit_price=price, flat_fee=fee),)
    graduated = rate(_spec(PricingModel.GRADUATED, tiers), quantity)
    volume = rate(_spec(PricingModel.VOLUME, tiers), quantity)
    assert graduated.amount == volume.amount


@settings(max_examples=300)
@given(
    tiers=tier_tables(),
    quantity=quantities,
    model=st.sampled_from([PricingModel.GRADUATED, PricingModel.VOLUME]),
    free=st.sampled_from([D(0), D(1000), D("0.5")]),
    usage_discount=st.sampled_from([None, D(250)]),
    discount=st.sampled_from([None, D(40), D("12.5")]),
    minimum=st.sampled_from([None, D(100), D("0.01")]),
)
def test_explanation_subtotals_sum_exactly_to_the_unrounded_amount(
    tiers, quantity, model, free, usage_discount, discount, minimum
):
    spec = _spec(
        model,
        tiers,
        free_units=free,
        usage_discount_units=usage_discount,
        discount_percent=discount,
        minimum_amount=minimum,
    )
    result = rate(spec, quantity)
    assert Fraction(result.amount) == sum((Fraction(line.amount) for line in result.lines), Fraction(0))


@given(
    price=st.decimals(min_value=-50, max_value=50, places=12, allow_nan=False, allow_infinity=False),
    quantity=st.decimals(
        min_value=-(10**6), max_value=10**6, places=3, allow_nan=False, allow_infinity=False
    ),
    package=st.sampled_from([None, D(1000), D(3)]),
)
def test_standard_lines_sum_to_the_amount_with_rebates(price, quantity, package):
    spec = PriceSpec(
        price_id="p",
        name="Rebatable",
        model="standard",
        currency="EUR",
        unit_price=price,
        package_size=package,
        allow_rebates=True,
    )
    result = rate(spec, quantity)
    assert Fraction(result.amount) == sum((Fraction(line.amount) for line in result.lines), Fraction(0))


@given(tiers=tier_tables(), before=quantities, delta=quantities)
def test_incremental_cost_is_deterministic_and_non_negative(tiers, before, delta):
    # real-time debit charges rate(after) - rate(before) on unrounded amounts
    spec = _spec(PricingModel.GRADUATED, tiers)
    after = before + delta
    increment = rate(spec, after).amount - rate(spec, before).amount
    assert increment >= 0
    assert increment == rate(spec, after).amount - rate(spec, before).amount


@given(amount=amounts, currency=currencies, rounding=half_modes)
def test_rounding_never_moves_a_line_by_more_than_half_a_minor_unit(amount, currency, rounding):
    rounded = round_money(amount, currency, rounding)
    half = D(1).scaleb(-minor_units(currency)) / 2
    assert abs(rounded - amount) <= half
    assert rounded.as_tuple().exponent == -minor_units(currency)


@given(amount=amounts, currency=currencies, rounding=st.sampled_from([ROUND_UP, ROUND_DOWN]))
def test_directed_rounding_moves_less_than_one_minor_unit(amount, currency, rounding):
    assert abs(round_money(amount, currency, rounding) - amount) < D(1).scaleb(-minor_units(currency))


@given(lines=st.lists(amounts, max_size=20), currency=currencies, rounding=half_modes)
def test_rounded_lines_sum_exactly_to_the_reported_total(lines, currency, rounding):
    outcome = round_lines(lines, currency, rounding)
    assert outcome.total == sum(outcome.lines, D(0))
    assert outcome.lines == tuple(round_money(line, currency, rounding) for line in lines)


@given(
    numerator=st.integers(min_value=-(10**12), max_value=10**12),
    exponent=st.integers(min_value=0, max_value=8),
    currency=currencies,
    rounding=st.sampled_from([ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_UP, ROUND_DOWN]),
)
def test_round_fraction_agrees_with_decimal_rounding_on_terminating_values(
    numerator, exponent, currency, rounding
):
    value = D(numerator).scaleb(-exponent)
    assert round_fraction(Fraction(value), currency, rounding) == round_money(value, currency, rounding)

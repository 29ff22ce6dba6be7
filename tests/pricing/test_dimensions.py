"""Dimensional prices: rates per combination of event property values (catalog/pricing/dimensions.py)."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.pricing import (
    Combination,
    DimensionalSpec,
    InvalidPriceError,
    InvalidUsageError,
    PriceSpec,
    PricingModel,
    Tier,
    dimensional_amounts,
    parse_dimensional,
    rate,
    rate_dimensional,
    round_money,
)
from catalog.pricing.dimensions import MAX_COMBINATIONS, MAX_DIMENSIONS

D = Decimal


def _spec(model="standard", **fields) -> PriceSpec:
    return PriceSpec(price_id="price_dim", name="Tokens", model=model, currency="USD", unit_name="tokens", **fields)


SMALL = _spec(unit_price=D("0.000001"), free_units=D(1000))
LARGE = _spec(
    "graduated",
    tiers=(Tier(up_to=D(1_000_000), unit_price=D("0.000004")), Tier(up_to=None, unit_price=D("0.000003"))),
)
DEFAULT = _spec(unit_price=D("0.000002"))


def _dimensional(tier_scope="combination", default=DEFAULT, combinations=None) -> DimensionalSpec:
    return DimensionalSpec(
        price_id="price_dim",
        name="Tokens",
        currency="USD",
        unit_name="tokens",
        dimensions=("model",),
        combinations=combinations or (Combination(("nle-small",), SMALL), Combination(("nle-large",), LARGE)),
        default=default,
        tier_scope=tier_scope,
    )


def test_each_combination_is_priced_by_its_own_model_and_the_lines_add_up():
    # given 3,000 small tokens (1,000 free), 1,500,000 large tokens (graduated) and 500 of an unknown model
    spec = _dimensional()
    usage = {("nle-small",): D(3000), ("nle-large",): D(1_500_000), ("nle-xl",): D(500)}
    # when
    result = rate_dimensional(spec, usage)
    # then 2,000 × 0.000001 = 0.002; 1,000,000 × 0.000004 + 500,000 × 0.000003 = 5.5; 500 × 0.000002 = 0.001
    assert [c.label for c in result.combinations] == ["model=nle-small", "model=nle-large", "other values"]
    assert [c.amount for c in result.combinations] == [D("0.002"), D("5.5"), D("0.001")]
    assert result.amount == D("5.503")
    assert result.quantity == D(1_503_500)
    assert result.combinations[2].unmatched == (("nle-xl",),)
    assert result.combinations[0].describe() == "first 1,000 tokens free; 2,000 tokens × $0.000001 = $0.002"
    lines, total = result.rounded_amounts()
    assert lines == (D("0.00"), D("5.50"), D("0.00")) and total == D("5.50")


def test_unmatched_values_are_pooled_into_one_default_combination():
    spec = _dimensional(combinations=(Combination(("nle-small",), SMALL),))
    result = rate_dimensional(spec, {("a",): D(10), ("b",): D(5), (None,): D(1)})
    (other,) = result.combinations
    assert other.result.quantity == D(16) and other.amount == D("0.000032")
    assert other.unmatched == ((None,), ("a",), ("b",))


def test_a_refusing_price_shows_unmatched_usage_unpriced():
    spec = _dimensional(default=None)
    result = rate_dimensional(spec, {("nle-small",): D(2000), ("nle-xl",): D(500)})
    assert result.amount == D("0.001")
    other = result.combinations[-1]
    assert other.priced is False and other.amount == 0 and other.result.quantity == D(500)
    assert other.describe() == "500 tokens with values this price refuses: not billed"
    assert spec.matches(("nle-small",)) and not spec.matches(("nle-xl",))


def test_combinations_without_usage_are_left_out():
    result = rate_dimensional(_dimensional(), {("nle-large",): D(0)})
    assert result.combinations == () and result.amount == 0
    assert result.describe() == "0 tokens = $0.00"


def test_metric_scope_fills_the_tiers_in_the_listed_order_each_at_its_own_rates():
    # given tiers 0–100 then open, small at 1.00/0.50, large at 4.00/3.00, tiers across the metric
    small = _spec("graduated", tiers=(Tier(D(100), D(1)), Tier(None, D("0.5"))))
    large = _spec("graduated", tiers=(Tier(D(100), D(4)), Tier(None, D(3))), free_units=D(0))
    spec = _dimensional("metric", combinations=(Combination(("nle-small",), small), Combination(("nle-large",), large)))
    # when 60 small then 70 large: small fills 0–60; large fills 60–100 at 4 and 100–130 at 3
    result = rate_dimensional(spec, {("nle-large",): D(70), ("nle-small",): D(60)})
    # then
    assert [c.amount for c in result.combinations] == [D(60), D(250)]
    assert result.combinations[1].position == D(60)
    assert result.combinations[1].describe() == "60–100 tokens × $4.00 = $160.00; 100–130 tokens × $3.00 = $90.00"


def test_metric_scope_volume_prices_every_unit_at_the_tier_the_total_reaches():
    small = _spec("volume", tiers=(Tier(D(100), D(2), flat_fee=D(5)), Tier(None, D(1), flat_fee=D(7))))
    large = _spec("volume", tiers=(Tier(D(100), D(4)), Tier(None, D(3), flat_fee=D(9))))
    spec = _dimensional("metric", combinations=(Combination(("nle-small",), small), Combination(("nle-large",), large)))
    # 60 + 70 = 130 reaches tier 2 of both: 60 × 1 + 70 × 3, flat fee of the last combination's tier 2 (9)
    result = rate_dimensional(spec, {("nle-small",): D(60), ("nle-large",): D(70)})
    assert [c.amount for c in result.combinations] == [D(60), D(219)]


def test_metric_scope_free_units_are_the_first_units_of_the_metric():
    spec = _dimensional("metric", default=_spec(unit_price=D(1), free_units=D(100)))
    result = rate_dimensional(spec, {("x",): D(150)})
    assert result.amount == D(50)
    packages = _spec("package", unit_price=D(5), package_size=D(100))
    spec = _dimensional("metric", combinations=(Combination(("a",), packages), Combination(("b",), packages)))
    # 150 then 100: a bills packages 0→2, b packages 2→3 (250 units = 3 packages)
    result = rate_dimensional(spec, {("a",): D(150), ("b",): D(100)})
    assert [c.amount for c in result.combinations] == [D(10), D(5)]


def test_bounds_and_shapes_are_refused_with_the_price_named():
    with pytest.raises(InvalidPriceError, match="at most 3 dimensions"):
        DimensionalSpec("p", "P", "USD", "u", tuple("abcd"), ())
    assert MAX_DIMENSIONS == 3
    with pytest.raises(InvalidPriceError, match="at most 100 combinations"):
        DimensionalSpec(
            "p", "P", "USD", "u", ("m",), tuple(Combination((str(n),), DEFAULT) for n in range(MAX_COMBINATIONS + 1))
        )
    with pytest.raises(InvalidPriceError, match="repeats model=a"):
        _dimensional(combinations=(Combination(("a",), DEFAULT), Combination(("a",), DEFAULT)))
    with pytest.raises(InvalidPriceError, match="not percentage"):
        _dimensional(default=_spec("percentage", percentage_rate=D("0.01")))
    with pytest.raises(InvalidPriceError, match="property key"):
        DimensionalSpec("p", "P", "USD", "u", ("$.model",), ())
    with pytest.raises(InvalidUsageError, match="tuple of 1 values"):
        rate_dimensional(_dimensional(), {("a", "b"): D(1)})
    with pytest.raises(InvalidUsageError, match="non-negative"):
        rate_dimensional(_dimensional(), {("a",): D(-1)})


def test_the_json_form_parses_to_the_same_rating():
    data = {
        "dimensions": ["model"],
        "tierScope": "combination",
        "unmatched": "default",
        "rates": [
            {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001", "freeUnits": "1000"},
            {
                "values": {"model": "nle-large"},
                "model": "graduated",
                "tiers": [{"upTo": "1000000", "unitPrice": "0.000004"}, {"upTo": None, "unitPrice": "0.000003"}],
            },
        ],
    }
    spec = parse_dimensional(data, price_id="price_dim", name="Tokens", currency="USD", default=DEFAULT)
    usage = {("nle-small",): D(3000), ("nle-large",): D(1_500_000)}
    assert rate_dimensional(spec, usage).amount == rate_dimensional(_dimensional(), usage).amount


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dimensions": "model", "rates": []}, "dimensions must be a list"),
        ({"dimensions": ["model"], "rates": [], "unmatched": "skip"}, "unmatched must be"),
        ({"dimensions": ["model"], "rates": [{"values": {"region": "eu"}}]}, "exactly the dimensions model"),
        ({"dimensions": ["model"], "rates": [{"values": {"model": "a"}, "model": "dynamic"}]}, "model must be"),
        ({"dimensions": ["model"], "rates": [{"values": {"model": "a"}, "model": "standard"}]}, "needs unitPrice"),
        (
            {"dimensions": ["model"], "rates": [{"values": {"model": "a"}, "model": "standard", "unitPrice": "x"}]},
            "decimal string",
        ),
        (
            {
                "dimensions": ["model"],
                "rates": [{"values": {"model": "a"}, "model": "graduated", "tiers": [{"upTo": "5", "unitPrice": "1"}]}],
            },
            "must be open-ended",
        ),
        ({"dimensions": ["model"], "rates": [], "colour": 1}, "Unknown dimensional setting"),
    ],
)
def test_the_json_form_names_what_is_wrong(data, message):
    with pytest.raises(InvalidPriceError, match=message):
        parse_dimensional(data, price_id="p", name="P", currency="USD", default=DEFAULT)


# -- properties ------------------------------------------------------------------------------------

quantities = st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False)
rates = st.decimals(min_value=0, max_value=10, places=8, allow_nan=False, allow_infinity=False)


@st.composite
def tiered(draw, model=None) -> PriceSpec:
    model = model or draw(st.sampled_from(["standard", "graduated", "volume", "package"]))
    free = draw(st.sampled_from([D(0), D(100)]))
    if model == "standard":
        return _spec(unit_price=draw(rates), free_units=free)
    if model == "package":
        return _spec("package", unit_price=draw(rates), package_size=D(draw(st.integers(1, 1000))), free_units=free)
    bounds = sorted(draw(st.lists(st.integers(1, 10**6), unique=True, max_size=3)))
    tiers = tuple(Tier(D(b), draw(rates), draw(st.sampled_from([D(0), D(5)]))) for b in bounds) + (
        Tier(None, draw(rates)),
    )
    return _spec(model, tiers=tiers, free_units=free)


@st.composite
def dimensional_cases(draw):
    scope = draw(st.sampled_from(["combination", "metric"]))
    count = draw(st.integers(0, 5))
    combos = []
    for n in range(count):
        spec = draw(tiered())
        if scope == "metric" and spec.model is PricingModel.VOLUME and spec.free_units:
            spec = _spec("volume", tiers=spec.tiers)
        combos.append(Combination((f"m{n}",), spec))
    default = draw(st.one_of(st.none(), tiered("standard")))
    spec = _dimensional(scope, default=default, combinations=tuple(combos))
    names = [f"m{n}" for n in range(count + 2)]
    usage = draw(st.dictionaries(st.sampled_from(names).map(lambda name: (name,)), quantities, max_size=6))
    return spec, usage


@settings(max_examples=200, deadline=None)
@given(dimensional_cases())
def test_per_combination_lines_sum_exactly_to_the_total(case):
    spec, usage = case
    result = rate_dimensional(spec, usage)
    total = D(0)
    for combination in result.combinations:
        lines = sum((line.amount for line in combination.result.lines), D(0))
        assert lines == combination.amount  # each combination's explanation adds up
        total += combination.amount
    assert total == result.amount
    rounded, rounded_total = result.rounded_amounts()
    assert sum(rounded, D(0)) == rounded_total
    assert all(line == round_money(c.amount, "USD") for line, c in zip(rounded, result.combinations, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_metric_scope_with_identical_rates_equals_the_plain_price(data):
    model = data.draw(st.sampled_from(["standard", "graduated", "volume", "package"]))
    shared = data.draw(tiered(model))
    if model == "volume":
        shared = _spec("volume", tiers=shared.tiers)
    count = data.draw(st.integers(1, 4))
    combos = tuple(Combination((f"m{n}",), shared) for n in range(count))
    spec = _dimensional("metric", default=shared, combinations=combos)
    usage = data.draw(
        st.dictionaries(
            st.sampled_from([f"m{n}" for n in range(count + 2)]).map(lambda n: (n,)), quantities, max_size=6
        )
    )
    total = sum(usage.values(), D(0))
    assert rate_dimensional(spec, usage).amount == rate(shared, total).amount


@settings(max_examples=100, deadline=None)
@given(dimensional_cases(), st.data())
def test_debits_of_growing_usage_telescope_to_the_final_rating(case, data):
    """Real-time debits charge after − before per request; their sum is the period's rating."""
    spec, usage = case
    seen: dict = {}
    debited = D(0)
    previous = rate_dimensional(spec, seen).amount
    for values, quantity in usage.items():
        split = data.draw(st.decimals(min_value=0, max_value=1, places=2)) * quantity
        for step in (split, quantity - split):
            seen[values] = seen.get(values, D(0)) + step
            current = rate_dimensional(spec, seen).amount
            debited += current - previous
            previous = current
    assert debited == rate_dimensional(spec, usage).amount


@settings(max_examples=300, deadline=None)
@given(dimensional_cases(), st.data())
def test_the_amounts_before_and_after_a_change_are_the_two_ratings(case, data):
    """What a real-time debit prices (``dimensional_amounts``, each unchanged combination priced once) is
    exactly the two ends as the invoice rates them, whatever the change: combinations added, grown,
    untouched, unmatched values pooled."""
    spec, before = case
    names = [f"m{n}" for n in range(len(spec.combinations) + 2)]
    added = data.draw(st.dictionaries(st.sampled_from(names).map(lambda name: (name,)), quantities, max_size=3))
    after = dict(before)
    for values, quantity in added.items():
        after[values] = after.get(values, D(0)) + quantity

    assert dimensional_amounts(spec, before, after) == (
        rate_dimensional(spec, before).amount,
        rate_dimensional(spec, after).amount,
    )

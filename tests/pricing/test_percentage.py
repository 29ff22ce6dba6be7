"""Percentage model: rate x money amounts + fixed fee per event, per-event and per-period clamps."""

from decimal import Decimal

import pytest

from catalog.pricing import InvalidPriceError, InvalidUsageError, LineKind, PriceSpec, Usage, rate

D = Decimal


def _spec(**overrides) -> PriceSpec:
    fields = {
        "price_id": "price_card",
        "name": "Card processing",
        "model": "percentage",
        "currency": "USD",
        "percentage_rate": D("0.029"),
    }
    fields.update(overrides)
    return PriceSpec(**fields)


def test_rate_times_amounts():
    result = rate(_spec(), Usage(amounts=[D("100.00"), D("250.00")]))
    assert result.amount == D("10.15000")
    assert result.quantity == D("350.00")
    assert result.describe() == "2.9% of $350.00 = $10.15"


def test_fixed_fee_per_event():
    result = rate(_spec(fixed_fee=D("0.30")), Usage(amounts=[D("100.00"), D("250.00")]))
    assert result.amount == D("10.75000")
    assert [line.kind for line in result.lines] == [LineKind.PERCENTAGE, LineKind.FIXED_FEE]
    assert result.lines[1].description == "2 events × $0.30 fixed fee = $0.60"


@pytest.mark.parametrize(
    ("amounts", "expected", "kinds"),
    [
        # 1.00 x 2.9% + 0.30 = 0.329 -> raised to 0.50 (+0.171)
        (["1.00"], "0.500", [LineKind.PERCENTAGE, LineKind.FIXED_FEE, LineKind.EVENT_MINIMUM]),
        # 10,000 x 2.9% + 0.30 = 290.30 -> capped at 50 (-240.30)
        (["10000.00"], "50.00", [LineKind.PERCENTAGE, LineKind.FIXED_FEE, LineKind.EVENT_MAXIMUM]),
        # 100 x 2.9% + 0.30 = 3.20 -> inside the clamps
        (["100.00"], "3.20000", [LineKind.PERCENTAGE, LineKind.FIXED_FEE]),
        # one of each: 0.50 + 50 + 3.20
        (
            ["1.00", "10000.00", "100.00"],
            "53.70000",
            [LineKind.PERCENTAGE, LineKind.FIXED_FEE, LineKind.EVENT_MINIMUM, LineKind.EVENT_MAXIMUM],
        ),
        # exactly at the minimum: 6.896551... is not used; 7.00 x 2.9% + 0.30 = 0.503 > 0.50
        (["7.00"], "0.50300", [LineKind.PERCENTAGE, LineKind.FIXED_FEE]),
    ],
)
def test_per_event_clamps(amounts, expected, kinds):
    spec = _spec(fixed_fee=D("0.30"), event_min_charge=D("0.50"), event_max_charge=D("50.00"))
    result = rate(spec, Usage(amounts=[D(a) for a in amounts]))
    assert result.amount == D(expected)
    assert [line.kind for line in result.lines] == kinds
    assert sum((line.amount for line in result.lines), D(0)) == result.amount


def test_per_event_clamp_descriptions():
    spec = _spec(fixed_fee=D("0.30"), event_min_charge=D("0.50"), event_max_charge=D("50.00"))
    result = rate(spec, Usage(amounts=[D("1.00"), D("2.00"), D("10000.00")]))
    assert result.lines[2].description == "2 events adjusted to the per-event minimum of $0.50 = $0.313"
    assert result.lines[3].description == "1 event adjusted to the per-event maximum of $50.00 = -$240.30"


@pytest.mark.parametrize(
    ("amounts", "expected", "last_kind"),
    [
        ([], "5.00", LineKind.PERIOD_MINIMUM),
        (["100.00"], "5.00", LineKind.PERIOD_MINIMUM),
        (["10000.00"], "100.00", LineKind.PERIOD_MAXIMUM),
        (["1000.00"], "29.00000", LineKind.PERCENTAGE),
    ],
)
def test_per_period_clamps(amounts, expected, last_kind):
    spec = _spec(period_min_charge=D("5.00"), period_max_charge=D("100.00"))
    result = rate(spec, Usage(amounts=[D(a) for a in amounts]))
    assert result.amount == D(expected)
    assert result.lines[-1].kind == last_kind


def test_aggregated_input_matches_per_event_input():
    spec = _spec(fixed_fee=D("0.30"), period_max_charge=D("1000"))
    amounts = [D("12.34"), D("99.99"), D("0.01")]
    per_event = rate(spec, Usage(amounts=amounts))
    aggregated = rate(spec, Usage(quantity=sum(amounts, D(0)), event_count=3))
    assert per_event.amount == aggregated.amount == D("4.15786")  # 112.34 x 0.029 = 3.25786, + 3 x 0.30


def test_aggregated_total_without_fee_needs_no_count():
    assert rate(_spec(), D("1000")).amount == D("29.000")


def test_aggregated_input_is_refused_with_per_event_clamps():
    spec = _spec(event_min_charge=D("0.50"))
    with pytest.raises(InvalidUsageError, match="need the per-event amounts"):
        rate(spec, Usage(quantity=D(100), event_count=2))


def test_fixed_fee_needs_an_event_count_in_aggregate():
    with pytest.raises(InvalidUsageError, match="event_count"):
        rate(_spec(fixed_fee=D("0.30")), Usage(quantity=D(100)))


def test_negative_event_amount_is_refused():
    with pytest.raises(InvalidUsageError, match="Event amount cannot be negative"):
        rate(_spec(), Usage(amounts=[D(10), D(-1)]))


@pytest.mark.parametrize("rate_", ["-0.01", "10.01"])
def test_rate_outside_zero_to_ten_is_refused(rate_):
    with pytest.raises(InvalidPriceError, match="Card processing"):
        _spec(percentage_rate=D(rate_))


def test_min_above_max_is_refused():
    with pytest.raises(InvalidPriceError, match="event_min_charge"):
        _spec(event_min_charge=D(5), event_max_charge=D(1))


def test_free_units_are_refused_on_a_money_quantity():
    with pytest.raises(InvalidPriceError, match="money-valued"):
        _spec(free_units=D(100))

"""Dynamic model: a rate schedule by event time, or a price carried by each event; unit price clamps."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.pricing import (
    DynamicMode,
    InvalidPriceError,
    InvalidUsageError,
    LineKind,
    PriceSpec,
    RateChange,
    Usage,
    rate,
)

D = Decimal
JAN = datetime(2026, 1, 1, tzinfo=UTC)
JAN_15 = datetime(2026, 1, 15, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
SCHEDULE = (RateChange(JAN, D("0.10")), RateChange(JAN_15, D("0.12")))


def _schedule_spec(**overrides) -> PriceSpec:
    fields = {
        "price_id": "price_gpu",
        "name": "GPU minutes",
        "model": "dynamic",
        "currency": "USD",
        "dynamic_mode": DynamicMode.SCHEDULE,
        "rate_schedule": SCHEDULE,
        "unit_name": "minutes",
    }
    fields.update(overrides)
    return PriceSpec(**fields)


def _event_price_spec(**overrides) -> PriceSpec:
    fields = {
        "price_id": "price_spot",
        "name": "Spot energy",
        "model": "dynamic",
        "currency": "EUR",
        "dynamic_mode": DynamicMode.EVENT_PRICE,
        "unit_name": "kWh",
    }
    fields.update(overrides)
    return PriceSpec(**fields)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (JAN, "1.00"),  # exactly at a change: the new rate is in force
        (datetime(2026, 1, 14, 23, 59, 59, tzinfo=UTC), "1.00"),
        (JAN_15, "1.20"),
        (FEB, "1.20"),
    ],
)
def test_rate_in_force_at_the_event_time(moment, expected):
    result = rate(_schedule_spec(), Usage(events=[(moment, D(10))]))
    assert result.amount == D(expected)


def test_events_are_grouped_per_schedule_entry():
    events = [(JAN_15, D(5)), (JAN, D(10)), (datetime(2026, 1, 2, tzinfo=UTC), D(20))]
    result = rate(_schedule_spec(), Usage(events=events))
    assert result.amount == D("3.60")
    assert [(line.quantity, line.unit_price) for line in result.lines] == [
        (D(30), D("0.10")),
        (D(5), D("0.12")),
    ]
    assert result.lines[0].description == ("30 minutes × $0.10 (rate from 2026-01-01T00:00:00+00:00) = $3.00")


def test_event_before_the_first_rate_is_refused():
    with pytest.raises(InvalidUsageError, match="precedes the first rate"):
        rate(_schedule_spec(), Usage(events=[(datetime(2025, 12, 31, tzinfo=UTC), D(1))]))


def test_naive_event_against_aware_schedule_is_refused():
    with pytest.raises(InvalidUsageError, match="aware and naive"):
        rate(_schedule_spec(), Usage(events=[(datetime(2026, 1, 2), D(1))]))


def test_pre_bucketed_segments_in_schedule_mode():
    result = rate(_schedule_spec(), Usage(segments=[(D(30), D("0.10")), (D(5), D("0.12"))]))
    assert result.amount == D("3.60")


def test_segment_price_missing_from_the_schedule_is_refused():
    with pytest.raises(InvalidUsageError, match="not in the rate schedule"):
        rate(_schedule_spec(), Usage(segments=[(D(30), D("0.11"))]))


def test_event_price_mode():
    usage = Usage(segments=[(D(10), D("0.20")), (D(5), D("0.30")), (D(2), D("0.20"))])
    result = rate(_event_price_spec(), usage)
    assert result.amount == D("3.90")
    assert [line.quantity for line in result.lines] == [D(12), D(5)]


@pytest.mark.parametrize(
    ("price", "charged", "note"),
    [
        ("0.01", "0.05", "raised to the minimum unit price €0.05 from €0.01"),
        ("0.05", "0.05", None),
        ("0.30", "0.30", None),
        ("0.40", "0.30", "capped at the maximum unit price €0.30 from €0.40"),
    ],
)
def test_unit_prices_are_clamped_and_the_explanation_says_so(price, charged, note):
    spec = _event_price_spec(min_unit_price=D("0.05"), max_unit_price=D("0.30"))
    result = rate(spec, Usage(segments=[(D(10), D(price))]))
    (line,) = result.lines
    assert line.kind == LineKind.DYNAMIC
    assert line.unit_price == D(charged)
    assert line.note == note
    assert result.amount == D(10) * D(charged)


def test_schedule_rates_are_clamped_too():
    result = rate(_schedule_spec(max_unit_price=D("0.11")), Usage(events=[(FEB, D(10))]))
    assert result.amount == D("1.10")
    assert "capped at the maximum unit price $0.11 from $0.12" in result.describe()


def test_free_allowance_consumes_the_earliest_usage():
    events = [(JAN_15, D(10)), (JAN, D(10))]
    result = rate(_schedule_spec(free_units=D(15)), Usage(events=events))
    # the 10 January-1 minutes and 5 of the January-15 minutes are free
    assert result.amount == D("0.60")
    assert [line.kind for line in result.lines] == [LineKind.FREE_ALLOWANCE, LineKind.DYNAMIC]


def test_timestamped_events_need_schedule_mode():
    with pytest.raises(InvalidUsageError, match="schedule-mode"):
        rate(_event_price_spec(), Usage(events=[(JAN, D(1))]))


def test_quantity_usage_is_refused():
    with pytest.raises(InvalidUsageError, match="dynamic prices take"):
        rate(_event_price_spec(), D(10))


def test_negative_event_quantity_is_refused():
    with pytest.raises(InvalidUsageError, match="cannot be negative"):
        rate(_event_price_spec(), Usage(segments=[(D(-1), D("0.2"))]))


def test_schedule_must_ascend():
    with pytest.raises(InvalidPriceError, match="entry 2 must take effect after entry 1"):
        _schedule_spec(rate_schedule=(RateChange(JAN_15, D(1)), RateChange(JAN, D(2))))


def test_schedule_mode_needs_a_schedule():
    with pytest.raises(InvalidPriceError, match="need a rate_schedule"):
        _schedule_spec(rate_schedule=())


def test_unknown_mode_is_refused():
    with pytest.raises(InvalidPriceError, match="dynamic_mode"):
        _schedule_spec(dynamic_mode="auction")

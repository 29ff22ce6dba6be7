"""Day-based proration of fixed fees, with obligation fees never prorated."""

from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from catalog.pricing import PricingError, prorate

D = Decimal
JAN_1, FEB_1 = date(2026, 1, 1), date(2026, 2, 1)


@pytest.mark.parametrize(
    ("active_from", "active_until", "days", "fraction", "rounded"),
    [
        (None, None, 31, Fraction(1), "31.00"),
        (date(2026, 1, 11), None, 21, Fraction(21, 31), "21.00"),
        (None, date(2026, 1, 11), 10, Fraction(10, 31), "10.00"),
        (date(2026, 1, 10), date(2026, 1, 11), 1, Fraction(1, 31), "1.00"),
        (date(2025, 12, 1), date(2026, 1, 16), 15, Fraction(15, 31), "15.00"),  # clipped to the period
        (date(2026, 3, 1), date(2026, 4, 1), 0, Fraction(0), "0.00"),
    ],
)
def test_fraction_is_covered_days_over_period_days(active_from, active_until, days, fraction, rounded):
    result = prorate(
        D("31.00"), period_start=JAN_1, period_end=FEB_1, active_from=active_from, active_until=active_until
    )
    assert result.covered_days == days
    assert result.period_days == 31
    assert result.fraction == fraction
    assert result.rounded_amount("USD") == D(rounded)


def test_non_terminating_fraction_rounds_once_from_the_exact_value():
    # 10/31 of 100.00 = 32.258064516...
    result = prorate(D("100.00"), period_start=JAN_1, period_end=FEB_1, active_until=date(2026, 1, 11))
    assert result.fraction == Fraction(10, 31)
    assert result.rounded_amount("USD") == D("32.26")
    assert abs(Fraction(result.amount) - Fraction(1000, 31)) < Fraction(1, 10**45)


def test_a_plan_change_splits_the_period_without_losing_a_day():
    old = prorate(D("30.00"), period_start=JAN_1, period_end=FEB_1, active_until=date(2026, 1, 10))
    new = prorate(D("30.00"), period_start=JAN_1, period_end=FEB_1, active_from=date(2026, 1, 10))
    assert old.fraction + new.fraction == 1


def test_leap_february():
    result = prorate(
        D("29.00"), period_start=date(2028, 2, 1), period_end=date(2028, 3, 1), active_from=date(2028, 2, 29)
    )
    assert result.fraction == Fraction(1, 29)
    assert result.rounded_amount("USD") == D("1.00")


@pytest.mark.parametrize(
    ("active_from", "expected"), [(date(2026, 1, 31), Fraction(1)), (FEB_1, Fraction(0))]
)
def test_obligation_fees_are_never_prorated(active_from, expected):
    result = prorate(
        D("500.00"), period_start=JAN_1, period_end=FEB_1, active_from=active_from, obligation=True
    )
    assert result.fraction == expected


def test_rounds_to_the_currency():
    result = prorate(D("1000"), period_start=JAN_1, period_end=FEB_1, active_from=date(2026, 1, 17))
    assert result.rounded_amount("JPY") == D("484")  # 15/31 x 1000 = 483.87
    assert result.rounded_amount("KWD") == D("483.871")


def test_datetimes_are_refused():
    with pytest.raises(PricingError, match="must be a date"):
        prorate(D(1), period_start=datetime(2026, 1, 1), period_end=FEB_1)


def test_empty_period_is_refused():
    with pytest.raises(PricingError, match="must end after it starts"):
        prorate(D(1), period_start=FEB_1, period_end=JAN_1)


def test_reversed_activity_is_refused():
    with pytest.raises(PricingError, match="cannot stop"):
        prorate(
            D(1),
            period_start=JAN_1,
            period_end=FEB_1,
            active_from=date(2026, 1, 20),
            active_until=date(2026, 1, 10),
        )

"""Billing periods: cadence from the original anchor, month-end clamping, leap years, time zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from catalog.periods import boundary, period_at, period_by_index

NEW_YORK = ZoneInfo("America/New_York")


def test_month_end_anchor_clamps_each_month_from_the_original_anchor():
    # given an anchor on January 31st (a leap year)
    anchor = datetime(2024, 1, 31, tzinfo=UTC)
    # when
    starts = [boundary(anchor=anchor, cadence="P1M", index=k, time_zone="UTC") for k in range(5)]
    # then February clamps to the 29th, March goes back to the 31st (not the 29th)
    assert starts == [
        datetime(2024, 1, 31, tzinfo=UTC),
        datetime(2024, 2, 29, tzinfo=UTC),
        datetime(2024, 3, 31, tzinfo=UTC),
        datetime(2024, 4, 30, tzinfo=UTC),
        datetime(2024, 5, 31, tzinfo=UTC),
    ]


def test_february_in_a_common_year_ends_on_the_28th():
    anchor = datetime(2025, 1, 31, tzinfo=UTC)
    period = period_by_index(anchor=anchor, cadence="P1M", index=1, time_zone="UTC")
    assert (period.start, period.end) == (datetime(2025, 2, 28, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC))


def test_yearly_anchor_on_leap_day():
    anchor = datetime(2024, 2, 29, tzinfo=UTC)
    starts = [boundary(anchor=anchor, cadence="P1Y", index=k, time_zone="UTC") for k in range(5)]
    assert starts[1] == datetime(2025, 2, 28, tzinfo=UTC)
    assert starts[4] == datetime(2028, 2, 29, tzinfo=UTC)


def test_quarterly_periods_from_a_mid_month_anchor():
    anchor = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    period = period_at(anchor=anchor, cadence="P3M", moment=datetime(2026, 5, 1, tzinfo=UTC), time_zone="UTC")
    assert (period.index, period.start, period.end) == (
        1,
        datetime(2026, 4, 15, 12, 0, tzinfo=UTC),
        datetime(2026, 7, 15, 12, 0, tzinfo=UTC),
    )


def test_periods_are_half_open():
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    at_boundary = period_at(anchor=anchor, cadence="P1M", moment=datetime(2026, 2, 1, tzinfo=UTC), time_zone="UTC")
    just_before = period_at(
        anchor=anchor, cadence="P1M", moment=datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), time_zone="UTC"
    )
    assert at_boundary.start == datetime(2026, 2, 1, tzinfo=UTC)
    assert just_before.end == datetime(2026, 2, 1, tzinfo=UTC)


def test_local_midnight_boundaries_are_stored_in_utc():
    # given a New York customer anchored at local midnight on January 1st
    anchor = datetime(2026, 1, 1, tzinfo=NEW_YORK)
    # when an event happens at 23:30 local on January 31st (04:30 UTC on February 1st)
    event = datetime(2026, 1, 31, 23, 30, tzinfo=NEW_YORK)
    period = period_at(anchor=anchor, cadence="P1M", moment=event, time_zone="America/New_York")
    # then it lands in January, whose end is local midnight February 1st = 05:00 UTC
    assert period.start == datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 2, 1, 5, 0, tzinfo=UTC)
    assert event.astimezone(UTC) == datetime(2026, 2, 1, 4, 30, tzinfo=UTC)
    assert period.contains(event)


def test_local_midnight_keeps_across_daylight_saving_time():
    anchor = datetime(2026, 1, 1, tzinfo=NEW_YORK)
    march = period_by_index(anchor=anchor, cadence="P1M", index=2, time_zone="America/New_York")
    # EST (UTC-5) before March 8, EDT (UTC-4) from then: local midnights stay local midnights
    assert march.start == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert march.end == datetime(2026, 4, 1, 4, 0, tzinfo=UTC)


def test_anchor_after_the_moment_gives_negative_indexes():
    anchor = datetime(2026, 6, 10, tzinfo=UTC)
    period = period_at(anchor=anchor, cadence="P1M", moment=datetime(2026, 4, 20, tzinfo=UTC), time_zone="UTC")
    assert (period.index, period.start, period.end) == (
        -2,
        datetime(2026, 4, 10, tzinfo=UTC),
        datetime(2026, 5, 10, tzinfo=UTC),
    )


def test_unknown_cadence_and_naive_times_are_refused():
    with pytest.raises(ValueError, match="Unknown billing cadence"):
        boundary(anchor=datetime(2026, 1, 1, tzinfo=UTC), cadence="P2W", index=1, time_zone="UTC")
    with pytest.raises(ValueError, match="aware"):
        period_at(anchor=datetime(2026, 1, 1, tzinfo=UTC), cadence="P1M", moment=datetime(2026, 1, 2), time_zone="UTC")

"""ISO 8601 durations (``P1Y2M3DT4H5M6S``, ``P7D``, ``PT2H``, ``P2W``): advancing test clocks,
entitlement usage periods. Plain Python, so every app can use it.

Years and months are calendar units: they move the date by whole months with the day clamped to the
month's length (Jan 31 + P1M = Feb 28/29), in UTC; days, hours, minutes and seconds are exact.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

_PATTERN = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)


@dataclass(frozen=True)
class Duration:
    months: int
    exact: timedelta

    def is_zero(self) -> bool:
        return self.months == 0 and self.exact == timedelta(0)


def parse_duration(text: str) -> Duration:
    """Parse a positive ISO 8601 duration; ValueError on anything else."""
    match = _PATTERN.match(text.strip().upper()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P1M, P7D, PT2H or P1Y2M3DT4H5M6S.")
    parts = {name: value for name, value in match.groupdict().items() if value is not None}
    seconds = Decimal(parts.get("seconds", "0").replace(",", "."))
    duration = Duration(
        months=int(parts.get("years", 0)) * 12 + int(parts.get("months", 0)),
        exact=timedelta(
            weeks=int(parts.get("weeks", 0)),
            days=int(parts.get("days", 0)),
            hours=int(parts.get("hours", 0)),
            minutes=int(parts.get("minutes", 0)),
            seconds=int(seconds),
            microseconds=int((seconds - int(seconds)) * 1_000_000),
        ),
    )
    if duration.is_zero():
        raise ValueError("The duration must be longer than zero.")
    return duration


def add_duration(moment: datetime, duration: Duration, times: int = 1) -> datetime:
    """``moment`` + ``times`` × ``duration``: calendar months first (day clamped), then the exact part.

    Computed from ``moment`` in one step, so a series anchored on the 31st never drifts to the 28th.
    """
    if duration.months:
        month_number = moment.year * 12 + (moment.month - 1) + duration.months * times
        year, month = divmod(month_number, 12)
        month += 1
        moment = moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))
    return moment + duration.exact * times

"""Billing periods: pure functions, no ORM.

Period k of a subscription is ``[anchor + k×cadence, anchor + (k+1)×cadence)`` where the anchor and the
arithmetic are in the customer's time zone, and every boundary is computed from the ORIGINAL anchor
with the day clamped to the month's length (anchor Jan 31 → Feb 28/29 → Mar 31, never Mar 28).
Boundaries are returned as aware UTC datetimes. ``k`` may be negative (an anchor after the start).
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

CADENCE_MONTHS = {"P1M": 1, "P3M": 3, "P1Y": 12}


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period, half-open ``[start, end)`` in aware UTC; ``index`` counts from the anchor."""

    index: int
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def cadence_months(cadence: str) -> int:
    try:
        return CADENCE_MONTHS[cadence]
    except KeyError:
        raise ValueError(f"Unknown billing cadence {cadence!r}; use one of {', '.join(CADENCE_MONTHS)}") from None


def _zone(time_zone: str | tzinfo) -> tzinfo:
    return ZoneInfo(time_zone) if isinstance(time_zone, str) else time_zone


def _require_aware(value: datetime, label: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{label} must be an aware datetime")


def boundary(*, anchor: datetime, cadence: str, index: int, time_zone: str | tzinfo) -> datetime:
    """The start of period ``index``: anchor + index×cadence in local wall time, day clamped, as UTC."""
    _require_aware(anchor, "anchor")
    return _boundary(anchor, cadence, index, _zone(time_zone))


# A pure function of its arguments, asked four times per period look-up and for every subscription of
# a real-time batch or billing run (most share an anchor, a cadence and a zone): remembered. Aware
# anchors with equal instants and zones hash alike, and the result depends on nothing else.
@functools.lru_cache(maxsize=65_536)
def _boundary(anchor: datetime, cadence: str, index: int, zone: tzinfo) -> datetime:
    local = anchor.astimezone(zone)
    month_number = local.year * 12 + (local.month - 1) + index * cadence_months(cadence)
    year, month = divmod(month_number, 12)
    month += 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    wall = local.replace(tzinfo=None, year=year, month=month, day=day)
    # A wall time inside a DST gap or fold resolves with fold=0 (the earlier offset), deterministically.
    return wall.replace(tzinfo=zone).astimezone(UTC)


def period_at(*, anchor: datetime, cadence: str, moment: datetime, time_zone: str | tzinfo) -> Period:
    """The period that contains ``moment``."""
    _require_aware(moment, "moment")
    zone = _zone(time_zone)
    local_anchor, local_moment = anchor.astimezone(zone), moment.astimezone(zone)
    months = cadence_months(cadence)
    elapsed = (local_moment.year - local_anchor.year) * 12 + (local_moment.month - local_anchor.month)
    index = elapsed // months
    # The month arithmetic is an estimate at most one period off either way; settle it on the boundaries.
    while boundary(anchor=anchor, cadence=cadence, index=index, time_zone=zone) > moment:
        index -= 1
    while boundary(anchor=anchor, cadence=cadence, index=index + 1, time_zone=zone) <= moment:
        index += 1
    return period_by_index(anchor=anchor, cadence=cadence, index=index, time_zone=zone)


def period_by_index(*, anchor: datetime, cadence: str, index: int, time_zone: str | tzinfo) -> Period:
    zone = _zone(time_zone)
    return Period(
        index=index,
        start=boundary(anchor=anchor, cadence=cadence, index=index, time_zone=zone),
        end=boundary(anchor=anchor, cadence=cadence, index=index + 1, time_zone=zone),
    )


def next_period(period: Period, *, anchor: datetime, cadence: str, time_zone: str | tzinfo) -> Period:
    return period_by_index(anchor=anchor, cadence=cadence, index=period.index + 1, time_zone=time_zone)


def local_date(moment: datetime, time_zone: str | tzinfo):
    """The calendar day of ``moment`` in ``time_zone`` (proration counts whole local days)."""
    return moment.astimezone(_zone(time_zone)).date()

"""Day-based proration of fixed fees over partial billing periods."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from .currency import CTX, round_fraction
from .errors import PricingError


@dataclass(frozen=True, slots=True)
class Proration:
    """A prorated fee: ``fraction`` (exact) of ``full_amount``.

    ``amount`` is the unrounded Decimal (exact whenever the fraction terminates, otherwise to 50
    significant digits); use :meth:`rounded_amount`, which rounds the exact Fraction once.
    """

    full_amount: Decimal
    covered_days: int
    period_days: int
    fraction: Fraction
    amount: Decimal

    def rounded_amount(self, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
        """Return the prorated amount rounded once to ``currency``'s minor unit."""
        return round_fraction(Fraction(self.full_amount) * self.fraction, currency, rounding)


def _day(value: date, label: str) -> date:
    # datetime is a date subclass; its time of day would silently be dropped, so refuse it and let the
    # caller convert to a date in the billing timezone, where "which day" is decided.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise PricingError(f"{label} must be a date (convert datetimes in the billing timezone first)")
    return value


def prorate(
    amount: Decimal,
    *,
    period_start: date,
    period_end: date,
    active_from: date | None = None,
    active_until: date | None = None,
    obligation: bool = False,
) -> Proration:
    """Prorate a fixed fee by the days of the period during which it is active.

    Periods and activity ranges are half-open ranges of calendar days: ``period_start`` and
    ``active_from`` count in full, ``period_end`` and ``active_until`` are excluded. A fee that
    starts at any time of day counts that whole day, and a plan change on day D bills D at the new
    plan only, so the old and new ranges share no day and add up to the period. The activity range
    is clipped to the period. ``fraction = covered days / days in period`` as an exact Fraction.

    ``obligation=True`` marks fees that are never prorated (set-up fees, annual commitments): the
    fraction is 1 as soon as any day is covered, 0 otherwise.
    """
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise PricingError(f"The fee to prorate must be a finite Decimal, got {amount!r}")
    start, end = _day(period_start, "period_start"), _day(period_end, "period_end")
    if end <= start:
        raise PricingError(f"The period must end after it starts ({start} to {end})")
    active_start = start if active_from is None else _day(active_from, "active_from")
    active_end = end if active_until is None else _day(active_until, "active_until")
    if active_end < active_start:
        raise PricingError(f"The fee cannot stop ({active_end}) before it starts ({active_start})")
    period_days = (end - start).days
    covered = max(0, (min(end, active_end) - max(start, active_start)).days)
    if obligation:
        fraction = Fraction(1 if covered else 0)
    else:
        fraction = Fraction(covered, period_days)
    if fraction == 1:
        prorated = amount
    else:
        prorated = CTX.divide(
            CTX.multiply(amount, Decimal(fraction.numerator)), Decimal(fraction.denominator)
        )
    return Proration(
        full_amount=amount, covered_days=covered, period_days=period_days, fraction=fraction, amount=prorated
    )

"""Plain data handed to and returned by the rating engine.

Everything here is a frozen, slotted dataclass or an enum: cheap to build, safe to share between
threads and to cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from .currency import round_money


class PricingModel(StrEnum):
    """How a price turns usage into money; see README.md for the exact semantics of each."""

    STANDARD = "standard"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"
    DYNAMIC = "dynamic"


class PackageRounding(StrEnum):
    """How a partial package is billed."""

    EXACT = "exact"  # 1,500 units at 1,000 per package bill as 1.5 packages
    UP = "up"  # ... as 2 packages
    DOWN = "down"  # ... as 1 package


class DynamicMode(StrEnum):
    """Where a dynamic price finds its unit price."""

    SCHEDULE = "schedule"  # the rate in force at the event's time, from PriceSpec.rate_schedule
    EVENT_PRICE = "event_price"  # each event carries its own unit price


class LineKind(StrEnum):
    """What an explanation line stands for."""

    UNIT = "unit"  # standard: quantity x unit price
    PACKAGE = "package"  # packages x package price
    TIER = "tier"  # graduated: units inside one tier x that tier's rate
    VOLUME_TIER = "volume_tier"  # volume: every unit x the rate of the tier reached
    FLAT_FEE = "flat_fee"  # a tier's flat fee
    PERCENTAGE = "percentage"  # rate x money-valued quantity
    FIXED_FEE = "fixed_fee"  # per-event fixed fee of a percentage price
    EVENT_MINIMUM = "event_minimum"  # raises events below the per-event minimum charge
    EVENT_MAXIMUM = "event_maximum"  # lowers events above the per-event maximum charge (negative)
    PERIOD_MINIMUM = "period_minimum"  # raises the period to the per-period minimum charge
    PERIOD_MAXIMUM = "period_maximum"  # lowers the period to the per-period maximum charge (negative)
    DYNAMIC = "dynamic"  # units charged at one dynamic unit price
    USAGE_DISCOUNT = "usage_discount"  # units removed before pricing (amount 0)
    FREE_ALLOWANCE = "free_allowance"  # units given free before pricing (amount 0)
    DISCOUNT = "discount"  # percentage discount on the price (negative)
    MINIMUM_TRUE_UP = "minimum_true_up"  # tops the price up to its minimum commitment


@dataclass(frozen=True, slots=True)
class Tier:
    """One band of a graduated or volume table.

    A tier covers the quantities above the previous tier's ``up_to`` (0 for the first tier) up to and
    including its own ``up_to``; ``up_to=None`` marks the open-ended last tier. ``flat_fee`` is charged
    once when the tier applies (graduated: any unit falls in it; volume: the total reaches it).
    """

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class RateChange:
    """A dynamic price's unit price in force from ``effective_from`` until the next change."""

    effective_from: datetime
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    """A period's usage of one price. Fill the fields the price model reads:

    - standard, graduated, volume, package: ``quantity``.
    - percentage: ``amounts`` (one money amount per event), or the aggregate ``quantity`` (total
      amount) with ``event_count`` when no per-event minimum/maximum is configured.
    - dynamic, schedule mode: ``events`` as ``(timestamp, quantity)`` pairs, or ``segments`` already
      bucketed by the schedule as ``(quantity, unit_price)`` pairs.
    - dynamic, event-price mode: ``segments`` as ``(quantity, unit_price)`` pairs.
    """

    quantity: Decimal | None = None
    event_count: int | None = None
    amounts: Sequence[Decimal] | None = None
    events: Sequence[tuple[datetime, Decimal]] | None = None
    segments: Sequence[tuple[Decimal, Decimal]] | None = None


@dataclass(frozen=True, slots=True)
class ExplanationLine:
    """One component of a rating: a tier, a fee, an allowance, a discount, a true-up...

    ``amount`` is unrounded and the amounts of all lines of a result add up exactly to
    ``RatingResult.amount``. ``quantity``/``unit_price`` are what was multiplied (for packages the
    number of packages and the package price; for percentages the money base and the rate).
    ``lower``/``upper`` are tier bounds (graduated: the range of units priced in this tier), ``tier``
    is the 1-based tier number, ``package_size`` and ``units`` describe package rounding, ``note`` says
    why an adjustment (clamp, schedule entry) happened. ``description`` is formatted on demand.
    """

    kind: LineKind
    amount: Decimal
    currency: str
    unit_name: str
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    lower: Decimal | None = None
    upper: Decimal | None = None
    tier: int | None = None
    package_size: Decimal | None = None
    units: Decimal | None = None
    note: str | None = None
    rate_per: int = 1  # units the printed rate is for: 1,000 prints "$0.002 per 1K" for 0.000002

    @property
    def description(self) -> str:
        """Invoice-ready text, e.g. ``0-100,000 tokens x $0.000002 = $0.20``."""
        from .explain import describe_line

        return describe_line(self)


@dataclass(frozen=True, slots=True)
class RatingResult:
    """The outcome of :func:`catalog.pricing.rate` for one price and one period.

    ``quantity`` is the usage as given (total money for percentage prices), ``billable_quantity`` what
    remained after the usage discount and free allowance, ``amount`` the exact unrounded charge and
    ``lines`` its explanation.
    """

    price_id: str
    name: str
    currency: str
    unit_name: str
    quantity: Decimal
    billable_quantity: Decimal
    amount: Decimal
    lines: tuple[ExplanationLine, ...]

    def rounded_amount(self, rounding: str = ROUND_HALF_UP) -> Decimal:
        """Return ``amount`` rounded once to the currency's minor unit with ``rounding``."""
        return round_money(self.amount, self.currency, rounding)

    @property
    def rounded(self) -> Decimal:
        """``amount`` rounded half-up to the currency's minor unit."""
        return round_money(self.amount, self.currency)

    def describe(self, separator: str = "; ") -> str:
        """Join the lines' descriptions: ``0-100,000 tokens x $0.000002 = $0.20; ...``."""
        from .explain import describe_result

        return describe_result(self, separator)

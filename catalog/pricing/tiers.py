"""Tier table validation and the precomputed tables the engine prices from."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from .currency import CTX, format_quantity
from .types import ExplanationLine, LineKind, Tier

_ZERO = Decimal(0)


def validate_tiers(tiers: Sequence[Tier]) -> list[str]:
    """Return finance-friendly problems with a tier table; an empty list means it is valid.

    Rules: at least one tier; every bound and price is a finite Decimal (or int); upper bounds are
    positive and strictly ascending; only the last tier is open-ended (``up_to=None``) and it must be;
    unit prices and flat fees are not negative. Tiers are numbered from 1 as on the admin form.
    """
    messages: list[str] = []
    if not tiers:
        return ["Add at least one tier; the last one must be open-ended"]
    previous: Decimal | None = _ZERO
    last = len(tiers)
    for number, tier in enumerate(tiers, start=1):
        if not isinstance(tier, Tier):
            messages.append(f"Tier {number} is not a Tier")
            previous = None
            continue
        up_to = tier.up_to
        if up_to is None:
            if number != last:
                messages.append("Only the last tier may be open-ended")
        elif not _is_number(up_to):
            messages.append(f"Tier {number}'s upper bound must be a number")
            up_to = None
        elif previous is not None and up_to <= previous:
            if number == 1:
                messages.append("Tier 1's upper bound must be greater than 0")
            else:
                bound = format_quantity(previous)
                messages.append(f"Tier {number} must start above tier {number - 1}'s upper bound of {bound}")
        if number == last and tier.up_to is not None:
            messages.append(f"The last tier (tier {number}) must be open-ended: leave its upper bound empty")
        for label, value in (("unit price", tier.unit_price), ("flat fee", tier.flat_fee)):
            if not _is_number(value):
                messages.append(f"Tier {number}'s {label} must be a number")
            elif value < 0:
                messages.append(f"Tier {number}'s {label} cannot be negative")
        if up_to is not None and (previous is None or up_to > previous):
            previous = up_to
    return messages


def _is_number(value: object) -> bool:
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class TierTable:
    """A validated tier table with everything that does not depend on the quantity precomputed.

    ``uppers`` holds the finite upper bounds for bisection. For graduated pricing ``full_lines[i]`` are
    the explanation lines of tiers ``0..i-1`` when each is used completely and ``full_amounts[i]`` their
    total, so pricing a quantity only builds the lines of the one tier it ends in.
    """

    lowers: tuple[Decimal, ...]
    uppers: tuple[Decimal, ...]
    prices: tuple[Decimal, ...]
    flat_fees: tuple[Decimal, ...]
    flat_lines: tuple[ExplanationLine | None, ...]
    full_lines: tuple[tuple[ExplanationLine, ...], ...]
    full_amounts: tuple[Decimal, ...]

    def index(self, quantity: Decimal) -> int:
        """Return the 0-based index of the tier whose band (lower, upper] holds ``quantity``."""
        return bisect_left(self.uppers, quantity)


def _decimal(value: Decimal | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


def compile_tiers(tiers: Sequence[Tier], currency: str, unit_name: str) -> TierTable:
    """Precompute bounds, flat-fee lines and full-tier lines; ``tiers`` must already be valid."""
    lowers: list[Decimal] = []
    uppers: list[Decimal] = []
    prices: list[Decimal] = []
    flat_fees: list[Decimal] = []
    flat_lines: list[ExplanationLine | None] = []
    full_lines: list[tuple[ExplanationLine, ...]] = [()]
    full_amounts: list[Decimal] = [_ZERO]
    lower = _ZERO
    for number, tier in enumerate(tiers, start=1):
        price = _decimal(tier.unit_price)
        fee = _decimal(tier.flat_fee)
        upper = None if tier.up_to is None else _decimal(tier.up_to)
        flat_line = ExplanationLine(LineKind.FLAT_FEE, fee, currency, unit_name, tier=number) if fee else None
        lowers.append(lower)
        prices.append(price)
        flat_fees.append(fee)
        flat_lines.append(flat_line)
        if upper is None:
            break
        uppers.append(upper)
        width = CTX.subtract(upper, lower)
        amount = CTX.multiply(width, price)
        line = ExplanationLine(LineKind.TIER, amount, currency, unit_name, width, price, lower, upper, number)
        full_lines.append(full_lines[-1] + ((line, flat_line) if flat_line else (line,)))
        full_amounts.append(CTX.add(CTX.add(full_amounts[-1], amount), fee))
        lower = upper
    return TierTable(
        lowers=tuple(lowers),
        uppers=tuple(uppers),
        prices=tuple(prices),
        flat_fees=tuple(flat_fees),
        flat_lines=tuple(flat_lines),
        full_lines=tuple(full_lines),
        full_amounts=tuple(full_amounts),
    )

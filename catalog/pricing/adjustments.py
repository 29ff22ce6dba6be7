"""Plan-level adjustments operating on a subscription's priced lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .currency import CTX, RoundedLines, round_lines, round_money
from .errors import PricingError
from .types import RatingResult

_HUNDRED = Decimal(100)


def apply_plan_minimum(
    lines: Iterable[RatingResult | Decimal],
    *,
    minimum: Decimal | None,
    currency: str,
    rounding: str = ROUND_HALF_UP,
) -> RoundedLines:
    """Round each priced line once and top the plan up to its minimum commitment.

    ``lines`` are the plan's :class:`RatingResult` objects (or unrounded line amounts) for one period,
    all in ``currency``. The minimum is compared with the sum of the rounded lines, i.e. with what the
    customer would otherwise pay, and ``minimum_true_up`` is the difference (0 when the minimum is met
    or absent). ``total`` equals ``sum(lines) + minimum_true_up`` exactly.
    """
    amounts: list[Decimal] = []
    for line in lines:
        if isinstance(line, RatingResult):
            if line.currency != currency:
                raise PricingError(
                    f"Cannot add a {line.currency} line to a {currency} plan",
                    price_id=line.price_id,
                    name=line.name,
                )
            amounts.append(line.amount)
        elif isinstance(line, Decimal):
            amounts.append(line)
        else:
            raise PricingError(f"Plan lines must be RatingResult or Decimal, got {type(line).__name__}")
    rounded = round_lines(amounts, currency, rounding)
    if minimum is None:
        return rounded
    if not isinstance(minimum, Decimal) or not minimum.is_finite() or minimum < 0:
        raise PricingError(f"The plan minimum must be a non-negative Decimal, got {minimum!r}")
    floor = round_money(minimum, currency, rounding)
    if rounded.total >= floor:
        return rounded
    true_up = CTX.subtract(floor, rounded.total)
    return RoundedLines(currency=currency, lines=rounded.lines, minimum_true_up=true_up, total=floor)


@dataclass(frozen=True, slots=True)
class SubtotalDiscount:
    """A percentage discount on a subscription subtotal; ``total == subtotal + discount`` exactly."""

    currency: str
    percent: Decimal
    subtotal: Decimal
    discount: Decimal  # zero or negative, rounded to the minor unit
    total: Decimal


def apply_subtotal_discount(
    subtotal: Decimal,
    *,
    percent: Decimal,
    currency: str,
    rounding: str = ROUND_HALF_UP,
) -> SubtotalDiscount:
    """Apply ``percent`` (0-100, 40 = 40% off) to a whole subscription's ``subtotal``.

    The subtotal is rounded to the minor unit (it normally already is: the sum of rounded lines) and
    the discount is rounded once, so the discount line and the total print exactly as computed.
    """
    if not isinstance(percent, Decimal) or not percent.is_finite() or not 0 <= percent <= _HUNDRED:
        raise PricingError(f"A subtotal discount must be a Decimal between 0 and 100, got {percent!r}")
    base = round_money(subtotal, currency, rounding)
    discount = CTX.minus(round_money(CTX.multiply(base, percent.scaleb(-2, CTX)), currency, rounding))
    return SubtotalDiscount(
        currency=currency, percent=percent, subtotal=base, discount=discount, total=CTX.add(base, discount)
    )

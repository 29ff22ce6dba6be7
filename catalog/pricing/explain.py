"""Invoice text for explanation lines, formatted only when asked for.

The engine builds structured :class:`ExplanationLine` objects on the hot path; turning them into text
(thousands separators, currency symbols) costs far more than the arithmetic, so it happens here, on
demand.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from .currency import CTX, format_money, format_quantity

TIMES = "\u00d7"  # multiplication sign, as printed on invoices
DASH = "\u2013"  # en dash between range bounds

if TYPE_CHECKING:
    from .types import ExplanationLine, RatingResult


def describe_line(line: ExplanationLine) -> str:
    """Return the invoice text of one explanation line."""
    formatter = _FORMATTERS[line.kind]
    text = formatter(line)
    if line.note and line.kind not in _NOTE_IN_TEXT:
        text = f"{text} ({line.note})"
    return text


def describe_result(result: RatingResult, separator: str = "; ") -> str:
    """Return the descriptions of all lines of ``result`` joined by ``separator``."""
    if not result.lines:
        return f"0 {result.unit_name} = {format_money(result.amount, result.currency)}"
    return separator.join(describe_line(line) for line in result.lines)


def _money(line: ExplanationLine, value: Decimal | None) -> str:
    return format_money(value if value is not None else line.amount, line.currency)


def _events(count: Decimal) -> str:
    return f"{format_quantity(count)} {'event' if count == 1 else 'events'}"


def _percent(fraction: Decimal) -> str:
    return f"{format_quantity(fraction.scaleb(2, CTX))}%"


_SCALE_NAMES = {1_000: "1K", 1_000_000: "1M"}


def scale_name(rate_per: int) -> str:
    """``1K`` for 1,000 units, ``1M`` for 1,000,000, else the number itself."""
    return _SCALE_NAMES.get(rate_per) or format_quantity(Decimal(rate_per))


def format_rate(unit_price: Decimal, currency: str, rate_per: int = 1) -> str:
    """A per-unit rate as people read it: ``$0.000002``, or ``$0.002 per 1K`` when ``rate_per`` is 1,000."""
    if rate_per == 1:
        return format_money(unit_price, currency)
    return f"{format_money(CTX.multiply(unit_price, rate_per), currency)} per {scale_name(rate_per)}"


def _rate(line: ExplanationLine) -> str:
    return format_rate(line.unit_price, line.currency, line.rate_per)


def _unit(line: ExplanationLine) -> str:
    quantity = format_quantity(line.quantity)
    return f"{quantity} {line.unit_name} {TIMES} {_rate(line)} = {_money(line, None)}"


def _package(line: ExplanationLine) -> str:
    size = format_quantity(line.package_size)
    price = _money(line, line.unit_price)
    units = f"{format_quantity(line.units)} {line.unit_name}"
    if line.units == CTX.multiply(line.quantity, line.package_size):
        return f"{units} {TIMES} {price} per {size} {line.unit_name} = {_money(line, None)}"
    packages = format_quantity(line.quantity)
    return f"{units} billed as {packages} packages of {size} {TIMES} {price} = {_money(line, None)}"


def _tier(line: ExplanationLine) -> str:
    reached = CTX.add(line.lower, line.quantity)
    return (
        f"{format_quantity(line.lower)}{DASH}{format_quantity(reached)} {line.unit_name}"
        f" {TIMES} {_rate(line)} = {_money(line, None)}"
    )


def _band(line: ExplanationLine) -> str:
    if line.upper is None:
        return f"above {format_quantity(line.lower)}"
    if not line.lower:
        return f"up to {format_quantity(line.upper)}"
    return f"{format_quantity(line.lower)}{DASH}{format_quantity(line.upper)}"


def _volume_tier(line: ExplanationLine) -> str:
    return (
        f"{format_quantity(line.quantity)} {line.unit_name} {TIMES} {_rate(line)}"
        f" (tier {line.tier}: {_band(line)} {line.unit_name}) = {_money(line, None)}"
    )


def _flat_fee(line: ExplanationLine) -> str:
    label = f"tier {line.tier} flat fee" if line.tier is not None else "flat fee"
    return f"{label} = {_money(line, None)}"


def _percentage(line: ExplanationLine) -> str:
    return f"{_percent(line.unit_price)} of {_money(line, line.quantity)} = {_money(line, None)}"


def _fixed_fee(line: ExplanationLine) -> str:
    events = _events(line.quantity)
    return f"{events} {TIMES} {_money(line, line.unit_price)} fixed fee = {_money(line, None)}"


def _event_clamp(line: ExplanationLine) -> str:
    which = "minimum" if line.kind == "event_minimum" else "maximum"
    return (
        f"{_events(line.quantity)} adjusted to the per-event {which}"
        f" of {_money(line, line.unit_price)} = {_money(line, None)}"
    )


def _period_clamp(line: ExplanationLine) -> str:
    which = "minimum" if line.kind == "period_minimum" else "maximum"
    return f"adjusted to the period {which} of {_money(line, line.unit_price)} = {_money(line, None)}"


def _dynamic(line: ExplanationLine) -> str:
    text = f"{format_quantity(line.quantity)} {line.unit_name} {TIMES} {_rate(line)}"
    if line.note:
        text = f"{text} ({line.note})"
    return f"{text} = {_money(line, None)}"


def _usage_discount(line: ExplanationLine) -> str:
    return f"usage discount: {format_quantity(line.quantity)} {line.unit_name} not billed"


def _free_allowance(line: ExplanationLine) -> str:
    text = f"first {format_quantity(line.quantity)} {line.unit_name} free"
    if line.upper is not None and line.upper != line.quantity:
        text = f"{text} (allowance {format_quantity(line.upper)})"
    return text


def _discount(line: ExplanationLine) -> str:
    return f"{format_quantity(line.unit_price)}% off {_money(line, line.quantity)} = {_money(line, None)}"


def _minimum_true_up(line: ExplanationLine) -> str:
    return f"minimum commitment {_money(line, line.unit_price)}: true-up = {_money(line, None)}"


_FORMATTERS = {
    "unit": _unit,
    "package": _package,
    "tier": _tier,
    "volume_tier": _volume_tier,
    "flat_fee": _flat_fee,
    "percentage": _percentage,
    "fixed_fee": _fixed_fee,
    "event_minimum": _event_clamp,
    "event_maximum": _event_clamp,
    "period_minimum": _period_clamp,
    "period_maximum": _period_clamp,
    "dynamic": _dynamic,
    "usage_discount": _usage_discount,
    "free_allowance": _free_allowance,
    "discount": _discount,
    "minimum_true_up": _minimum_true_up,
}

_NOTE_IN_TEXT = frozenset({"dynamic"})

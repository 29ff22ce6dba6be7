"""The rating engine: ``rate(spec, usage)`` turns one period's usage of one price into money.

Pure and deterministic: no I/O, no clock, no global state. All arithmetic goes through the explicit
context ``CTX`` (50 significant digits), so results are exact for any realistic input and never
depend on the caller's decimal context. Nothing is rounded here; see ``RatingResult.rounded_amount``.

Order of application (README.md has worked examples):
1. usage discount units are removed from the quantity,
2. the free allowance is removed from what remains,
3. the model prices the remaining (billable) quantity, tiers starting again at 0,
4. the percentage discount applies to the priced subtotal,
5. the price's minimum commitment tops the discounted subtotal up.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from .currency import CTX, format_money
from .errors import InvalidUsageError, PricingError
from .limits import BOUND_TEXT, LIMIT
from .spec import PriceSpec
from .types import (
    DynamicMode,
    ExplanationLine,
    LineKind,
    PackageRounding,
    PricingModel,
    RatingResult,
    Usage,
)

_ZERO = Decimal(0)
_ONE = Decimal(1)
_Line = ExplanationLine


def rate(spec: PriceSpec, usage: Usage | Decimal | int) -> RatingResult:
    """Price one period's ``usage`` of ``spec`` and explain the result.

    ``usage`` is a :class:`Usage`, or for quantity-based models (standard, graduated, volume, package)
    simply the period's aggregated quantity. Raises :class:`InvalidUsageError` for usage the price
    cannot take (negative quantities without rebates, the wrong shape for the model).
    """
    if spec.__class__ is not PriceSpec:
        raise PricingError(f"rate() needs a PriceSpec, got {type(spec).__name__}")
    result = _RATERS[spec.model](spec, usage)
    if result.amount.copy_abs() >= LIMIT:
        raise _usage_error(
            spec, f"the charge {result.amount:,f} is beyond the largest amount Meterline bills ({BOUND_TEXT})"
        )
    if spec.rate_per != 1:
        result = _per_scale(result, spec.rate_per)
    return result


_SCALED_KINDS = frozenset({LineKind.UNIT, LineKind.TIER, LineKind.VOLUME_TIER, LineKind.DYNAMIC})


def _per_scale(result: RatingResult, rate_per: int) -> RatingResult:
    """Mark the per-unit rate lines to print per ``rate_per`` units; amounts are untouched."""
    lines = tuple(replace(line, rate_per=rate_per) if line.kind in _SCALED_KINDS else line for line in result.lines)
    return replace(result, lines=lines)


# -- shared steps --------------------------------------------------------------------------------


def _usage_error(spec: PriceSpec, message: str) -> PricingError:
    return spec.error(message, InvalidUsageError)


def _number(spec: PriceSpec, value: object, what: str, *, negative_ok: bool = False) -> Decimal:
    if value.__class__ is not Decimal:
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        elif not isinstance(value, Decimal):
            raise _usage_error(spec, f"{what} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise _usage_error(spec, f"{what} must be a finite number, got {value}")
    if value.copy_abs() >= LIMIT:
        raise _usage_error(spec, f"{what} {_short(value)} is beyond the largest number Meterline rates ({BOUND_TEXT})")
    if value < 0 and not negative_ok:
        raise _usage_error(spec, f"{what} cannot be negative, got {value}")
    return value


def _short(value: Decimal) -> str:
    """A number for an error message: a 400-digit total is shown in scientific notation."""
    return f"{value:,f}" if value.adjusted() < 30 else f"{value:.6e}"


def _quantity(spec: PriceSpec, usage: Usage | Decimal | int) -> Decimal:
    if usage.__class__ is Usage:
        if (
            usage.amounts is not None
            or usage.events is not None
            or usage.segments is not None
            or usage.event_count is not None
        ):
            raise _usage_error(spec, f"{spec.model.value} prices take a single aggregated quantity")
        quantity = usage.quantity
        if quantity is None:
            raise _usage_error(spec, "Usage.quantity is missing")
    else:
        quantity = usage
    if (
        quantity.__class__ is Decimal
        and quantity.is_finite()
        and (quantity >= 0 or spec.allow_rebates)
        and quantity.copy_abs() < LIMIT
    ):
        return quantity
    return _number(spec, quantity, "Quantity", negative_ok=spec.allow_rebates)


def _reduce(spec: PriceSpec, quantity: Decimal) -> tuple[tuple[ExplanationLine, ...], Decimal]:
    """Apply the usage discount, then the free allowance, to a (positive part of a) quantity."""
    lines: tuple[ExplanationLine, ...] = ()
    discount_units = spec.usage_discount_units
    if discount_units:
        removed = min(quantity, discount_units) if quantity > 0 else _ZERO
        quantity = CTX.subtract(quantity, removed)
        lines = (_Line(LineKind.USAGE_DISCOUNT, _ZERO, spec.currency, spec.unit_name, removed, upper=discount_units),)
    free = spec.free_units
    if free:
        waived = min(quantity, free) if quantity > 0 else _ZERO
        quantity = CTX.subtract(quantity, waived)
        lines += (_Line(LineKind.FREE_ALLOWANCE, _ZERO, spec.currency, spec.unit_name, waived, upper=free),)
    return lines, quantity


def _finish(
    spec: PriceSpec,
    quantity: Decimal,
    billable: Decimal,
    lines: tuple[ExplanationLine, ...],
    subtotal: Decimal,
) -> RatingResult:
    """Apply the percentage discount and the minimum commitment, then build the result."""
    factor = spec.discount_factor
    if factor is not None:
        discount = CTX.minus(CTX.multiply(subtotal, factor))
        if discount:
            lines += (
                _Line(
                    LineKind.DISCOUNT,
                    discount,
                    spec.currency,
                    spec.unit_name,
                    subtotal,
                    spec.discount_percent,
                ),
            )
            subtotal = CTX.add(subtotal, discount)
    minimum = spec.minimum_amount
    if minimum is not None and subtotal < minimum:
        true_up = CTX.subtract(minimum, subtotal)
        lines += (_Line(LineKind.MINIMUM_TRUE_UP, true_up, spec.currency, spec.unit_name, None, minimum),)
        subtotal = minimum
    return RatingResult(spec.price_id, spec.name, spec.currency, spec.unit_name, quantity, billable, subtotal, lines)


# -- quantity-based models -----------------------------------------------------------------------


def _graduated(spec: PriceSpec, usage: Usage | Decimal | int) -> RatingResult:
    quantity = _quantity(spec, usage)
    if spec.usage_discount_units or spec.free_units:
        lines, billable = _reduce(spec, quantity)
    else:
        lines, billable = (), quantity
    if not billable:
        return _finish(spec, quantity, billable, lines, _ZERO)
    table = spec.table
    uppers = table.uppers
    index = bisect_left(uppers, billable)
    lower = table.lowers[index]
    price = table.prices[index]
    units = CTX.subtract(billable, lower)
    amount = CTX.multiply(units, price)
    line = _Line(
        LineKind.TIER,
        amount,
        spec.currency,
        spec.unit_name,
        units,
        price,
        lower,
        uppers[index] if index < len(uppers) else None,
        index + 1,
    )
    flat_line = table.flat_lines[index]
    subtotal = CTX.add(table.full_amounts[index], amount)
    if flat_line is None:
        lines += table.full_lines[index] + (line,)
    else:
        lines += table.full_lines[index] + (line, flat_line)
        subtotal = CTX.add(subtotal, flat_line.amount)
    return _finish(spec, quantity, billable, lines, subtotal)


def _volume(spec: PriceSpec, usage: Usage | Decimal | int) -> RatingResult:
    quantity = _quantity(spec, usage)
    if spec.usage_discount_units or spec.free_units:
        lines, billable = _reduce(spec, quantity)
    else:
        lines, billable = (), quantity
    if not billable:
        return _finish(spec, quantity, billable, lines, _ZERO)
    table = spec.table
    uppers = table.uppers
    index = bisect_left(uppers, billable)
    price = table.prices[index]
    amount = CTX.multiply(billable, price)
    line = _Line(
        LineKind.VOLUME_TIER,
        amount,
        spec.currency,
        spec.unit_name,
        billable,
        price,
        table.lowers[index],
        uppers[index] if index < len(uppers) else None,
        index + 1,
    )
    flat_line = table.flat_lines[index]
    if flat_line is None:
        return _finish(spec, quantity, billable, lines + (line,), amount)
    return _finish(spec, quantity, billable, lines + (line, flat_line), CTX.add(amount, flat_line.amount))


def _packages(spec: PriceSpec, units: Decimal) -> Decimal:
    """Number of packages billed for ``units``; UP/DOWN round the magnitude (rebates mirror charges)."""
    size = spec.package_size
    if spec.package_rounding is PackageRounding.EXACT:
        return CTX.divide(units, size)
    whole, remainder = CTX.divmod(units, size)
    if remainder and spec.package_rounding is PackageRounding.UP:
        whole = CTX.add(whole, _ONE if units > 0 else CTX.minus(_ONE))
    return whole


def _standard(spec: PriceSpec, usage: Usage | Decimal | int) -> RatingResult:
    quantity = _quantity(spec, usage)
    if spec.usage_discount_units or spec.free_units:
        lines, billable = _reduce(spec, quantity)
    else:
        lines, billable = (), quantity
    price = spec.unit_price
    size = spec.package_size
    if size is None:
        amount = CTX.multiply(billable, price)
        line = _Line(LineKind.UNIT, amount, spec.currency, spec.unit_name, billable, price)
        return _finish(spec, quantity, billable, lines + (line,), amount)
    packages = _packages(spec, billable)
    if spec.package_rounding is PackageRounding.EXACT:
        # Multiply before dividing so a non-terminating package count is rounded at most once.
        amount = CTX.divide(CTX.multiply(billable, price), size)
    else:
        amount = CTX.multiply(packages, price)
    line = _Line(
        LineKind.PACKAGE,
        amount,
        spec.currency,
        spec.unit_name,
        packages,
        price,
        package_size=size,
        units=billable,
    )
    return _finish(spec, quantity, billable, lines + (line,), amount)


# -- percentage ----------------------------------------------------------------------------------


def _percentage(spec: PriceSpec, usage: Usage | Decimal | int) -> RatingResult:
    rate_ = spec.percentage_rate
    fee = spec.fixed_fee
    event_min, event_max = spec.event_min_charge, spec.event_max_charge
    raised = lowered = _ZERO
    raised_count = lowered_count = 0
    if usage.__class__ is Usage and usage.amounts is not None:
        if usage.quantity is not None or usage.event_count is not None or usage.events or usage.segments:
            raise _usage_error(spec, "Give either per-event amounts or the aggregate quantity and event_count")
        total = _ZERO
        count = 0
        for amount in usage.amounts:
            amount = _number(spec, amount, "Event amount")
            total = CTX.add(total, amount)
            count += 1
            if event_min is None and event_max is None:
                continue
            charge = CTX.multiply(amount, rate_)
            if fee is not None:
                charge = CTX.add(charge, fee)
            if event_min is not None and charge < event_min:
                raised = CTX.add(raised, CTX.subtract(event_min, charge))
                raised_count += 1
            elif event_max is not None and charge > event_max:
                lowered = CTX.add(lowered, CTX.subtract(charge, event_max))
                lowered_count += 1
    else:
        if event_min is not None or event_max is not None:
            raise _usage_error(spec, "Per-event minimum/maximum charges need the per-event amounts")
        if usage.__class__ is Usage:
            if usage.events is not None or usage.segments is not None:
                raise _usage_error(spec, "percentage prices take amounts, or quantity with event_count")
            total, count = usage.quantity, usage.event_count
            if total is None:
                raise _usage_error(spec, "Usage needs amounts, or quantity (total amount) with event_count")
        else:
            total, count = usage, None
        total = _number(spec, total, "Total amount")
        if count is None:
            if fee is not None:
                raise _usage_error(spec, "A fixed fee per event needs Usage.event_count")
        elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _usage_error(spec, f"event_count must be a whole number of events, got {count!r}")
    currency, unit_name = spec.currency, spec.unit_name
    subtotal = CTX.multiply(total, rate_)
    lines: tuple[ExplanationLine, ...] = (_Line(LineKind.PERCENTAGE, subtotal, currency, unit_name, total, rate_),)
    if fee is not None:
        fees = CTX.multiply(Decimal(count), fee)
        lines += (_Line(LineKind.FIXED_FEE, fees, currency, unit_name, Decimal(count), fee),)
        subtotal = CTX.add(subtotal, fees)
    if raised_count:
        lines += (_Line(LineKind.EVENT_MINIMUM, raised, currency, unit_name, Decimal(raised_count), event_min),)
        subtotal = CTX.add(subtotal, raised)
    if lowered_count:
        lowered = CTX.minus(lowered)
        lines += (_Line(LineKind.EVENT_MAXIMUM, lowered, currency, unit_name, Decimal(lowered_count), event_max),)
        subtotal = CTX.add(subtotal, lowered)
    period_min, period_max = spec.period_min_charge, spec.period_max_charge
    if period_min is not None and subtotal < period_min:
        lines += (
            _Line(
                LineKind.PERIOD_MINIMUM,
                CTX.subtract(period_min, subtotal),
                currency,
                unit_name,
                None,
                period_min,
            ),
        )
        subtotal = period_min
    elif period_max is not None and subtotal > period_max:
        lines += (
            _Line(
                LineKind.PERIOD_MAXIMUM,
                CTX.subtract(period_max, subtotal),
                currency,
                unit_name,
                None,
                period_max,
            ),
        )
        subtotal = period_max
    return _finish(spec, total, total, lines, subtotal)


# -- dynamic -------------------------------------------------------------------------------------


def _dynamic(spec: PriceSpec, usage: Usage | Decimal | int) -> RatingResult:
    if usage.__class__ is not Usage or usage.quantity is not None or usage.amounts is not None:
        raise _usage_error(spec, "dynamic prices take Usage(events=...) or Usage(segments=...)")
    if (usage.events is None) == (usage.segments is None):
        raise _usage_error(spec, "Give exactly one of Usage.events and Usage.segments")
    schedule = spec.schedule
    # Each item: (group key, quantity, listed unit price, schedule index or None), in consumption order.
    items: list[tuple[object, Decimal, Decimal, int | None]] = []
    if usage.events is not None:
        if spec.dynamic_mode is not DynamicMode.SCHEDULE:
            raise _usage_error(spec, "Timestamped events need a schedule-mode price; give segments")
        timed: list[tuple[datetime, Decimal, int]] = []
        for number, event in enumerate(usage.events, start=1):
            moment, quantity = event
            if not isinstance(moment, datetime):
                raise _usage_error(spec, f"Event {number}'s timestamp must be a datetime")
            quantity = _number(spec, quantity, f"Event {number}'s quantity")
            try:
                index = schedule.index_at(moment)
            except TypeError:
                raise _usage_error(
                    spec, "Event timestamps and the rate schedule mix aware and naive datetimes"
                ) from None
            if index < 0:
                raise _usage_error(
                    spec, f"Event {number} at {moment.isoformat()} precedes the first rate of the schedule"
                )
            timed.append((moment, quantity, index))
        timed.sort(key=lambda item: item[0])
        items = [(index, quantity, schedule.prices[index], index) for _, quantity, index in timed]
    else:
        known = set(schedule.prices) if schedule is not None else None
        for number, segment in enumerate(usage.segments, start=1):
            quantity, price = segment
            quantity = _number(spec, quantity, f"Segment {number}'s quantity")
            price = _number(spec, price, f"Segment {number}'s unit price")
            if known is not None and price not in known:
                raise _usage_error(spec, f"Segment {number}'s unit price {price} is not in the rate schedule")
            items.append((price, quantity, price, None))

    quantity = _ZERO
    for item in items:
        quantity = CTX.add(quantity, item[1])
    lines, billable = _reduce(spec, quantity) if spec.usage_discount_units or spec.free_units else ((), quantity)
    skip = CTX.subtract(quantity, billable)

    # Waived units come off the earliest usage first.
    groups: dict[object, list] = {}
    for key, item_quantity, price, index in items:
        if skip:
            taken = min(skip, item_quantity)
            skip = CTX.subtract(skip, taken)
            item_quantity = CTX.subtract(item_quantity, taken)
        if not item_quantity:
            continue
        group = groups.get(key)
        if group is None:
            groups[key] = [item_quantity, price, index]
        else:
            group[0] = CTX.add(group[0], item_quantity)

    subtotal = _ZERO
    for group_quantity, price, index in groups.values():
        charged, note = _clamp(spec, price)
        if index is not None:
            since = f"rate from {schedule.starts[index].isoformat()}"
            note = f"{since}; {note}" if note else since
        amount = CTX.multiply(group_quantity, charged)
        lines += (_Line(LineKind.DYNAMIC, amount, spec.currency, spec.unit_name, group_quantity, charged, note=note),)
        subtotal = CTX.add(subtotal, amount)
    return _finish(spec, quantity, billable, lines, subtotal)


def _clamp(spec: PriceSpec, price: Decimal) -> tuple[Decimal, str | None]:
    low, high = spec.min_unit_price, spec.max_unit_price
    if low is not None and price < low:
        listed = format_money(price, spec.currency)
        return low, f"raised to the minimum unit price {format_money(low, spec.currency)} from {listed}"
    if high is not None and price > high:
        listed = format_money(price, spec.currency)
        return high, f"capped at the maximum unit price {format_money(high, spec.currency)} from {listed}"
    return price, None


_RATERS: dict[PricingModel, Callable[[PriceSpec, Usage | Decimal | int], RatingResult]] = {
    PricingModel.STANDARD: _standard,
    PricingModel.GRADUATED: _graduated,
    PricingModel.VOLUME: _volume,
    PricingModel.PACKAGE: _standard,  # whole packages: the spec fixes package rounding to UP or DOWN
    PricingModel.PERCENTAGE: _percentage,
    PricingModel.DYNAMIC: _dynamic,
}

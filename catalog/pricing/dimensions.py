"""Dimensional prices: one metered price with its own rates per value of one or more event properties.

A :class:`DimensionalSpec` lists ``dimensions`` (ordered property keys, e.g. ``("model", "region")``)
and ``combinations`` (a tuple of values, one per dimension, and the :class:`PriceSpec` that prices it:
standard, graduated, volume or package, with its own free units). Usage the combinations do not name is
pooled into one *other values* combination priced by ``default``, or, with no default, left unpriced
(the price refuses those values; refusal belongs at ingestion, see README "Dimensional prices").

``rate_dimensional(spec, usage)`` takes ``{values tuple: quantity}`` and returns a
:class:`DimensionalResult` whose per-combination results add up exactly to ``amount``. Pure and exact
like ``rate``: real-time debits charge ``rate_dimensional(after).amount - rate_dimensional(before).amount``
per combination, so the debits telescope to the invoice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from .currency import CTX, format_money, format_quantity, round_lines
from .engine import rate
from .errors import InvalidPriceError, InvalidUsageError, PricingError
from .limits import LIMIT, within_bound
from .spec import PriceSpec
from .types import ExplanationLine, LineKind, PackageRounding, PricingModel, RatingResult, Tier

_ZERO = Decimal(0)

# Bounds, validated when a spec is built (and so by the catalog's JSON validation).
MAX_DIMENSIONS = 3
MAX_COMBINATIONS = 100
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 100
# Distinct unmatched value tuples kept by name in a result's note (the quantities are all pooled anyway).
MAX_NAMED_UNMATCHED = 5

DIMENSIONAL_MODELS = frozenset(
    {PricingModel.STANDARD, PricingModel.GRADUATED, PricingModel.VOLUME, PricingModel.PACKAGE}
)
OTHER_LABEL = "other values"

Values = tuple[str | None, ...]


class TierScope(StrEnum):
    """Where a combination's tiers (and free units) count from."""

    COMBINATION = "combination"  # each combination's own quantity, from 0
    METRIC = "metric"  # the metric's cumulative quantity over all combinations, in the spec's order


class Unmatched(StrEnum):
    """What a price does with usage whose values no combination names."""

    DEFAULT = "default"  # pooled and priced by the default model
    REFUSE = "refuse"  # refused at ingestion; usage that got in anyway is shown unpriced


@dataclass(frozen=True, slots=True)
class Combination:
    """One priced combination: ``values`` (one per dimension, in the spec's order) and its model."""

    values: tuple[str, ...]
    spec: PriceSpec


@dataclass(frozen=True, slots=True)
class DimensionalSpec:
    """A metered price whose rates depend on event properties; validated at construction."""

    price_id: str
    name: str
    currency: str
    unit_name: str
    dimensions: tuple[str, ...]
    combinations: tuple[Combination, ...]
    default: PriceSpec | None = None
    tier_scope: TierScope = TierScope.COMBINATION
    index: dict[tuple[str, ...], int] = field(init=False, repr=False, compare=False, default_factory=dict)
    labels: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def unmatched(self) -> Unmatched:
        return Unmatched.REFUSE if self.default is None else Unmatched.DEFAULT

    def error(self, message: str, kind: type[PricingError] = InvalidPriceError) -> PricingError:
        return kind(message, price_id=self.price_id, name=self.name)

    def matches(self, values: Values) -> bool:
        """Whether ``values`` name one of the combinations (ingestion uses it to refuse)."""
        return values in self.index

    def label(self, values: Values) -> str:
        """``model=nle-small, region=eu``; a missing property reads ``(none)``."""
        return ", ".join(
            f"{key}={'(none)' if value is None else value}" for key, value in zip(self.dimensions, values, strict=True)
        )


@dataclass(frozen=True, slots=True)
class CombinationResult:
    """One combination's share of a dimensional rating.

    ``values`` is None for the pooled *other values* combination, whose ``unmatched`` lists the value
    tuples it pooled (at most ``MAX_NAMED_UNMATCHED`` by name). ``priced`` is False when the price
    refuses unmatched values: the usage is shown at 0 so it is never silently billed nor hidden.
    """

    values: tuple[str, ...] | None
    label: str
    result: RatingResult
    priced: bool = True
    unmatched: tuple[Values, ...] = ()
    position: Decimal | None = None  # METRIC scope: cumulative units of the combinations before it

    @property
    def amount(self) -> Decimal:
        return self.result.amount

    def describe(self) -> str:
        if not self.priced:
            return f"{format_quantity(self.result.quantity)} {self.result.unit_name} with values this price refuses: not billed"
        return self.result.describe()


@dataclass(frozen=True, slots=True)
class DimensionalResult:
    """The outcome of :func:`rate_dimensional`: ``amount`` is exactly the sum of the combinations'."""

    price_id: str
    name: str
    currency: str
    unit_name: str
    quantity: Decimal
    amount: Decimal
    combinations: tuple[CombinationResult, ...]

    def rounded_amounts(self, rounding: str = ROUND_HALF_UP) -> tuple[tuple[Decimal, ...], Decimal]:
        """Each combination rounded once, and the total as the sum of the rounded lines."""
        rounded = round_lines((c.amount for c in self.combinations), self.currency, rounding)
        return tuple(rounded.lines), rounded.total

    def describe(self, separator: str = "; ") -> str:
        if not self.combinations:
            return f"0 {self.unit_name} = {format_money(_ZERO, self.currency)}"
        return separator.join(f"{c.label}: {c.describe()}" for c in self.combinations)


def rate_dimensional(spec: DimensionalSpec, usage: Mapping[Values, Decimal]) -> DimensionalResult:
    """Price one period's usage, given per value tuple, combination by combination.

    Order of the result (and, with ``tier_scope=METRIC``, of the cumulative axis): the combinations as
    the spec lists them, then *other values*. Combinations without usage are left out. Quantities must
    be non-negative Decimals; value tuples must have one entry per dimension (``None`` for a missing
    property).
    """
    if spec.__class__ is not DimensionalSpec:
        raise PricingError(f"rate_dimensional() needs a DimensionalSpec, got {type(spec).__name__}")
    quantities, other, other_values = _quantities(spec, usage)
    scoped = spec.tier_scope is TierScope.METRIC
    results: list[CombinationResult] = []
    cumulative = _ZERO
    total_quantity = _ZERO
    if scoped:
        for quantity in quantities:
            if quantity:
                total_quantity = CTX.add(total_quantity, quantity)
        metric_total = CTX.add(total_quantity, other) if spec.default is not None else total_quantity
    for combination, quantity, label in zip(spec.combinations, quantities, spec.labels, strict=True):
        if not quantity:
            continue
        if scoped:
            result = _rate_interval(combination.spec, cumulative, quantity, metric_total)
            results.append(CombinationResult(combination.values, label, result, position=cumulative))
            cumulative = CTX.add(cumulative, quantity)
        else:
            results.append(CombinationResult(combination.values, label, rate(combination.spec, quantity)))
            total_quantity = CTX.add(total_quantity, quantity)
    if other:
        other_values.sort(key=_sort_key)
        named = tuple(other_values[:MAX_NAMED_UNMATCHED])
        default = spec.default
        if default is None:
            unpriced = RatingResult(spec.price_id, spec.name, spec.currency, spec.unit_name, other, _ZERO, _ZERO, ())
            results.append(CombinationResult(None, OTHER_LABEL, unpriced, priced=False, unmatched=named))
        elif scoped:
            result = _rate_interval(default, cumulative, other, metric_total)
            results.append(CombinationResult(None, OTHER_LABEL, result, unmatched=named, position=cumulative))
            total_quantity = CTX.add(total_quantity, other)
        else:
            results.append(CombinationResult(None, OTHER_LABEL, rate(default, other), unmatched=named))
            total_quantity = CTX.add(total_quantity, other)
    amount = _ZERO
    for item in results:
        amount = CTX.add(amount, item.result.amount)
    return DimensionalResult(
        spec.price_id, spec.name, spec.currency, spec.unit_name, total_quantity, amount, tuple(results)
    )


def _quantities(
    spec: DimensionalSpec, usage: Mapping[Values, Decimal]
) -> tuple[list[Decimal | None], Decimal, list[Values]]:
    """``usage`` checked and laid out on the spec: each combination's quantity (None without usage), the
    pooled quantity of values no combination names, and those values."""
    width = len(spec.dimensions)
    quantities: list[Decimal | None] = [None] * len(spec.combinations)
    other = _ZERO
    other_values: list[Values] = []
    index = spec.index
    for values, quantity in usage.items():
        if quantity.__class__ is not Decimal or not quantity.is_finite() or quantity < 0 or quantity >= LIMIT:
            raise spec.error(
                f"The quantity for {values!r} must be a non-negative Decimal, got {quantity!r}", InvalidUsageError
            )
        if values.__class__ is not tuple or len(values) != width:
            raise spec.error(f"Usage values {values!r} must be a tuple of {width} values", InvalidUsageError)
        position = index.get(values)
        if position is None:
            if quantity:
                other = CTX.add(other, quantity)
                other_values.append(values)
            continue
        known = quantities[position]
        quantities[position] = quantity if known is None else CTX.add(known, quantity)
    return quantities, other, other_values


def dimensional_amounts(
    spec: DimensionalSpec, before: Mapping[Values, Decimal], after: Mapping[Values, Decimal]
) -> tuple[Decimal, Decimal]:
    """``rate_dimensional(spec, before).amount`` and ``rate_dimensional(spec, after).amount``, exactly, for a
    change of usage such as one real-time request's.

    With tiers per combination each combination's amount depends on its own quantity only, so a
    combination whose quantity is the same at both ends is priced once and counted in both (a request
    touches a few of a price's combinations; the rest are priced once instead of twice). Sums are exact at
    the engine's precision, so the order of addition does not change them. With tiers across the metric
    a change moves the later combinations' place on the axis: both ends are priced in full.
    """
    if spec.__class__ is not DimensionalSpec:
        raise PricingError(f"dimensional_amounts() needs a DimensionalSpec, got {type(spec).__name__}")
    if spec.tier_scope is TierScope.METRIC:
        return rate_dimensional(spec, before).amount, rate_dimensional(spec, after).amount
    quantities_before, other_before, _ = _quantities(spec, before)
    quantities_after, other_after, _ = _quantities(spec, after)
    amount_before = amount_after = _ZERO
    for combination, quantity_before, quantity_after in zip(
        spec.combinations, quantities_before, quantities_after, strict=True
    ):
        if quantity_before == quantity_after:
            if quantity_before:
                same = rate(combination.spec, quantity_before).amount
                amount_before, amount_after = CTX.add(amount_before, same), CTX.add(amount_after, same)
            continue
        if quantity_before:
            amount_before = CTX.add(amount_before, rate(combination.spec, quantity_before).amount)
        if quantity_after:
            amount_after = CTX.add(amount_after, rate(combination.spec, quantity_after).amount)
    if spec.default is not None:  # refused values are shown unpriced: no amount
        if other_before:
            amount_before = CTX.add(amount_before, rate(spec.default, other_before).amount)
        if other_after:
            amount_after = CTX.add(amount_after, rate(spec.default, other_after).amount)
    return amount_before, amount_after


def _sort_key(values: Values) -> tuple:
    return tuple((value is not None, value or "") for value in values)


# -- METRIC scope ----------------------------------------------------------------------------------


def _rate_interval(spec: PriceSpec, start: Decimal, quantity: Decimal, metric_total: Decimal) -> RatingResult:
    """Price the units ``(start, start + quantity]`` of the metric's cumulative axis at ``spec``'s rates.

    Standard, package and graduated: the increment ``rate(spec, start + quantity) - rate(spec, start)``,
    explained as the tiers (or packages) those units occupy; free units are the first units of the axis.
    Volume: every unit at the rate of ``spec``'s tier that the metric's total reaches; that tier's flat
    fee is charged by the combination holding the last unit of the axis.
    """
    end = CTX.add(start, quantity)
    currency, unit = spec.currency, spec.unit_name
    lines: tuple[ExplanationLine, ...] = ()
    free = spec.free_units
    if free:
        low, high = max(CTX.subtract(start, free), _ZERO), max(CTX.subtract(end, free), _ZERO)
        waived = CTX.subtract(quantity, CTX.subtract(high, low))
        lines = (ExplanationLine(LineKind.FREE_ALLOWANCE, _ZERO, currency, unit, waived, upper=free),)
    else:
        low, high = start, end
    billable = CTX.subtract(high, low)
    model = spec.model
    amount = _ZERO
    if model is PricingModel.GRADUATED:
        table = spec.table
        for number, (lower, price) in enumerate(zip(table.lowers, table.prices, strict=True), start=1):
            upper = table.uppers[number - 1] if number <= len(table.uppers) else None
            if upper is not None and upper <= low:
                continue
            if lower >= high:
                break
            a, b = max(low, lower), high if upper is None else min(high, upper)
            units = CTX.subtract(b, a)
            charge = CTX.multiply(units, price)
            lines += (ExplanationLine(LineKind.TIER, charge, currency, unit, units, price, a, b, number),)
            amount = CTX.add(amount, charge)
            flat = table.flat_lines[number - 1]
            if flat is not None and low <= lower < high:
                lines += (flat,)
                amount = CTX.add(amount, flat.amount)
    elif model is PricingModel.VOLUME:
        table = spec.table
        tier = table.index(metric_total)
        price = table.prices[tier]
        amount = CTX.multiply(billable, price)
        upper = table.uppers[tier] if tier < len(table.uppers) else None
        lines += (
            ExplanationLine(
                LineKind.VOLUME_TIER,
                amount,
                currency,
                unit,
                billable,
                price,
                table.lowers[tier],
                upper,
                tier + 1,
                note=f"tier reached by the metric's total {format_quantity(metric_total)}",
            ),
        )
        flat = table.flat_lines[tier]
        if flat is not None and end == metric_total and billable:
            lines += (flat,)
            amount = CTX.add(amount, flat.amount)
    elif spec.package_size is None:  # standard per unit
        amount = CTX.multiply(billable, spec.unit_price)
        lines += (ExplanationLine(LineKind.UNIT, amount, currency, unit, billable, spec.unit_price),)
    else:  # packages: the increment of the package count between the two positions
        size = spec.package_size
        if spec.package_rounding is PackageRounding.EXACT:
            packages = CTX.divide(billable, size)
            amount = CTX.divide(CTX.multiply(billable, spec.unit_price), size)
        else:
            packages = CTX.subtract(_whole_packages(spec, high), _whole_packages(spec, low))
            amount = CTX.multiply(packages, spec.unit_price)
        lines += (
            ExplanationLine(
                LineKind.PACKAGE,
                amount,
                currency,
                unit,
                packages,
                spec.unit_price,
                package_size=size,
                units=billable,
            ),
        )
    if spec.rate_per != 1:
        lines = tuple(
            replace(line, rate_per=spec.rate_per)
            if line.kind in (LineKind.UNIT, LineKind.TIER, LineKind.VOLUME_TIER)
            else line
            for line in lines
        )
    return RatingResult(spec.price_id, spec.name, currency, unit, quantity, billable, amount, lines)


def _whole_packages(spec: PriceSpec, units: Decimal) -> Decimal:
    whole, remainder = CTX.divmod(units, spec.package_size)
    if remainder and spec.package_rounding is PackageRounding.UP:
        whole = CTX.add(whole, Decimal(1))
    return whole


# -- validation ------------------------------------------------------------------------------------


def _validate(spec: DimensionalSpec) -> None:
    if not isinstance(spec.dimensions, tuple):
        object.__setattr__(spec, "dimensions", tuple(spec.dimensions))
    if not isinstance(spec.combinations, tuple):
        object.__setattr__(spec, "combinations", tuple(spec.combinations))
    try:
        object.__setattr__(spec, "tier_scope", TierScope(spec.tier_scope))
    except ValueError:
        raise spec.error(f"tierScope must be 'combination' or 'metric', got {spec.tier_scope!r}") from None
    dimensions = spec.dimensions
    if not dimensions:
        raise spec.error("A dimensional price needs at least one dimension (an event property key)")
    if len(dimensions) > MAX_DIMENSIONS:
        raise spec.error(f"A price has at most {MAX_DIMENSIONS} dimensions, got {len(dimensions)}")
    for key in dimensions:
        if not isinstance(key, str) or not _is_key(key):
            raise spec.error(
                f"Dimension {key!r} must be an event property key of letters, digits, '_' or '-' "
                f"(at most {MAX_KEY_LENGTH} characters)"
            )
    if len(set(dimensions)) != len(dimensions):
        raise spec.error("Each dimension may be listed once")
    if len(spec.combinations) > MAX_COMBINATIONS:
        raise spec.error(f"A price has at most {MAX_COMBINATIONS} combinations, got {len(spec.combinations)}")
    index: dict[tuple[str, ...], int] = {}
    for number, combination in enumerate(spec.combinations, start=1):
        if not isinstance(combination, Combination):
            raise spec.error(f"Combination {number} is not a Combination")
        values = combination.values
        if not isinstance(values, tuple) or len(values) != len(dimensions):
            raise spec.error(f"Combination {number} needs one value per dimension ({', '.join(dimensions)})")
        for value in values:
            if not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH:
                raise spec.error(
                    f"Combination {number}'s values must be non-empty text of at most {MAX_VALUE_LENGTH} characters"
                )
        if values in index:
            raise spec.error(f"Combination {number} repeats {spec.label(values)}")
        index[values] = number - 1
        _check_model(spec, combination.spec, f"Combination {number} ({spec.label(values)})")
    if spec.default is not None:
        _check_model(spec, spec.default, "The default rate")
    object.__setattr__(spec, "index", index)
    object.__setattr__(spec, "labels", tuple(spec.label(c.values) for c in spec.combinations))


_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _is_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(char in _KEY_CHARS for char in key)


def _check_model(spec: DimensionalSpec, model: PriceSpec, what: str) -> None:
    if not isinstance(model, PriceSpec):
        raise spec.error(f"{what} is not a PriceSpec")
    if model.model not in DIMENSIONAL_MODELS:
        raise spec.error(f"{what}: combinations are standard, graduated, volume or package, not {model.model.value}")
    if model.currency != spec.currency:
        raise spec.error(f"{what} is in {model.currency}, the price in {spec.currency}")
    if model.allow_rebates or model.usage_discount_units or model.discount_percent or model.minimum_amount is not None:
        raise spec.error(f"{what}: a combination carries rates and free units only (no rebates, discounts or minimum)")
    if spec.tier_scope is TierScope.METRIC and model.model is PricingModel.VOLUME and model.free_units:
        raise spec.error(
            f"{what}: free units of a volume rate are per combination; with tiers across the metric leave them at 0"
        )


# -- the JSON form (catalog storage and API) -------------------------------------------------------


def parse_dimensional(
    data: Mapping,
    *,
    price_id: str,
    name: str,
    currency: str,
    unit_name: str = "units",
    default: PriceSpec | None = None,
    rate_per: int = 1,
) -> DimensionalSpec:
    """Build a spec from its JSON form; raises ``InvalidPriceError`` with a message naming the field.

    ``{"dimensions": ["model"], "tierScope": "combination", "unmatched": "default",
    "rates": [{"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001",
    "freeUnits": "0"}, {"values": {"model": "nle-large"}, "model": "graduated",
    "tiers": [{"upTo": "1000000", "unitPrice": "0.000004", "flatFee": "0"}, {"upTo": null, "unitPrice": "0.000003"}]}]}``

    ``default`` is the model that prices unmatched values when ``unmatched`` is ``default`` (the catalog
    passes the price's own model); with ``refuse`` it is ignored.
    """

    def fail(message: str) -> InvalidPriceError:
        return InvalidPriceError(message, price_id=price_id, name=name)

    if not isinstance(data, Mapping):
        raise fail("Dimensional rates must be an object with dimensions and rates")
    unknown = set(data) - {"dimensions", "tierScope", "unmatched", "rates"}
    if unknown:
        raise fail(f"Unknown dimensional setting(s): {', '.join(sorted(map(str, unknown)))}")
    dimensions = data.get("dimensions")
    if not isinstance(dimensions, list) or not all(isinstance(key, str) for key in dimensions):
        raise fail('dimensions must be a list of event property keys, e.g. ["model", "region"]')
    unmatched = data.get("unmatched", Unmatched.DEFAULT.value)
    if unmatched not in (Unmatched.DEFAULT.value, Unmatched.REFUSE.value):
        raise fail(f"unmatched must be 'default' or 'refuse', got {unmatched!r}")
    rates = data.get("rates")
    if not isinstance(rates, list):
        raise fail("rates must be a list of combinations")
    if len(rates) > MAX_COMBINATIONS:
        raise fail(f"A price has at most {MAX_COMBINATIONS} combinations, got {len(rates)}")
    combinations = []
    for number, item in enumerate(rates, start=1):
        if not isinstance(item, Mapping):
            raise fail(f"Rate {number} must be an object")
        values = item.get("values")
        if not isinstance(values, Mapping) or set(values) != set(dimensions):
            raise fail(f"Rate {number}'s values must give exactly the dimensions {', '.join(map(str, dimensions))}")
        key = tuple(values[dimension] for dimension in dimensions)
        label = ", ".join(f"{d}={v}" for d, v in zip(dimensions, key, strict=True))
        combo_spec = _combination_spec(
            item,
            number,
            fail,
            price_id=price_id,
            name=f"{name} ({label})",
            currency=currency,
            unit_name=unit_name,
            rate_per=rate_per,
        )
        combinations.append(Combination(values=key, spec=combo_spec))
    if unmatched == Unmatched.DEFAULT.value and default is None:
        raise fail("unmatched 'default' needs a default rate")
    return DimensionalSpec(
        price_id=price_id,
        name=name,
        currency=currency,
        unit_name=unit_name,
        dimensions=tuple(dimensions),
        combinations=tuple(combinations),
        default=default if unmatched == Unmatched.DEFAULT.value else None,
        tier_scope=data.get("tierScope", TierScope.COMBINATION.value),
    )


_RATE_KEYS = frozenset({"values", "model", "unitPrice", "packageSize", "packageRounding", "tiers", "freeUnits"})


def _decimal(value: object, what: str, fail) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise fail(f'{what} must be a decimal string such as "0.002"')
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        raise fail(f'{what} must be a decimal string such as "0.002", got {value!r}') from None
    if not within_bound(number):
        raise fail(f"{what} {value!r} is not a finite number within Meterline's bound")
    return number


def _combination_spec(item: Mapping, number: int, fail, *, rate_per: int, **common) -> PriceSpec:
    unknown = set(item) - _RATE_KEYS
    if unknown:
        raise fail(f"Rate {number}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    model = item.get("model")
    if model not in {m.value for m in DIMENSIONAL_MODELS}:
        raise fail(f"Rate {number}'s model must be standard, graduated, volume or package, got {model!r}")
    fields: dict = {"model": PricingModel(model)}
    if "freeUnits" in item:
        fields["free_units"] = _decimal(item["freeUnits"], f"Rate {number}'s freeUnits", fail)
    if model in ("standard", "package"):
        if "unitPrice" not in item:
            raise fail(f"Rate {number} ({model}) needs unitPrice")
        fields["unit_price"] = _decimal(item["unitPrice"], f"Rate {number}'s unitPrice", fail)
        if "packageSize" in item:
            fields["package_size"] = _decimal(item["packageSize"], f"Rate {number}'s packageSize", fail)
        if "packageRounding" in item:
            fields["package_rounding"] = item["packageRounding"]
        if model == "standard" and "packageSize" not in item and rate_per != 1:
            fields["rate_per"] = rate_per
    else:
        tiers = item.get("tiers")
        if not isinstance(tiers, Sequence) or isinstance(tiers, str) or not tiers:
            raise fail(f'Rate {number} ({model}) needs tiers: [{{"upTo": "1000", "unitPrice": "0.002"}}, …]')
        parsed = []
        for position, tier in enumerate(tiers, start=1):
            if not isinstance(tier, Mapping) or set(tier) - {"upTo", "unitPrice", "flatFee"} or "unitPrice" not in tier:
                raise fail(f"Rate {number}, tier {position} needs unitPrice and optionally upTo and flatFee")
            up_to = tier.get("upTo")
            parsed.append(
                Tier(
                    up_to=None if up_to is None else _decimal(up_to, f"Rate {number}, tier {position}'s upTo", fail),
                    unit_price=_decimal(tier["unitPrice"], f"Rate {number}, tier {position}'s unitPrice", fail),
                    flat_fee=_decimal(tier.get("flatFee", "0"), f"Rate {number}, tier {position}'s flatFee", fail),
                )
            )
        fields["tiers"] = tuple(parsed)
        if rate_per != 1:
            fields["rate_per"] = rate_per
    try:
        return PriceSpec(**common, **fields)
    except PricingError as error:
        raise fail(f"Rate {number}: {error.detail}") from None

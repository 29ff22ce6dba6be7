"""The price specification: what the catalog stores about one price, validated once at construction."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .currency import CTX, is_known_currency
from .errors import InvalidPriceError, InvalidTierTableError, PricingError
from .tiers import TierTable, compile_tiers, validate_tiers
from .types import DynamicMode, PackageRounding, PricingModel, RateChange, Tier

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_MAX_PERCENTAGE_RATE = Decimal(10)

_TIERED = frozenset({PricingModel.GRADUATED, PricingModel.VOLUME})
_PERCENTAGE_FIELDS = (
    "percentage_rate",
    "fixed_fee",
    "event_min_charge",
    "event_max_charge",
    "period_min_charge",
    "period_max_charge",
)
_DYNAMIC_FIELDS = ("dynamic_mode", "min_unit_price", "max_unit_price")
# How many units a rate is printed for ("$0.002 per 1K tokens"); rates themselves stay per unit.
RATE_SCALES = frozenset({1, 1_000, 1_000_000})


@dataclass(frozen=True, slots=True)
class Schedule:
    """A dynamic rate schedule split into parallel tuples for bisection."""

    starts: tuple[datetime, ...]
    prices: tuple[Decimal, ...]

    def index_at(self, moment: datetime) -> int:
        """Return the index of the rate in force at ``moment``, or -1 before the first change."""
        return bisect_right(self.starts, moment) - 1


@dataclass(frozen=True, slots=True)
class PriceSpec:
    """One price of the catalog, as plain data.

    Fields used by each model (the others must stay at their defaults; the engine never guesses
    which of two contradicting settings was meant):

    - standard: ``unit_price``; optional ``package_size`` (then ``unit_price`` is per package) with
      ``package_rounding`` (default EXACT); ``allow_rebates`` permits negative quantities and prices.
    - graduated, volume: ``tiers``.
    - package: ``unit_price`` (per package), ``package_size``, ``package_rounding`` UP (default) or DOWN.
    - percentage: ``percentage_rate`` (fraction, 0.029 = 2.9%), optional ``fixed_fee`` per event,
      ``event_min_charge``/``event_max_charge``, ``period_min_charge``/``period_max_charge``.
    - dynamic: ``dynamic_mode``; ``rate_schedule`` in schedule mode; optional
      ``min_unit_price``/``max_unit_price`` clamps.

    ``rate_per`` (1, 1,000 or 1,000,000) only changes how explanations print per-unit rates ("$0.002 per
    1K" instead of "$0.000002"); the arithmetic is the same. Standard prices without a package size,
    graduated, volume and dynamic prices accept it.

    Every metered model except percentage accepts ``usage_discount_units`` and ``free_units``; every
    model accepts ``discount_percent`` (0-100) and ``minimum_amount``. Construction validates the spec
    and precomputes its tier table, raising :class:`PricingError` subclasses that name the price.
    """

    price_id: str
    name: str
    model: PricingModel
    currency: str
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_rounding: PackageRounding | None = None
    percentage_rate: Decimal | None = None
    fixed_fee: Decimal | None = None
    event_min_charge: Decimal | None = None
    event_max_charge: Decimal | None = None
    period_min_charge: Decimal | None = None
    period_max_charge: Decimal | None = None
    dynamic_mode: DynamicMode | None = None
    rate_schedule: tuple[RateChange, ...] = ()
    min_unit_price: Decimal | None = None
    max_unit_price: Decimal | None = None
    free_units: Decimal = _ZERO
    usage_discount_units: Decimal | None = None
    discount_percent: Decimal | None = None
    minimum_amount: Decimal | None = None
    allow_rebates: bool = False
    unit_name: str = "units"
    rate_per: int = 1
    table: TierTable | None = field(init=False, repr=False, compare=False, default=None)
    schedule: Schedule | None = field(init=False, repr=False, compare=False, default=None)
    discount_factor: Decimal | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        _validate(self)

    def error(self, message: str, kind: type[PricingError] = InvalidPriceError) -> PricingError:
        """Build an error of ``kind`` that names this price."""
        return kind(message, price_id=self.price_id, name=self.name)


def _set(spec: PriceSpec, name: str, value: object) -> None:
    object.__setattr__(spec, name, value)


def _money_field(spec: PriceSpec, name: str, *, negative_ok: bool = False) -> Decimal | None:
    value = getattr(spec, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise spec.error(f"{name} must be a Decimal, got {type(value).__name__}")
    if isinstance(value, int):
        value = Decimal(value)
        _set(spec, name, value)
    if not value.is_finite():
        raise spec.error(f"{name} must be a finite number, got {value}")
    if value < 0 and not negative_ok:
        raise spec.error(f"{name} cannot be negative, got {value}")
    return value


def _require(spec: PriceSpec, *names: str) -> None:
    for name in names:
        if getattr(spec, name) is None:
            raise spec.error(f"{spec.model.value} prices need {name}")


def _forbid(spec: PriceSpec, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if value is not None and value != () and value is not False:
            raise spec.error(f"{name} does not apply to {spec.model.value} prices")


def _validate(spec: PriceSpec) -> None:
    try:
        model = PricingModel(spec.model)
    except ValueError:
        raise spec.error(f"Unknown pricing model {spec.model!r}") from None
    _set(spec, "model", model)
    if not isinstance(spec.currency, str) or not is_known_currency(spec.currency):
        raise spec.error(f"Unknown currency code {spec.currency!r}")
    if not isinstance(spec.tiers, tuple):
        _set(spec, "tiers", tuple(spec.tiers))
    if not isinstance(spec.rate_schedule, tuple):
        _set(spec, "rate_schedule", tuple(spec.rate_schedule))

    rebates = spec.allow_rebates
    if rebates and model is not PricingModel.STANDARD:
        raise spec.error("Rebates (negative quantities or prices) are only allowed on standard prices")
    _money_field(spec, "unit_price", negative_ok=rebates)
    package_size = _money_field(spec, "package_size")
    if package_size is not None and package_size == 0:
        raise spec.error("package_size must be greater than 0")
    for name in (*_PERCENTAGE_FIELDS, "min_unit_price", "max_unit_price", "minimum_amount"):
        _money_field(spec, name)
    free_units = _money_field(spec, "free_units")
    _money_field(spec, "usage_discount_units")
    discount = _money_field(spec, "discount_percent")
    if discount is not None:
        if discount > _HUNDRED:
            raise spec.error(f"discount_percent must be between 0 and 100, got {discount}")
        _set(spec, "discount_factor", discount.scaleb(-2, CTX) if discount else None)
    if isinstance(spec.rate_per, bool) or spec.rate_per not in RATE_SCALES:
        raise spec.error(f"rate_per must be 1, 1000 or 1000000, got {spec.rate_per!r}")
    per_unit_rates = model in _TIERED or model is PricingModel.DYNAMIC
    per_unit_rates = per_unit_rates or (model is PricingModel.STANDARD and package_size is None)
    if spec.rate_per != 1 and not per_unit_rates:
        raise spec.error(f"rate_per applies to per-unit rates, not to {model.value} prices with a package")
    if spec.package_rounding is not None:
        try:
            _set(spec, "package_rounding", PackageRounding(spec.package_rounding))
        except ValueError:
            raise spec.error(f"Unknown package rounding {spec.package_rounding!r}") from None

    if model is not PricingModel.PERCENTAGE:
        _forbid(spec, *_PERCENTAGE_FIELDS)
    if model is not PricingModel.DYNAMIC:
        _forbid(spec, *_DYNAMIC_FIELDS, "rate_schedule")
    if model not in _TIERED:
        _forbid(spec, "tiers")

    if model is PricingModel.STANDARD:
        _require(spec, "unit_price")
        if package_size is None:
            _forbid(spec, "package_rounding")
        elif spec.package_rounding is None:
            _set(spec, "package_rounding", PackageRounding.EXACT)
    elif model in _TIERED:
        _forbid(spec, "unit_price", "package_size", "package_rounding")
        messages = validate_tiers(spec.tiers)
        if messages:
            raise InvalidTierTableError(messages, price_id=spec.price_id, name=spec.name)
        _set(spec, "table", compile_tiers(spec.tiers, spec.currency, spec.unit_name))
    elif model is PricingModel.PACKAGE:
        _require(spec, "unit_price", "package_size")
        if spec.package_rounding is None:
            _set(spec, "package_rounding", PackageRounding.UP)
        elif spec.package_rounding is PackageRounding.EXACT:
            raise spec.error("package prices bill whole packages; use a standard price with a package size")
    elif model is PricingModel.PERCENTAGE:
        _forbid(spec, "unit_price", "package_size", "package_rounding", "usage_discount_units")
        if free_units:
            raise spec.error("free_units counts units; percentage prices have a money-valued quantity")
        _require(spec, "percentage_rate")
        if spec.percentage_rate > _MAX_PERCENTAGE_RATE:
            raise spec.error(f"percentage_rate is a fraction between 0 and 10, got {spec.percentage_rate}")
        _check_range(spec, "event_min_charge", "event_max_charge")
        _check_range(spec, "period_min_charge", "period_max_charge")
    elif model is PricingModel.DYNAMIC:
        _forbid(spec, "unit_price", "package_size", "package_rounding")
        _validate_dynamic(spec)


def _check_range(spec: PriceSpec, low: str, high: str) -> None:
    low_value, high_value = getattr(spec, low), getattr(spec, high)
    if low_value is not None and high_value is not None and low_value > high_value:
        raise spec.error(f"{low} ({low_value}) is above {high} ({high_value})")


def _validate_dynamic(spec: PriceSpec) -> None:
    try:
        mode = DynamicMode(spec.dynamic_mode)
    except ValueError:
        raise spec.error(
            f"dynamic prices need dynamic_mode 'schedule' or 'event_price', got {spec.dynamic_mode!r}"
        ) from None
    _set(spec, "dynamic_mode", mode)
    _check_range(spec, "min_unit_price", "max_unit_price")
    if mode is DynamicMode.EVENT_PRICE:
        _forbid(spec, "rate_schedule")
        return
    if not spec.rate_schedule:
        raise spec.error("schedule-mode dynamic prices need a rate_schedule")
    starts: list[datetime] = []
    prices: list[Decimal] = []
    for number, change in enumerate(spec.rate_schedule, start=1):
        if isinstance(change, tuple):
            change = RateChange(*change)
        if not isinstance(change, RateChange) or not isinstance(change.effective_from, datetime):
            raise spec.error(f"Rate schedule entry {number} must be a RateChange(effective_from, unit_price)")
        price = change.unit_price
        if isinstance(price, bool) or not isinstance(price, (Decimal, int)) or not Decimal(price).is_finite():
            raise spec.error(f"Rate schedule entry {number}'s unit price must be a Decimal")
        if price < 0:
            raise spec.error(f"Rate schedule entry {number}'s unit price cannot be negative")
        try:
            if starts and change.effective_from <= starts[-1]:
                raise spec.error(
                    f"Rate schedule entry {number} must take effect after entry {number - 1} ({starts[-1].isoformat()})"
                )
        except TypeError:
            raise spec.error("Rate schedule mixes timezone-aware and naive datetimes") from None
        starts.append(change.effective_from)
        prices.append(Decimal(price))
    _set(spec, "schedule", Schedule(starts=tuple(starts), prices=tuple(prices)))

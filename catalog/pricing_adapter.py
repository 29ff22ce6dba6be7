"""Turn catalog Price rows into the rating engine's plain ``PriceSpec`` (the only ORM ↔ engine seam).

Invoicing, real-time debits and the admin's price simulator all rate through here, so the three
never disagree. Only the fields that belong to the price's model are passed on: the engine refuses
settings that do not apply rather than guessing which one was meant.
"""

from __future__ import annotations

import functools
from decimal import Decimal

import orjson

from .models import Price, PriceModel
from .pricing import (
    DimensionalSpec,
    DynamicMode,
    PackageRounding,
    PriceSpec,
    PricingError,
    PricingModel,
    RateChange,
    Tier,
    parse_dimensional,
)

_SPEC_CACHE_ATTR = "_pricing_spec_cache"


def _instance_cache(price: Price) -> dict:
    """What this module derived from ``price``, kept on the instance (a request's prices are read once)."""
    cache = getattr(price, _SPEC_CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(price, _SPEC_CACHE_ATTR, cache)
    return cache


def price_spec_from_price(price: Price, *, currency: str | None = None) -> PriceSpec:
    """The engine spec of ``price`` in ``currency`` (default: its plan's), cached on the instance.

    Tiers and dynamic rates are read through ``price.tiers.all()`` / ``price.dynamic_rates.all()``, so
    prefetch them (``catalog.selectors.prices_for_subscriptions`` does) to keep queries constant.
    Raises ``PricingError`` naming the price when the stored price is inconsistent.
    """
    currency = currency or price.plan.currency
    cache = _instance_cache(price)
    if currency not in cache:
        cache[currency] = _build_spec(price, currency)
    return cache[currency]


def price_dimensional_spec(price: Price, *, currency: str | None = None) -> DimensionalSpec | None:
    """The engine's dimensional spec of ``price`` (None without rates per event property), cached on the
    instance like ``price_spec_from_price``; the price's own model is the default rate for unmatched values."""
    if price.dimensional_rates is None:
        return None
    currency = currency or price.plan.currency
    cache = _instance_cache(price)
    key = ("dimensional", currency)
    if key not in cache:
        default = price_spec_from_price(price, currency=currency)
        rates = orjson.dumps(price.dimensional_rates, option=orjson.OPT_SORT_KEYS)
        cache[key] = _dimensional_spec_parsed(rates, default)
    return cache[key]


@functools.lru_cache(maxsize=512)
def _dimensional_spec_parsed(rates: bytes, default: PriceSpec) -> DimensionalSpec:
    """``parse_dimensional`` of the stored rates (their JSON text) over the price's own spec, kept per
    process: real-time requests read their prices afresh each time, and parsing and validating a
    20-combination price cost more than rating it twice. The key is everything the result depends on
    (the rates as stored, and the default spec, which carries the price's id, name, currency, unit and
    scale), so an edited price is parsed again; both are immutable."""
    return parse_dimensional(
        orjson.loads(rates),
        price_id=default.price_id,
        name=default.name,
        currency=default.currency,
        unit_name=default.unit_name,
        default=default,
        rate_per=default.rate_per,
    )


def dimension_paths(price: Price) -> tuple[str, ...]:
    """Where each dimension of ``price`` sits in the event data: the metric's group-by path of that name
    when it defines one, else ``$.<key>``."""
    cache = _instance_cache(price)
    keys = tuple((price.dimensional_rates or {}).get("dimensions") or ())
    if ("paths", keys) not in cache:  # asked once per event and price on the real-time path
        group_by = price.billable_metric.group_by if price.billable_metric_id else {}
        group_by = group_by if isinstance(group_by, dict) else {}
        cache["paths", keys] = tuple(
            group_by.get(key) if isinstance(group_by.get(key), str) else f"$.{key}" for key in keys
        )
    return cache["paths", keys]


def _build_spec(price: Price, currency: str) -> PriceSpec:
    model = price.model
    metered = price.billable_metric_id is not None
    fields: dict = {
        "price_id": price.pk or "unsaved",
        "name": price.invoice_display_name or "Unnamed price",
        "model": PricingModel(model),
        "currency": currency,
        "unit_name": price.billable_metric.unit if metered else "unit",
        "discount_percent": price.discount_percent,
        "minimum_amount": price.minimum_commitment,
    }
    rate_per = price.rate_per or 1
    per_unit_rates = model in (PriceModel.GRADUATED, PriceModel.VOLUME, PriceModel.DYNAMIC) or (
        model == PriceModel.STANDARD and not price.package_size
    )
    if rate_per != 1 and metered and per_unit_rates:
        fields["rate_per"] = rate_per  # how explanations print the per-unit rates; the arithmetic is unchanged
    if metered and model != PriceModel.PERCENTAGE:
        fields["free_units"] = price.free_units or Decimal(0)
        fields["usage_discount_units"] = price.usage_discount_units
    if model == PriceModel.STANDARD:
        fields["unit_price"] = price.unit_price
        fields["allow_rebates"] = bool(price.allows_rebate and metered)
        if price.package_size:
            fields["package_size"] = price.package_size
            fields["package_rounding"] = PackageRounding(price.package_rounding)
    elif model == PriceModel.PACKAGE:
        fields["unit_price"] = price.unit_price
        fields["package_size"] = price.package_size
        fields["package_rounding"] = (
            PackageRounding.DOWN if price.package_rounding == PackageRounding.DOWN else PackageRounding.UP
        )
    elif model in (PriceModel.GRADUATED, PriceModel.VOLUME):
        fields["tiers"] = tuple(
            Tier(up_to=tier.up_to, unit_price=tier.unit_price, flat_fee=tier.flat_fee or Decimal(0))
            for tier in _ordered_tiers(price)
        )
    elif model == PriceModel.PERCENTAGE:
        fields.update(
            percentage_rate=price.percentage_rate,
            fixed_fee=price.fixed_fee_per_event,
            event_min_charge=price.min_charge_per_event,
            event_max_charge=price.max_charge_per_event,
            period_min_charge=price.min_charge_per_period,
            period_max_charge=price.max_charge_per_period,
        )
    elif model == PriceModel.DYNAMIC:
        fields.update(
            dynamic_mode=DynamicMode(price.dynamic_mode) if price.dynamic_mode else None,
            min_unit_price=price.min_unit_price,
            max_unit_price=price.max_unit_price,
        )
        if price.dynamic_mode == DynamicMode.SCHEDULE:
            fields["rate_schedule"] = tuple(
                RateChange(effective_from=rate.effective_from, unit_price=rate.unit_price)
                for rate in sorted(price.dynamic_rates.all(), key=lambda r: r.effective_from)
            )
    else:
        raise PricingError(f"Price '{fields['name']}' ({fields['price_id']}): unknown pricing model {model!r}")
    return PriceSpec(**fields)


def _ordered_tiers(price: Price) -> list:
    # Open-ended tier last; the prefetch cache keeps Meta.ordering, but unsaved inline rows may not.
    return sorted(price.tiers.all(), key=lambda t: (t.up_to is None, t.up_to or 0))

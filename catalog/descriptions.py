"""Plain-language descriptions of catalog rows for people (admin columns, command output)."""

from __future__ import annotations

from decimal import Decimal

from .models import Price, PriceModel
from .pricing.currency import is_known_currency
from .pricing.explain import format_rate, scale_name


def format_number(value: Decimal | None) -> str:
    """A Decimal as finance writes it: 10,000,000 and 0.000002, never 1E+7."""
    if value is None:
        return ""
    return f"{value.normalize():,f}"


def price_rate(price: Price, unit_price: Decimal | None, *, per_unit: bool = True) -> str:
    """A rate of ``price`` in its plan's currency and scale: ``$0.002 per 1K`` (stored as 0.000002).

    ``per_unit=False`` for amounts that are not per unit (a fee, a package price): no scale applies.
    """
    if unit_price is None:
        return "not set"
    rate_per = (price.rate_per or 1) if per_unit and price.billable_metric_id else 1
    currency = price.currency
    if currency and is_known_currency(currency):
        return format_rate(unit_price, currency, rate_per)
    if rate_per == 1:
        return format_number(unit_price)
    return f"{format_number(unit_price * rate_per)} per {scale_name(rate_per)}"


def price_rate_summary(price: Price) -> str:
    """One line saying what the price charges; reads ``price.tiers.all()`` (prefetch it)."""
    unit = price.billable_metric.unit if price.billable_metric_id else ""
    model = price.model
    if model == PriceModel.STANDARD and price.package_size and unit:
        text = (
            f"{unit} at {price_rate(price, price.unit_price, per_unit=False)} per {format_number(price.package_size)}"
        )
    elif model == PriceModel.STANDARD:
        rate = price_rate(price, price.unit_price)
        each = " each" if price.rate_per == 1 else ""
        text = f"{unit} at {rate}{each}" if unit else rate
        if price.fee_id:
            text += f" × {price.quantity}" if price.quantity != 1 else ""
    elif model == PriceModel.PACKAGE:
        text = (
            f"{unit} at {price_rate(price, price.unit_price, per_unit=False)} per {format_number(price.package_size)}"
        )
    elif model in (PriceModel.GRADUATED, PriceModel.VOLUME):
        bands = [
            f"{'up to ' + format_number(t.up_to) if t.up_to is not None else 'above'} @ {price_rate(price, t.unit_price)}"
            for t in price.tiers.all()
        ]
        text = f"{price.get_model_display()}: " + ("; ".join(bands) or "no tiers yet")
    elif model == PriceModel.PERCENTAGE:
        rate = price.percentage_rate
        text = f"{format_number(rate * 100)} % of amount" if rate is not None else "percentage not set"
    else:
        text = f"dynamic ({price.get_dynamic_mode_display() or 'mode not set'})"
    if price.free_units:
        text += f", first {format_number(price.free_units)} free"
    if price.discount_percent:
        text += f", {format_number(price.discount_percent)} % off"
    return text

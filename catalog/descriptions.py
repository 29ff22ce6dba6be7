"""Plain-language descriptions of catalog rows for people (admin columns, command output)."""

from __future__ import annotations

from decimal import Decimal

from .models import Price, PriceModel


def format_number(value: Decimal | None) -> str:
    """A Decimal as finance writes it: 10,000,000 and 0.000002, never 1E+7."""
    if value is None:
        return ""
    return f"{value.normalize():,f}"


def price_rate_summary(price: Price) -> str:
    """One line saying what the price charges; reads ``price.tiers.all()`` (prefetch it)."""
    unit = price.billable_metric.unit if price.billable_metric_id else ""
    model = price.model
    if model == PriceModel.STANDARD:
        text = f"{unit} at {format_number(price.unit_price)} each" if unit else f"{format_number(price.unit_price)}"
        if price.fee_id:
            text += f" × {price.quantity}" if price.quantity != 1 else ""
    elif model == PriceModel.PACKAGE:
        text = f"{unit} at {format_number(price.unit_price)} per {format_number(price.package_size)}"
    elif model in (PriceModel.GRADUATED, PriceModel.VOLUME):
        bands = [
            f"{'up to ' + format_number(t.up_to) if t.up_to is not None else 'above'} @ {format_number(t.unit_price)}"
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

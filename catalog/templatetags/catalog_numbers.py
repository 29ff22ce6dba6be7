"""Template filters for numbers people read on catalog pages (the price simulator)."""

from decimal import Decimal

from django import template

from catalog.descriptions import format_number
from catalog.pricing.currency import format_money

register = template.Library()


@register.filter
def money(amount, currency):
    """An amount in its currency, e.g. $1,234.50 (never rounded here: the simulator rounds first)."""
    if amount is None or amount == "":
        return ""
    return format_money(Decimal(amount), currency)


@register.filter
def number(value):
    """A decimal as finance writes it: 10,000 and 0.000002, never 1E+4 or 0E-12."""
    if value is None or value == "":
        return ""
    return format_number(Decimal(value))

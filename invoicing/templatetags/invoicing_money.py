from decimal import Decimal

from django import template

from catalog.pricing import round_money
from catalog.pricing.currency import format_money, format_quantity

register = template.Library()


@register.filter
def money(amount, currency):
    """An amount already rounded to the currency's minor unit, printed with its symbol: $1,234.50."""
    if amount is None:
        return ""
    return format_money(round_money(Decimal(amount), currency), currency)


@register.filter
def quantity(value):
    if value is None:
        return ""
    return format_quantity(Decimal(value))

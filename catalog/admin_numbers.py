"""How the admin shows and takes numbers: normalized decimals and money in its currency.

Rates and quantities are stored with 12 decimal places, so Django's defaults print ``0E-12`` or
``1000000.000000000000`` in inputs and ``59.5000`` in read-only fields. One mechanism each, used
by every admin of every app (invoicing and wallets import it; imports point down):

- inputs: ``DECIMAL_FORMFIELD_OVERRIDES`` (``formfield_overrides`` of an admin or inline) makes each
  ``models.DecimalField`` a :class:`NormalizedDecimalField`, whose input shows ``1000000`` and ``0``;
- columns and read-only fields: :func:`number_display` (``1,000,000``) and :func:`money_display`
  (``$1,000,000.00``, in the row's currency), which reuse ``format_number`` and ``format_money``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db import models

from .api.fields import decimal_string
from .descriptions import format_number
from .pricing.currency import format_money
from .pricing.errors import UnknownCurrencyError


class NormalizedDecimalField(forms.DecimalField):
    """A DecimalField whose input shows the stored value without trailing zeros or exponent."""

    def prepare_value(self, value):
        if isinstance(value, Decimal) and value.is_finite():
            return decimal_string(value)
        return super().prepare_value(value)


DECIMAL_FORMFIELD_OVERRIDES = {models.DecimalField: {"form_class": NormalizedDecimalField}}


def _attribute(obj, path: str):
    for name in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, name)
    return obj


def number_display(field: str, description: str, *, suffix: str = "") -> Callable:
    """An admin display method showing ``field`` as finance writes it: 1,000,000 and 0.000002."""

    @admin.display(description=description, ordering=field)
    def display(model_admin, obj) -> str:
        value = getattr(obj, field)
        return "—" if value is None else f"{format_number(value)}{suffix}"

    return display


def money_display(field: str, description: str, *, currency: str = "currency") -> Callable:
    """An admin display method showing ``field`` in the currency found at ``currency`` (a dotted path)."""

    @admin.display(description=description, ordering=field)
    def display(model_admin, obj) -> str:
        value = getattr(obj, field)
        if value is None:
            return "—"
        code = _attribute(obj, currency)
        try:
            return format_money(value, code)
        except UnknownCurrencyError:
            return f"{format_number(value)} {code or ''}".strip()

    return display

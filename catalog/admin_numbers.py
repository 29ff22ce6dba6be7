"""How the admin shows and takes numbers: normalized decimals and money in its currency.

Rates and quantities are stored with 12 decimal places, so Django's defaults print ``0E-12`` or
``1000000.000000000000`` in inputs and ``59.5000`` in read-only fields. One mechanism each, used
by every admin of every app (invoicing and wallets import it; imports point down):

- inputs: ``DECIMAL_FORMFIELD_OVERRIDES`` (``formfield_overrides`` of an admin or inline) makes each
  ``models.DecimalField`` a :class:`NormalizedDecimalField`, whose input shows ``1000000`` and ``0``;
- columns and read-only fields: :func:`number_display` (``1,000,000``) and :func:`money_display`
  (``$1,000,000.00``, in the row's currency), which reuse ``format_number`` and ``format_money``;
- every other place a decimal field is shown read-only (a column or read-only field naming the model
  field, a viewer's page, an inline): :class:`NormalizedNumbersAdminMixin`, which every billing admin has
  through ``MerchantScopedAdminMixin`` (and the schedule's through ``PlatformWideAdminMixin``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from core.formatting import decimal_string

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


def _money(value: Decimal, code: str | None) -> str:
    try:
        return format_money(value, code)
    except UnknownCurrencyError:
        return f"{format_number(value)} {code or ''}".strip()


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
        return _money(value, _attribute(obj, currency))

    return display


@functools.cache
def _shown_number(model: type[models.Model], name: str, currency: str | None) -> Callable:
    """The read-only display of decimal field ``name``: always the same callable, so membership tests hold."""
    field = model._meta.get_field(name)

    @admin.display(description=field.verbose_name, ordering=name)
    def shown(obj) -> str:
        value = getattr(obj, name)
        if value is None:
            return "—"
        return format_number(value) if currency is None else _money(value, _attribute(obj, currency))

    shown.__name__ = shown.__qualname__ = name  # the page's CSS class stays field-<name>
    shown.number_field = name
    return shown


def _is_decimal_field(model: type[models.Model], name) -> bool:
    if not isinstance(name, str):
        return False
    try:
        return isinstance(model._meta.get_field(name), models.DecimalField)
    except FieldDoesNotExist:
        return False


def _returns_shown_numbers(method: Callable, transform: str) -> Callable:
    @functools.wraps(method)
    def wrapper(self, request, *args, **kwargs):
        return getattr(self, transform)(method(self, request, *args, **kwargs), request, *args, **kwargs)

    wrapper.shows_numbers = True
    return wrapper


class NormalizedNumbersAdminMixin:
    """Every decimal a page shows read-only is normalized, and money in its currency (``money_fields``).

    Django prints a read-only ``DecimalField`` (a read-only field, a column, every field of a viewer's page)
    at its stored scale: ``1000000.000000000000``. Here each decimal model field named read-only is replaced
    by a display callable (``1,000,000``; ``$1,000,000.00`` for a field of ``money_fields``, which maps the
    field to the dotted path of its currency) in whatever ``get_readonly_fields``, ``get_fieldsets``,
    ``get_list_display`` and ``get_list_display_links`` return, at every level of the class hierarchy
    (``__init_subclass__`` wraps a subclass's own overrides too), so a page added later needs nothing.
    Inputs are normalized by ``DECIMAL_FORMFIELD_OVERRIDES``, the default ``formfield_overrides``.
    """

    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES
    money_fields: dict[str, str] = {}

    # hook -> the method turning its result's decimal field names into display callables
    _NUMBER_HOOKS = {
        "get_readonly_fields": "_names_shown",
        "get_fieldsets": "_fieldsets_shown",
        "get_list_display": "_names_shown",
        "get_list_display_links": "_names_shown",
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for hook, transform in cls._NUMBER_HOOKS.items():
            method = vars(cls).get(hook)
            if method is not None and not getattr(method, "shows_numbers", False):
                setattr(cls, hook, _returns_shown_numbers(method, transform))

    def number_shown(self, name):
        """``name``'s display callable if it names a decimal field of the model, else ``name`` itself."""
        if not _is_decimal_field(self.model, name) or name in (getattr(self, "list_editable", None) or ()):
            return name
        return _shown_number(self.model, name, self.money_fields.get(name))

    def _names_shown(self, names, request, *args, **kwargs):
        if names is None:
            return None
        return [self.number_shown(name) for name in names]

    def _fieldsets_shown(self, fieldsets, request, obj=None, *args, **kwargs):
        every_field = self._every_field_read_only(request, obj)
        read_only = {getattr(name, "number_field", name) for name in self.get_readonly_fields(request, obj)}

        def shown(name):
            if isinstance(name, list | tuple):  # several fields on one line
                return tuple(shown(each) for each in name)
            return self.number_shown(name) if every_field or name in read_only else name

        return [(title, {**options, "fields": shown(tuple(options.get("fields", ())))}) for title, options in fieldsets]

    def _every_field_read_only(self, request, obj) -> bool:
        """A page where Django shows every field read-only: a viewer's change page (or inline rows)."""
        if isinstance(self, InlineModelAdmin):
            return not self.has_change_permission(request, obj) and not self.has_add_permission(request, obj)
        return obj is not None and not self.has_change_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return self._names_shown(super().get_readonly_fields(request, obj), request)

    def get_fieldsets(self, request, obj=None):
        return self._fieldsets_shown(super().get_fieldsets(request, obj), request, obj)

    def get_list_display(self, request):
        return self._names_shown(super().get_list_display(request), request)

    def get_list_display_links(self, request, list_display):
        return self._names_shown(super().get_list_display_links(request, list_display), request)

    def get_form(self, request, obj=None, change=False, **kwargs):
        # A number shown read-only is a display callable, never a form field (a viewer's page lists it).
        if kwargs.get("fields"):
            kwargs["fields"] = [name for name in kwargs["fields"] if not callable(name)]
        return super().get_form(request, obj, change, **kwargs)

    def get_formset(self, request, obj=None, **kwargs):  # inlines
        if "fields" not in kwargs:
            fields = flatten_fieldsets(self.get_fieldsets(request, obj))
            kwargs["fields"] = [name for name in fields if not callable(name)]
        return super().get_formset(request, obj, **kwargs)

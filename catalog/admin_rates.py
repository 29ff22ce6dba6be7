"""Rates typed and shown per unit, per 1K or per 1M units on the price page ("price per" chooser).

Rates are stored per unit with 12 decimal places, so the rating engine, the API and real-time debits
never see the scale: the price form multiplies the stored rates by ``Price.rate_per`` to show them and
divides what is typed by it before the price is validated and saved. The division is a decimal shift,
exact; a typed rate that would need more than 12 decimal places per unit is refused, not rounded.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms

from .models import QUANTITY_DIGITS, RatePer

RATE_PLACES = QUANTITY_DIGITS["decimal_places"]  # 12, the stored per-unit scale
PRICE_SCALED_FIELDS = ("unit_price", "min_unit_price", "max_unit_price")
ROW_SCALED_FIELDS = ("unit_price",)  # tier rows and scheduled rates; a tier's flat fee is not per unit


def _digits(rate_per: int) -> int:
    return len(str(rate_per)) - 1  # 1 → 0, 1,000 → 3, 1,000,000 → 6


def shown_rate(per_unit: Decimal, rate_per: int) -> Decimal:
    """The stored per-unit rate as it is shown at ``rate_per`` units (0.000002 at 1K → 0.002)."""
    return per_unit.scaleb(_digits(rate_per))


def per_unit_rate(typed: Decimal, rate_per: int) -> Decimal | None:
    """The per-unit rate of a rate typed for ``rate_per`` units, or None when 12 places do not hold it."""
    value = typed.scaleb(-_digits(rate_per))
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -RATE_PLACES:
        return None
    return value


def _too_precise(rate_per: int) -> str:
    label = RatePer(rate_per).label
    places = RATE_PLACES - _digits(rate_per)
    return f"A rate {label} has at most {places} decimal places (rates are kept per unit to {RATE_PLACES} places)."


def _scale_initial(form: forms.BaseForm, names: tuple[str, ...], rate_per: int) -> None:
    if rate_per == 1:
        return
    for name in names:
        value = form.initial.get(name)
        if isinstance(value, Decimal) and value.is_finite():
            form.initial[name] = shown_rate(value, rate_per)


def _to_per_unit(form: forms.BaseForm, names: tuple[str, ...], rate_per: int) -> None:
    if rate_per == 1:
        return
    for name in names:
        value = form.cleaned_data.get(name)
        if value is None:
            continue
        per_unit = per_unit_rate(value, rate_per)
        if per_unit is None:
            form.add_error(name, _too_precise(rate_per))
            # The model's own check would now call the rate missing: let it see a value (never saved).
            setattr(form.instance, name, value.scaleb(-_digits(rate_per)))
        else:
            form.cleaned_data[name] = per_unit


class RateScaleFormMixin:
    """The price form: its rate fields are typed in the scale chosen in ``rate_per``."""

    scaled_fields = PRICE_SCALED_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "rate_per" in self.fields:
            self.fields["rate_per"].required = False  # left out (a script's POST): the price keeps its scale
        _scale_initial(self, self.scaled_fields, int(self.initial.get("rate_per") or RatePer.UNIT))

    def clean(self):
        cleaned = super().clean()
        if "rate_per" in self.fields and not self.cleaned_data.get("rate_per"):
            self.cleaned_data["rate_per"] = self.instance.rate_per or RatePer.UNIT
        _to_per_unit(self, self.scaled_fields, int(self.cleaned_data.get("rate_per") or RatePer.UNIT))
        return cleaned


class ScaledRateRowForm(forms.ModelForm):
    """A tier row or a scheduled rate, typed in the scale of its price (given by the formset)."""

    scaled_fields = ROW_SCALED_FIELDS

    def __init__(self, *args, rate_per: int = RatePer.UNIT, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_per = int(rate_per or RatePer.UNIT)
        _scale_initial(self, self.scaled_fields, self.rate_per)

    def clean(self):
        cleaned = super().clean()
        _to_per_unit(self, self.scaled_fields, self.rate_per)
        return cleaned


class RateScaleFormSetMixin:
    """Hands each row the scale of the price the rows belong to (as typed on this very page)."""

    def get_form_kwargs(self, index):
        kwargs = super().get_form_kwargs(index)
        if issubclass(self.form, ScaledRateRowForm):
            kwargs["rate_per"] = getattr(self.instance, "rate_per", RatePer.UNIT)
        return kwargs

"""Rates per event property on the price page, typed as rows: the event property (e.g. ``model``), one row per
value with its price and free units, and what happens to the values not listed.

Finance types a row's price in the scale chosen in "price per" (0.002 per 1K tokens), like every other rate on
the page; the form stores the engine's JSON form (``Price.dimensional_rates``, per unit, see
catalog/pricing/README.md "Dimensional prices"), which the model validates with the engine's messages. What
rows cannot say (several properties, tiers per value, tiers over the whole metric) is typed as that JSON in
the "advanced" box under the rows; when the box holds anything it is used instead of the rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .admin_rates import per_unit_rate, shown_rate
from .models import RatePer

BLANK_ROWS = 3  # blank rows under the last one; "save and continue" gives three more
MAX_ROWS = 100  # the engine's MAX_COMBINATIONS
UNMATCHED_CHOICES = (
    ("default", "priced at this price's own rate (above)"),
    ("refuse", "refused: such events are not accepted"),
)
_ROW_KEYS = {"values", "model", "unitPrice", "freeUnits"}
_DECIMAL_KEYS = {"unitPrice", "freeUnits", "upTo", "flatFee", "packageSize"}


@dataclass(frozen=True)
class TypedRates:
    """What the page posted: the advanced JSON box, the property, the unmatched choice and the rows as typed."""

    json: str = ""
    property: str = ""
    unmatched: str = "default"
    rows: tuple[tuple[str, str, str], ...] = ()  # (value, price, free units)


@dataclass(frozen=True)
class RowRates:
    """Rates built from the rows, their prices still in the scale typed (``rates_per_unit`` converts them)."""

    data: dict


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def rows_of(data: Any, rate_per: int) -> TypedRates | None:
    """The stored rates as rows (prices shown at ``rate_per``), or None when rows cannot say them."""
    if not isinstance(data, dict) or set(data) - {"dimensions", "tierScope", "unmatched", "rates"}:
        return None
    dimensions, rates = data.get("dimensions"), data.get("rates")
    if not (isinstance(dimensions, list) and len(dimensions) == 1 and isinstance(rates, list)):
        return None
    if data.get("tierScope", "combination") != "combination" or data.get("unmatched", "default") not in {
        "default",
        "refuse",
    }:
        return None
    rows = []
    for rate in rates:
        if not isinstance(rate, dict) or set(rate) - _ROW_KEYS or rate.get("model") != "standard":
            return None
        values = rate.get("values")
        if not isinstance(values, dict) or set(values) != set(dimensions) or not isinstance(values[dimensions[0]], str):
            return None
        try:
            price = shown_rate(Decimal(str(rate["unitPrice"])), rate_per)
            free = Decimal(str(rate["freeUnits"])) if rate.get("freeUnits") is not None else None
        except (KeyError, InvalidOperation):
            return None
        rows.append((values[dimensions[0]], _plain(price), "" if not free else _plain(free)))
    return TypedRates(property=dimensions[0], unmatched=data.get("unmatched", "default"), rows=tuple(rows))


def _decimal(text: str, row: int, what: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise ValidationError(f"Row {row}: the {what} “{text}” is not a number of 0 or more.")
    return value


def rows_to_rates(typed: TypedRates) -> RowRates | None:
    """The rates the rows say (None when the property and every row are blank); a field-level message if not."""
    filled = [(n, row) for n, row in enumerate(typed.rows, start=1) if any(part.strip() for part in row)]
    prop = typed.property.strip()
    if not prop and not filled:
        return None
    if not prop:
        raise ValidationError("Name the event property the rates depend on, e.g. model.")
    if not filled:
        raise ValidationError(f"Add at least one value of “{prop}” and its price, or clear the property.")
    rates = []
    for number, (value, price, free) in filled:
        value, price, free = value.strip(), price.strip(), free.strip()
        if not value:
            raise ValidationError(f"Row {number}: enter the value of “{prop}” this price is for, e.g. nle-small.")
        if not price:
            raise ValidationError(f"Row {number}: enter the price for {prop}={value}.")
        rate = {"values": {prop: value}, "model": "standard", "unitPrice": _plain(_decimal(price, number, "price"))}
        if free:
            rate["freeUnits"] = _plain(_decimal(free, number, "free units"))
        rates.append(rate)
    unmatched = typed.unmatched if typed.unmatched in {"default", "refuse"} else "default"
    return RowRates({"dimensions": [prop], "tierScope": "combination", "unmatched": unmatched, "rates": rates})


def rates_per_unit(value: Any, rate_per: int) -> Any:
    """Rates as stored: a row's price typed at ``rate_per`` divided by it (exactly, or refused if too precise)."""
    if not isinstance(value, RowRates):
        return value
    data = json.loads(json.dumps(value.data))
    for number, rate in enumerate(data["rates"], start=1):
        per_unit = per_unit_rate(Decimal(rate["unitPrice"]), rate_per)
        if per_unit is None:
            label = RatePer(rate_per).label
            raise ValidationError(f"Row {number}: a price {label} has too many decimal places (12 per unit).")
        rate["unitPrice"] = _plain(per_unit)
    return data


def _canonical(value: Any) -> Any:
    """For comparing stored and typed rates: decimals normalised, the default settings left out."""
    if isinstance(value, dict):
        out = {key: _canonical(item) for key, item in value.items()}
        if out.get("tierScope") == "combination":
            del out["tierScope"]
        if out.get("unmatched") == "default" and "rates" in out:
            del out["unmatched"]
        for key in _DECIMAL_KEYS & set(out):
            try:
                out[key] = _plain(Decimal(str(out[key])))
            except InvalidOperation:
                pass
        if out.get("freeUnits") == "0":
            del out["freeUnits"]  # the rows leave 0 free units blank
        return out
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


class DimensionalRatesWidget(forms.Widget):
    """The property, the unmatched choice, a table of rows and the advanced JSON box (named as the field, so
    a script posting the JSON, as before the rows, still works)."""

    template_name = "catalog/widgets/dimensional_rates.html"
    rate_per: int = RatePer.UNIT

    def value_from_datadict(self, data, files, name) -> TypedRates:
        rows = []
        for index in range(MAX_ROWS + BLANK_ROWS):
            if f"{name}_value_{index}" not in data:
                break
            rows.append(
                tuple(data.get(f"{name}_{part}_{index}", "") for part in ("value", "price", "free"))  # type: ignore[misc]
            )
        return TypedRates(
            json=data.get(name, "") or "",
            property=data.get(f"{name}_property", "") or "",
            unmatched=data.get(f"{name}_unmatched", "default") or "default",
            rows=tuple(rows),
        )

    def value_omitted_from_data(self, data, files, name) -> bool:
        return name not in data and f"{name}_property" not in data

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        if isinstance(value, TypedRates):
            typed = value
        elif value in (None, ""):
            typed = TypedRates()
        else:
            stored = json.loads(value) if isinstance(value, str) else value
            typed = rows_of(stored, self.rate_per) or TypedRates(json=json.dumps(stored, indent=2))
        filled = [row for row in typed.rows if any(part.strip() for part in row)]
        rows = [*filled, *([("", "", "")] * BLANK_ROWS)]
        context["widget"].update(
            {
                "json": typed.json,
                "property": typed.property,
                "unmatched": typed.unmatched,
                "unmatched_choices": UNMATCHED_CHOICES,
                "rows": [{"index": n, "value": v, "price": p, "free": f} for n, (v, p, f) in enumerate(rows)],
                "per": RatePer(self.rate_per).label,
                "advanced_open": bool(typed.json.strip()),
            }
        )
        return context


class DimensionalRatesField(forms.Field):
    """Cleans to the stored JSON (None: one rate for every event), or to ``RowRates`` for the form to scale."""

    widget = DimensionalRatesWidget

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)
        self.rate_per = RatePer.UNIT

    def set_rate_per(self, rate_per: int) -> None:
        self.rate_per = rate_per
        self.widget.rate_per = rate_per

    def to_python(self, value):
        if not isinstance(value, TypedRates):
            return value
        if value.json.strip():
            try:
                return json.loads(value.json)
            except json.JSONDecodeError as error:
                raise ValidationError(f"The advanced rates are not valid JSON: {error.msg} (line {error.lineno}).")
        return rows_to_rates(value)

    def has_changed(self, initial, data) -> bool:
        try:
            typed = rates_per_unit(self.to_python(data), self.rate_per)
        except ValidationError:
            return True
        return _canonical(initial) != _canonical(typed)

"""Rates per event property on the price page, typed as rows: one to three event properties (e.g. ``model`` and
``region``), one row per combination of their values with its price and free units, and what happens to the
values not listed.

Finance types a row's price in the scale chosen in "price per" (0.002 per 1K tokens), like every other rate on
the page; the form stores the engine's JSON form (``Price.dimensional_rates``, per unit, see
catalog/pricing/README.md "Dimensional prices"), which the model validates with the engine's messages. What
rows cannot say (tiers per value, tiers over the whole metric, other models) is typed as that JSON in the
"advanced" box under the rows; when the box holds anything it is used instead of the rows.

The first property and its values keep their original field names (``_property``, ``_value_<row>``), so a
script posting one property as before still works; the second and third are ``_property2`` / ``_value2_<row>``
and ``_property3`` / ``_value3_<row>``.
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
from .pricing.dimensions import MAX_COMBINATIONS, MAX_DIMENSIONS

BLANK_ROWS = 3  # blank rows under the last one; "save and continue" gives three more
MAX_ROWS = MAX_COMBINATIONS
PROPERTIES = MAX_DIMENSIONS  # property columns on the page: 3
UNMATCHED_CHOICES = (
    ("default", "priced at this price's own rate (above)"),
    ("refuse", "refused: such events are not accepted"),
)
_ROW_KEYS = {"values", "model", "unitPrice", "freeUnits"}
_DECIMAL_KEYS = {"unitPrice", "freeUnits", "upTo", "flatFee", "packageSize"}


@dataclass(frozen=True)
class TypedRow:
    """One row as typed: a value per property column (in column order), the price and the free units."""

    values: tuple[str, ...] = ()
    price: str = ""
    free: str = ""

    def value(self, column: int) -> str:
        return self.values[column] if column < len(self.values) else ""

    def is_blank(self) -> bool:
        return not any(part.strip() for part in (*self.values, self.price, self.free))


@dataclass(frozen=True)
class TypedRates:
    """What the page posted: the advanced JSON box, the properties, the unmatched choice and the rows as typed."""

    json: str = ""
    properties: tuple[str, ...] = ()  # one per column, blank where none is named
    unmatched: str = "default"
    rows: tuple[TypedRow, ...] = ()

    def property(self, column: int) -> str:
        return self.properties[column] if column < len(self.properties) else ""


@dataclass(frozen=True)
class RowRates:
    """Rates built from the rows, their prices still in the scale typed (``rates_per_unit`` converts them)."""

    data: dict


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _suffix(column: int) -> str:
    """The field-name suffix of a property column: "" for the first (its original names), then "2", "3"."""
    return "" if column == 0 else str(column + 1)


def rows_of(data: Any, rate_per: int) -> TypedRates | None:
    """The stored rates as rows (prices shown at ``rate_per``), or None when rows cannot say them."""
    if not isinstance(data, dict) or set(data) - {"dimensions", "tierScope", "unmatched", "rates"}:
        return None
    dimensions, rates = data.get("dimensions"), data.get("rates")
    if not (
        isinstance(dimensions, list)
        and 1 <= len(dimensions) <= PROPERTIES
        and all(isinstance(key, str) for key in dimensions)
        and len(set(dimensions)) == len(dimensions)
        and isinstance(rates, list)
    ):
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
        if (
            not isinstance(values, dict)
            or set(values) != set(dimensions)
            or not all(isinstance(values[key], str) for key in dimensions)
        ):
            return None
        try:
            price = shown_rate(Decimal(str(rate["unitPrice"])), rate_per)
            free = Decimal(str(rate["freeUnits"])) if rate.get("freeUnits") is not None else None
        except (KeyError, InvalidOperation):
            return None
        rows.append(TypedRow(tuple(values[key] for key in dimensions), _plain(price), "" if not free else _plain(free)))
    return TypedRates(properties=tuple(dimensions), unmatched=data.get("unmatched", "default"), rows=tuple(rows))


def _decimal(text: str, row: int, what: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise ValidationError(f"Row {row}: the {what} “{text}” is not a number of 0 or more.")
    return value


def _quoted(names: list[str]) -> str:
    quoted = [f"“{name}”" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _dimensions(typed: TypedRates, filled: list[tuple[int, TypedRow]]) -> list[tuple[int, str]]:
    """(column, property) of the columns in use, in page order: named, or holding a value in some row."""
    width = max([len(typed.properties), *(len(row.values) for _, row in filled)], default=0)
    names = [typed.property(column).strip() for column in range(width)]
    if not any(names):
        raise ValidationError("Name the event property the rates depend on, e.g. model.")
    used = []
    for column, name in enumerate(names):
        if name:
            if name in names[:column]:
                raise ValidationError(f"The property “{name}” is named twice; name each property once.")
            used.append((column, name))
            continue
        for number, row in filled:
            if row.value(column).strip():
                raise ValidationError(
                    f"Row {number}: the value “{row.value(column).strip()}” is under property {column + 1}, "
                    "which has no name; name the property or clear the value."
                )
    return used


def rows_to_rates(typed: TypedRates) -> RowRates | None:
    """The rates the rows say (None when the properties and every row are blank); a field-level message if not."""
    filled = [(number, row) for number, row in enumerate(typed.rows, start=1) if not row.is_blank()]
    if not any(name.strip() for name in typed.properties) and not filled:
        return None
    used = _dimensions(typed, filled)
    dimensions = [name for _, name in used]
    if not filled:
        if len(dimensions) == 1:
            raise ValidationError(f"Add at least one value of “{dimensions[0]}” and its price, or clear the property.")
        raise ValidationError(
            f"Add at least one row with a value of {_quoted(dimensions)} and its price, or clear the properties."
        )
    rates, first_row = [], {}
    for number, row in filled:
        values = {name: row.value(column).strip() for column, name in used}
        for name, value in values.items():
            if not value:
                raise ValidationError(f"Row {number}: enter the value of “{name}” this price is for.")
        label = ", ".join(f"{name}={value}" for name, value in values.items())
        combination = tuple(values.values())
        if combination in first_row:
            raise ValidationError(
                f"Rows {first_row[combination]} and {number} both price {label}; keep one row for it."
            )
        first_row[combination] = number
        price, free = row.price.strip(), row.free.strip()
        if not price:
            raise ValidationError(f"Row {number}: enter the price for {label}.")
        rate = {"values": values, "model": "standard", "unitPrice": _plain(_decimal(price, number, "price"))}
        if free:
            rate["freeUnits"] = _plain(_decimal(free, number, "free units"))
        rates.append(rate)
    unmatched = typed.unmatched if typed.unmatched in {"default", "refuse"} else "default"
    return RowRates({"dimensions": dimensions, "tierScope": "combination", "unmatched": unmatched, "rates": rates})


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
    """The properties, the unmatched choice, a table of rows (a value column per property, labelled by its name)
    and the advanced JSON box (named as the field, so a script posting the JSON, as before the rows, still works)."""

    template_name = "catalog/widgets/dimensional_rates.html"
    rate_per: int = RatePer.UNIT

    def value_from_datadict(self, data, files, name) -> TypedRates:
        rows = []
        for index in range(MAX_ROWS + BLANK_ROWS):
            if f"{name}_value_{index}" not in data:
                break
            values = tuple(data.get(f"{name}_value{_suffix(column)}_{index}", "") or "" for column in range(PROPERTIES))
            rows.append(
                TypedRow(
                    values, data.get(f"{name}_price_{index}", "") or "", data.get(f"{name}_free_{index}", "") or ""
                )
            )
        return TypedRates(
            json=data.get(name, "") or "",
            properties=tuple(data.get(f"{name}_property{_suffix(column)}", "") or "" for column in range(PROPERTIES)),
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
        rows = [*(row for row in typed.rows if not row.is_blank()), *([TypedRow()] * BLANK_ROWS)]
        field_id = attrs.get("id") or f"id_{name}"
        columns = []
        for column in range(PROPERTIES):
            prop = typed.property(column).strip()
            blank = "Value" if column == 0 else f"Value of property {column + 1}"
            columns.append(
                {
                    "column": column,
                    "name": f"{name}_property{_suffix(column)}",
                    "id": f"{field_id}_property{_suffix(column)}",
                    "property": typed.property(column),
                    # the column is labelled by the property typed above it (price_form.js keeps it so as it is typed)
                    "heading": prop or blank,
                    "blank_heading": blank,
                    "label": ("Event property", "Second property (optional)", "Third property (optional)")[column],
                    "placeholder": ("model", "region", "")[column],
                }
            )
        context["widget"].update(
            {
                "json": typed.json,
                "columns": columns,
                "unmatched": typed.unmatched,
                "unmatched_choices": UNMATCHED_CHOICES,
                "rows": [
                    {
                        "index": index,
                        "cells": [
                            {
                                "column": column,
                                "name": f"{name}_value{_suffix(column)}_{index}",
                                "id": f"{field_id}_value{_suffix(column)}_{index}",
                                "value": row.value(column),
                            }
                            for column in range(PROPERTIES)
                        ],
                        "price": row.price,
                        "free": row.free,
                    }
                    for index, row in enumerate(rows)
                ],
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

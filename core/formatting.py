"""Values as text, one way each: a Decimal as a plain decimal string, a moment as an ISO 8601 UTC
timestamp. Plain Python (no Django), so every layer can use it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal


def decimal_string(value: Decimal | None) -> str | None:
    """A Decimal as a plain string without trailing zeros or exponent: 0.000002000000 → "0.000002",
    1E+7 → "10000000", 9.50 → "9.5"; a zero is "0", never "-0". None stays None."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def iso_utc(moment: datetime | None) -> str | None:
    """An aware moment as the API writes it: in UTC, ISO 8601, with a Z (2026-03-01T12:00:00Z,
    microseconds when it has any). None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_number(value: Decimal) -> int | Decimal:
    """A quantity or amount where the wire type is a JSON number: a whole value goes out as an integer (exact);
    a fraction as the Decimal, which the JSON renderer writes as a number."""
    return int(value) if value == value.to_integral_value() else value

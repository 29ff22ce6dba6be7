"""core.formatting: the one decimal-to-text and the one ISO timestamp every app writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.formatting import decimal_string, iso_utc


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.000002000000"), "0.000002"),
        (Decimal("1E+7"), "10000000"),
        (Decimal("9.50"), "9.5"),
        (Decimal("-12.000"), "-12"),
        (Decimal("100"), "100"),
        (Decimal("0E-12"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("-0.000"), "0"),
        (Decimal("123456789012345.123456789012"), "123456789012345.123456789012"),
    ],
)
def test_decimal_string_is_plain_without_trailing_zeros_or_exponent(value, text):
    assert decimal_string(value) == text


def test_decimal_string_keeps_none():
    assert decimal_string(None) is None


def test_iso_utc_writes_utc_with_a_z():
    assert iso_utc(datetime(2026, 3, 1, 12, 0, tzinfo=UTC)) == "2026-03-01T12:00:00Z"
    assert iso_utc(datetime(2026, 3, 1, 12, 0, 0, 250, tzinfo=UTC)) == "2026-03-01T12:00:00.000250Z"


def test_iso_utc_converts_another_offset_to_utc():
    paris = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 3, 1, 0, 30, tzinfo=paris)) == "2026-02-28T23:30:00Z"


def test_iso_utc_keeps_none():
    assert iso_utc(None) is None

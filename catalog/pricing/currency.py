"""ISO 4217 minor units, money rounding and money formatting.

Rounding happens once per invoice line: the engine keeps every amount unrounded and callers round
with :func:`round_money` (one line) or :func:`round_lines` (several lines whose total must equal the
sum of the rounded lines).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import (
    ROUND_05UP,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction
from types import MappingProxyType

from .errors import PricingError, UnknownCurrencyError

# One explicit context for all engine arithmetic. Its methods are called directly (CTX.multiply,
# CTX.add, ...) so the caller's thread-local decimal context is neither read nor modified.
# 50 significant digits keep every realistic product exact: 10^12 units times a rate with 18 decimal
# places needs 31 digits.
PRECISION = 50
CTX = Context(
    prec=PRECISION,
    rounding=ROUND_HALF_EVEN,
    Emax=999_999,
    Emin=-999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

ROUNDING_MODES = frozenset(
    {
        ROUND_05UP,
        ROUND_CEILING,
        ROUND_DOWN,
        ROUND_FLOOR,
        ROUND_HALF_DOWN,
        ROUND_HALF_EVEN,
        ROUND_HALF_UP,
        ROUND_UP,
    }
)

# ISO 4217 list one (SIX, amendments through 2025): alphabetic code -> minor units (decimal places).
# Fund codes with minor units (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW) are included; precious
# metals, SDR and testing codes (XAU, XAG, XPD, XPT, XDR, XSU, XUA, XBA-XBD, XTS, XXX) have no minor
# unit in the standard and are not billable, so they are left out.
_ACTIVE: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
    "BAM": 2, "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2,
    "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2,
    "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2, "COP": 2,
    "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2,
    "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2,
    "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2,
    "FJD": 2, "FKP": 2,
    "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2,
    "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0,
    "JMD": 2, "JOD": 3, "JPY": 0,
    "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2,
    "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3,
    "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
    "MVR": 2, "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2,
    "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2, "NZD": 2,
    "OMR": 3,
    "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0,
    "QAR": 2,
    "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0,
    "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2,
    "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2,
    "THB": 2, "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2,
    "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2,
    "VED": 2, "VES": 2, "VND": 0, "VUV": 0,
    "WST": 2,
    "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0, "XPF": 0,
    "YER": 2,
    "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

# Withdrawn recently enough that invoices issued in them may still be re-rated or re-rendered.
_RECENTLY_WITHDRAWN: dict[str, int] = {"ANG": 2, "BGN": 2, "CUC": 2, "HRK": 2, "SLL": 2, "ZWL": 2}

MINOR_UNITS: MappingProxyType[str, int] = MappingProxyType({**_RECENTLY_WITHDRAWN, **_ACTIVE})

_QUANTUM: dict[str, Decimal] = {code: Decimal(1).scaleb(-units) for code, units in MINOR_UNITS.items()}

_SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def is_known_currency(code: str) -> bool:
    """Return True when ``code`` (upper-case ISO 4217 alphabetic code) is in the shipped table."""
    return code in MINOR_UNITS


def minor_units(code: str) -> int:
    """Return the number of decimal places of ``code``'s minor unit (USD 2, JPY 0, KWD 3).

    Raises :class:`UnknownCurrencyError` for codes missing from the table; the engine never guesses 2.
    """
    try:
        return MINOR_UNITS[code]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(f"Unknown currency code {code!r}") from None


def quantum(code: str) -> Decimal:
    """Return the smallest amount of ``code`` as a Decimal (0.01 for USD, 1 for JPY, 0.001 for KWD)."""
    try:
        return _QUANTUM[code]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(f"Unknown currency code {code!r}") from None


def check_rounding(rounding: str) -> str:
    """Return ``rounding`` if it is one of the :mod:`decimal` rounding constants, else raise."""
    if rounding not in ROUNDING_MODES:
        raise PricingError(f"Unknown rounding mode {rounding!r}; use one of the decimal.ROUND_* constants")
    return rounding


def round_money(amount: Decimal, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round ``amount`` to the minor unit of ``currency`` with ``rounding`` (half-up by default).

    The result always carries exactly the currency's number of decimal places (``Decimal("0.20")``).
    """
    if not isinstance(amount, Decimal):
        raise PricingError(f"Money amounts must be Decimal, got {type(amount).__name__}")
    return amount.quantize(quantum(currency), rounding=check_rounding(rounding), context=CTX)


def round_fraction(value: Fraction, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round an exact rational amount to the minor unit of ``currency`` with a single rounding step.

    Used for proration, where the exact amount (e.g. 10/31 of a fee) has no finite decimal form;
    rounding the Fraction directly avoids rounding twice.
    """
    check_rounding(rounding)
    places = minor_units(currency)
    scaled = value * 10**places
    negative = scaled < 0
    whole, remainder = divmod(abs(scaled.numerator), scaled.denominator)
    # A one-digit stand-in for the discarded remainder (below, at or above one half) is enough for
    # every decimal rounding mode to reach the same decision it would on the exact value.
    if remainder == 0:
        stand_in = Decimal(whole)
    else:
        twice = 2 * remainder
        digit = "1" if twice < scaled.denominator else "5" if twice == scaled.denominator else "9"
        stand_in = Decimal(f"{whole}.{digit}")
    if negative:
        stand_in = -stand_in
    rounded = stand_in.quantize(Decimal(1), rounding=rounding, context=CTX)
    return rounded.scaleb(-places, context=CTX).quantize(quantum(currency), context=CTX)


@dataclass(frozen=True, slots=True)
class RoundedLines:
    """Rounded invoice lines whose ``total`` is exactly the sum of ``lines`` plus ``minimum_true_up``."""

    currency: str
    lines: tuple[Decimal, ...]
    minimum_true_up: Decimal
    total: Decimal


def round_lines(amounts: Iterable[Decimal], currency: str, rounding: str = ROUND_HALF_UP) -> RoundedLines:
    """Round each unrounded line amount once and total the rounded lines.

    The total is the sum of the rounded lines, never the rounding of the unrounded sum, so an invoice
    always adds up on paper.
    """
    rounded = tuple(round_money(amount, currency, rounding) for amount in amounts)
    zero = Decimal(0).quantize(quantum(currency))
    total = zero
    for line in rounded:
        total = CTX.add(total, line)
    return RoundedLines(currency=currency, lines=rounded, minimum_true_up=zero, total=total)


def format_money(amount: Decimal, currency: str) -> str:
    """Format ``amount`` for an explanation without rounding it: ``$0.20``, ``$0.000002``, ``KWD 1.500``.

    At least the currency's minor digits are shown; more are kept when the amount has them, so a
    printed explanation never disagrees with the unrounded figures it explains.
    """
    places = minor_units(currency)
    value = amount.normalize(CTX)
    if value.as_tuple().exponent > -places:  # type: ignore[operator]
        value = value.quantize(_QUANTUM[currency], context=CTX)
    text = f"{abs(value):,f}"
    symbol = _SYMBOLS.get(currency)
    body = f"{symbol}{text}" if symbol else f"{currency} {text}"
    return f"-{body}" if value < 0 else body


def format_quantity(quantity: Decimal) -> str:
    """Format a quantity with thousands separators and no exponent: ``100,000``, ``1,500.5``."""
    value = quantity.normalize(CTX)
    if value.is_zero():
        return "0"
    return f"{value:,f}"

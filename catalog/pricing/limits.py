"""The one bound on every number that enters Meterline's money arithmetic.

Quantities (event values, tier bounds, free units) and amounts (prices, minimums, grants, top-ups,
payments) are refused beyond **15 digits before the point and 12 after it**: ``|x| < 10^15`` with at
most 12 decimal places, i.e. at most 27 significant digits. Serializers, services and the engine
import these names; nothing else defines a bound of its own.

Why these figures: 12 places is the scale every stored quantity, rate and ledger amount keeps; 15
integer digits keep a product of a bounded quantity and a bounded rate (≤ 54 digits before rounding
to 12 places) and sums of millions of bounded lines exact in the engine's 50-digit context (``CTX``)
after the per-line rounding, and every rounded invoice amount fits the invoices' ``numeric(20, 4)``
columns (16 integer digits).
"""

from __future__ import annotations

from decimal import Decimal

from .currency import CTX

MAX_INTEGER_DIGITS = 15
DECIMAL_PLACES = 12
MAX_DIGITS = MAX_INTEGER_DIGITS + DECIMAL_PLACES  # 27
LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS  # exclusive: |x| < LIMIT
QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)
BOUND_TEXT = f"at most {MAX_INTEGER_DIGITS} digits before the decimal point and {DECIMAL_PLACES} after it"


def within_bound(value: Decimal) -> bool:
    """True when ``value`` is finite, below 10^15 in absolute value and has at most 12 decimal places."""
    if not value.is_finite() or value.copy_abs() >= LIMIT:
        return False
    exponent = value.as_tuple().exponent
    # "1.50000000000000000" has 17 places written but only one that counts.
    return exponent >= -DECIMAL_PLACES or value == value.quantize(QUANTUM, context=CTX)


def within_magnitude(value: Decimal) -> bool:
    """True when ``value`` is finite and below 10^15 in absolute value (any number of decimal places)."""
    return value.is_finite() and value.copy_abs() < LIMIT

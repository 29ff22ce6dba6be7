"""Meterline's pure rating engine: Decimals and plain data in, priced and explained results out.

No Django, no ORM, no I/O. See README.md in this package for the semantics of every price model.
"""

from .adjustments import SubtotalDiscount, apply_plan_minimum, apply_subtotal_discount
from .currency import (
    MINOR_UNITS,
    RoundedLines,
    format_money,
    is_known_currency,
    minor_units,
    round_fraction,
    round_lines,
    round_money,
)
from .dimensions import (
    Combination,
    CombinationResult,
    DimensionalResult,
    DimensionalSpec,
    TierScope,
    Unmatched,
    dimensional_amounts,
    parse_dimensional,
    rate_dimensional,
)
from .engine import rate
from .errors import (
    InvalidPriceError,
    InvalidTierTableError,
    InvalidUsageError,
    PricingError,
    UnknownCurrencyError,
)
from .proration import Proration, prorate
from .spec import PriceSpec
from .tiers import validate_tiers
from .types import (
    DynamicMode,
    ExplanationLine,
    LineKind,
    PackageRounding,
    PricingModel,
    RateChange,
    RatingResult,
    Tier,
    Usage,
)

__all__ = [
    "MINOR_UNITS",
    "Combination",
    "CombinationResult",
    "DimensionalResult",
    "DimensionalSpec",
    "DynamicMode",
    "ExplanationLine",
    "InvalidPriceError",
    "InvalidTierTableError",
    "InvalidUsageError",
    "LineKind",
    "PackageRounding",
    "PriceSpec",
    "PricingError",
    "PricingModel",
    "Proration",
    "RateChange",
    "RatingResult",
    "RoundedLines",
    "SubtotalDiscount",
    "Tier",
    "TierScope",
    "UnknownCurrencyError",
    "Unmatched",
    "Usage",
    "apply_plan_minimum",
    "apply_subtotal_discount",
    "format_money",
    "is_known_currency",
    "minor_units",
    "parse_dimensional",
    "prorate",
    "rate",
    "dimensional_amounts",
    "rate_dimensional",
    "round_fraction",
    "round_lines",
    "round_money",
    "validate_tiers",
]

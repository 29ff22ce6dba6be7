"""Field validators with messages a finance person understands."""

from __future__ import annotations

import re
import zoneinfo
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

# Bounds of a usage threshold (progressive billing, invoicing/THRESHOLDS.md): beyond them the API answers 400.
THRESHOLD_AMOUNT_MIN = Decimal("0.01")
THRESHOLD_AMOUNT_MAX = Decimal("1000000000")  # 10^9 in the plan's currency
THRESHOLD_LADDER_MAX = 20  # further thresholds after the first

_JSON_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_\-]*)+$")


def validate_currency_code(value: str) -> None:
    from .pricing import is_known_currency

    if not value or not is_known_currency(value.upper()):
        raise ValidationError(f"“{value}” is not an ISO 4217 currency code (for example USD, EUR, JPY).")


def validate_json_path(value: str) -> None:
    if value and not _JSON_PATH.match(value):
        raise ValidationError(
            f"“{value}” is not a property path. Write $. followed by the property name, for example $.tokens "
            "or $.usage.input_tokens."
        )


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"“{value}” is not a time zone name; use one like UTC or Europe/Paris.") from None


def email_list_split(value: str) -> list[str]:
    """The addresses of a comma-, semicolon- or whitespace-separated list, in order, without repeats."""
    seen: dict[str, None] = {}
    for item in re.split(r"[\s,;]+", value or ""):
        if item:
            seen.setdefault(item, None)
    return list(seen)


def validate_email_list(value: str) -> None:
    from django.core.validators import validate_email

    wrong = []
    for address in email_list_split(value):
        try:
            validate_email(address)
        except ValidationError:
            wrong.append(address)
    if wrong:
        raise ValidationError(
            f"Not an e-mail address: {', '.join(f'“{item}”' for item in wrong)}. Separate addresses with commas."
        )


def threshold_ladder_error(value) -> str | None:
    """Why ``value`` is not a threshold ladder (a list of at most 20 amounts as decimal strings, each within the
    threshold bounds, strictly increasing), or None."""
    if not isinstance(value, list):
        return 'Give a list of amounts, for example ["500", "1000"].'
    if len(value) > THRESHOLD_LADDER_MAX:
        return f"At most {THRESHOLD_LADDER_MAX} further thresholds."
    amounts = []
    for item in value:
        try:
            amount = Decimal(str(item)) if isinstance(item, (str, int)) and not isinstance(item, bool) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite():
            return f'“{item}” is not an amount; write each as a decimal string, for example "500".'
        if not THRESHOLD_AMOUNT_MIN <= amount <= THRESHOLD_AMOUNT_MAX:
            return f"Each threshold must be from {THRESHOLD_AMOUNT_MIN} to {THRESHOLD_AMOUNT_MAX}."
        amounts.append(amount)
    if any(later <= earlier for earlier, later in zip(amounts, amounts[1:], strict=False)):
        return "The thresholds must increase."
    return None


def validate_threshold_ladder(value) -> None:
    if value is None:
        return
    error = threshold_ladder_error(value)
    if error:
        raise ValidationError(error)

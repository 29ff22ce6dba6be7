"""Field validators with messages a finance person understands."""

from __future__ import annotations

import re
import zoneinfo

from django.core.exceptions import ValidationError

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

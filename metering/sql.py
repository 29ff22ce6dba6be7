"""SQL fragments over the event ``data`` JSON that behave the same on PostgreSQL (jsonb) and SQLite (JSON1).

Paths such as ``$.usage.input_tokens`` are always passed as query parameters, never spliced into SQL.
Values read for SUM/AVG/MIN/MAX/LATEST are numbers or numeric strings; anything else reads as NULL
(so an event that predates a metric and carries text at its path never breaks a query).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, localcontext

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalog.pricing.limits import QUANTUM

# The numeric strings ingestion accepts, and the only strings SQL casts to numeric. The exponent is
# bounded so a cast can never overflow PostgreSQL's numeric.
NUMERIC_STRING = re.compile(r"-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]{1,3})?")
_PG_NUMERIC_REGEX = "^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]{1,3})?$"
ZERO = Decimal("0")


def path_parts(path: str) -> list[str]:
    """``$.usage.input_tokens`` → ``["usage", "input_tokens"]``."""
    if not path.startswith("$."):
        raise ValueError(f"{path!r} is not a $.path")
    parts = path[2:].split(".")
    if any(not part or '"' in part for part in parts):
        raise ValueError(f"{path!r} is not a $.path")
    return parts


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _sqlite_path(parts: list[str]) -> str:
    return "$" + "".join(f'."{part}"' for part in parts)


def json_text(column: str, parts: list[str]) -> tuple[str, list]:
    """The value at ``parts`` as text (``true``/``false`` for booleans on both databases), or NULL."""
    if is_postgres():
        return f"jsonb_extract_path_text({column}, {', '.join(['%s'] * len(parts))})", list(parts)
    path = _sqlite_path(parts)
    return (
        f"(CASE WHEN json_type({column}, %s) IN ('true', 'false') THEN json_type({column}, %s) "
        f"ELSE CAST(json_extract({column}, %s) AS TEXT) END)",
        [path, path, path],
    )


def json_number(column: str, parts: list[str]) -> tuple[str, list]:
    """The value at ``parts`` as a SQL number (numeric on PostgreSQL), or NULL when it is not numeric."""
    if is_postgres():
        marks = ", ".join(["%s"] * len(parts))
        text = f"jsonb_extract_path_text({column}, {marks})"
        sql = (
            f"(CASE WHEN jsonb_typeof(jsonb_extract_path({column}, {marks})) = 'number' THEN ({text})::numeric "
            f"WHEN {text} ~ '{_PG_NUMERIC_REGEX}' THEN ({text})::numeric END)"
        )
        return sql, list(parts) * 4
    path = _sqlite_path(parts)
    sql = (
        f"(CASE WHEN json_type({column}, %s) IN ('integer', 'real') THEN json_extract({column}, %s) "
        f"WHEN json_type({column}, %s) = 'text' AND json_extract({column}, %s) GLOB '*[0-9]*' "
        f"AND json_extract({column}, %s) NOT GLOB '*[^0-9eE.+-]*' "
        f"THEN CAST(json_extract({column}, %s) AS NUMERIC) END)"
    )
    return sql, [path] * 6


def db_datetime(value: datetime):
    """A datetime as the backend stores it (naive UTC text on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value)


def to_datetime(value) -> datetime:
    """A datetime read back from raw SQL, as aware UTC."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_decimal(value) -> Decimal:
    """A SQL aggregate as Decimal. SQLite computes non-integers in binary floating point: its result
    is rounded to 12 decimal places through its shortest text form (PostgreSQL's numeric is exact)."""
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    return Decimal(repr(round(value, 12)))


def quantize(value: Decimal) -> Decimal:
    """Round an average to the 12 decimal places quantities keep."""
    with localcontext() as ctx:
        ctx.prec = 80
        return value.quantize(QUANTUM).normalize() if value != value.to_integral_value() else value.quantize(1)

"""limit/offset paging as the Paygentic client sends it (defaults 10/0, values arrive as strings)."""

from __future__ import annotations

from rest_framework import exceptions

MAX_PAGE_SIZE = 100
# Past any real row count, and inside every database's OFFSET range (a bigger one was a 500).
MAX_OFFSET = 2**31 - 1


def page_params(request, *, default_limit: int = 10, max_limit: int = MAX_PAGE_SIZE) -> tuple[int, int]:
    """Read and validate ``limit`` and ``offset``; a bad value is a 400 naming the field."""
    errors: dict[str, list[str]] = {}
    limit = _non_negative_int(request.query_params.get("limit"), default_limit, "limit", errors)
    offset = _non_negative_int(request.query_params.get("offset"), 0, "offset", errors)
    if "limit" not in errors and not 1 <= limit <= max_limit:
        errors["limit"] = [f"limit must be between 1 and {max_limit}."]
    if "offset" not in errors and offset > MAX_OFFSET:
        errors["offset"] = [f"offset must be at most {MAX_OFFSET}."]
    if errors:
        raise exceptions.ValidationError(errors)
    return limit, offset


def _non_negative_int(raw: str | None, default: int, name: str, errors: dict) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        errors[name] = [f"{name} must be a whole number."]
        return default
    if value < 0:
        errors[name] = [f"{name} cannot be negative."]
    return value


def paginate(queryset, request, *, default_limit: int = 10, max_limit: int = MAX_PAGE_SIZE):
    """Return (rows, ``{limit, offset, total}``) for a queryset."""
    limit, offset = page_params(request, default_limit=default_limit, max_limit=max_limit)
    total = queryset.count()
    rows = list(queryset[offset : offset + limit])
    return rows, {"limit": limit, "offset": offset, "total": total}

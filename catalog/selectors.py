"""Reads of the catalog."""

from __future__ import annotations

import hashlib

from .models import ApiKey


def api_key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The unrevoked key matching ``raw_key``, with its merchant, or None."""
    return (
        ApiKey.objects.select_related("merchant")
        .filter(key_digest=api_key_digest(raw_key), revoked_at__isnull=True)
        .first()
    )

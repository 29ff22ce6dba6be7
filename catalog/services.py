"""Writes to the catalog: ``<entity>_<verb>`` functions with keyword-only arguments."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.db import transaction

from .models import ApiKey, Merchant
from .selectors import api_key_digest

API_KEY_PREFIX = "ml_live_"


@transaction.atomic
def api_key_create(*, merchant: Merchant, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored and cannot be shown again."""
    raw_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        merchant=merchant, name=name, prefix=raw_key[: len(API_KEY_PREFIX) + 6], key_digest=api_key_digest(raw_key)
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey, now: datetime) -> ApiKey:
    """Revoke a key; revoking twice keeps the first revocation time."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key

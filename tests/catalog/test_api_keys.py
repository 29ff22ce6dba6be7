"""API keys: stored hashed, shown once, revocable; the API refuses missing or revoked keys."""

from datetime import UTC, datetime

import pytest

from catalog.models import ApiKey
from catalog.selectors import api_key_get_active
from catalog.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def test_key_is_stored_as_a_digest_only(merchant):
    api_key, raw_key = api_key_create(merchant=merchant, name="ingest")

    stored = ApiKey.objects.get(pk=api_key.pk)
    assert raw_key not in (stored.key_digest, stored.prefix)
    assert raw_key.startswith(stored.prefix)
    assert api_key_get_active(raw_key=raw_key) == stored


def test_revoked_key_no_longer_authenticates(merchant):
    api_key, raw_key = api_key_create(merchant=merchant, name="ingest")
    revoked_at = datetime(2026, 3, 1, tzinfo=UTC)

    api_key_revoke(api_key=api_key, now=revoked_at)
    api_key_revoke(api_key=api_key, now=datetime(2026, 4, 1, tzinfo=UTC))

    assert api_key_get_active(raw_key=raw_key) is None
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at == revoked_at

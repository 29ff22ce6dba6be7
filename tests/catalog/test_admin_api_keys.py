"""API keys in the admin: created by the service, secret shown once, digest never, revocable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse

from catalog.models import ApiKey
from catalog.selectors import api_key_get_active
from catalog.services import api_key_create
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:catalog_apikey_changelist")


def test_adding_a_key_shows_the_secret_once(superuser_client):
    merchant = MerchantFactory(name="Neural Labs")

    response = superuser_client.post(reverse("admin:catalog_apikey_add"), {"merchant": merchant.pk, "name": "ingest"})

    assert response.status_code == 302
    api_key = ApiKey.objects.get()
    shown = [m.message for m in get_messages(response.wsgi_request)]
    secret_messages = [m for m in shown if m.startswith("Copy this API key now")]
    assert len(secret_messages) == 1
    raw_key = secret_messages[0].rsplit(" ", 1)[1]
    assert api_key_get_active(raw_key=raw_key) == api_key
    assert (api_key.merchant, api_key.name) == (merchant, "ingest")
    # the message is consumed by the next page and never appears again
    assert raw_key in superuser_client.get(response.url).content.decode()
    assert raw_key not in superuser_client.get(response.url).content.decode()


def test_an_added_key_is_logged_and_linked_as_the_row_the_service_created(superuser_client):
    merchant = MerchantFactory(name="Neural Labs")

    response = superuser_client.post(
        reverse("admin:catalog_apikey_add"), {"merchant": merchant.pk, "name": "ingest", "_continue": "1"}
    )

    api_key = ApiKey.objects.get()
    assert response.url == reverse("admin:catalog_apikey_change", args=[quote(api_key.pk)])
    assert list(LogEntry.objects.values_list("action_flag", "object_id")) == [(ADDITION, api_key.pk)]


def test_key_digest_is_never_shown(superuser_client, merchant):
    api_key, _ = api_key_create(merchant=merchant, name="ingest")

    pages = [CHANGELIST, reverse("admin:catalog_apikey_change", args=(quote(api_key.pk),))]

    for page in pages:
        content = superuser_client.get(page).content.decode()
        assert api_key.prefix in content
        assert api_key.key_digest not in content


def test_revoke_selected_keys(superuser_client, merchant, monkeypatch):
    first, first_raw = api_key_create(merchant=merchant, name="first")
    second, second_raw = api_key_create(merchant=merchant, name="second")
    kept, kept_raw = api_key_create(merchant=merchant, name="kept")
    revoked_at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    monkeypatch.setattr("catalog.admin.timezone.now", lambda: revoked_at)

    response = superuser_client.post(
        CHANGELIST, {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]}
    )

    assert response.status_code == 302
    assert api_key_get_active(raw_key=first_raw) is None
    assert api_key_get_active(raw_key=second_raw) is None
    assert api_key_get_active(raw_key=kept_raw) == kept
    assert ApiKey.objects.get(pk=first.pk).revoked_at == revoked_at

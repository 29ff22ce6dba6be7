"""create_api_key prints the key once; revoke_api_key makes the API refuse it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from catalog.models import ApiKey

pytestmark = pytest.mark.django_db


def test_create_then_revoke(merchant, input_tokens, customer):
    out = StringIO()
    call_command("create_api_key", merchant=merchant.pk, name="ingest", stdout=out, stderr=StringIO())
    raw_key = out.getvalue().strip()
    api_key = ApiKey.objects.get(name="ingest")
    assert raw_key.startswith(api_key.prefix)
    assert raw_key not in api_key.key_digest
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    event = {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {"input_tokens": 1}}
    assert client.post("/v0/events", event, format="json").status_code == 202

    call_command("revoke_api_key", api_key.pk, stdout=StringIO())

    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert client.post("/v0/events", event, format="json").status_code == 401


def test_unknown_merchant_or_key_is_an_error(merchant):
    with pytest.raises(CommandError, match="No merchant org_nope"):
        call_command("create_api_key", merchant="org_nope", name="x")
    with pytest.raises(CommandError, match="No API key key_nope"):
        call_command("revoke_api_key", "key_nope")

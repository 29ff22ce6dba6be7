"""Shared fixtures: a merchant with an API key, and a DRF client authenticated with it."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from catalog.services import api_key_create
from tests.factories import MerchantFactory


def pytest_collection_modifyitems(config, items):
    """Skip PostgreSQL-only tests (row locks, concurrent transactions) on SQLite."""
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def merchant(db):
    return MerchantFactory(name="Neural Labs")


@pytest.fixture
def api_key_secret(merchant) -> str:
    _, raw_key = api_key_create(merchant=merchant, name="test key")
    return raw_key


@pytest.fixture
def api_client(api_key_secret) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_secret}")
    return client


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()

"""Shared fixtures: a merchant with an API key, a DRF client authenticated with it, and admin clients for a
superuser and for each billing role."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from catalog.roles import BILLING_ADMIN, BILLING_VIEWER, billing_roles_sync
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


@pytest.fixture
def superuser_client(db) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _role_client(group_name: str) -> Client:
    billing_roles_sync()
    user = User.objects.create_user(group_name.lower().replace(" ", "-"), is_staff=True, password="pw")
    user.groups.add(Group.objects.get(name=group_name))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(db) -> Client:
    return _role_client(BILLING_VIEWER)


@pytest.fixture
def billing_admin_client(db) -> Client:
    return _role_client(BILLING_ADMIN)

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache

from catalog.roles import BILLING_ADMIN, BILLING_VIEWER, billing_roles_sync


def _staff(username: str, group_name: str | None):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    if group_name:
        billing_roles_sync()
        user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture(autouse=True)
def empty_cache():
    """The usage chart caches closed days (reporting.selectors); every test starts cold."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def billing_admin(db):
    return _staff("ada", BILLING_ADMIN)


@pytest.fixture
def billing_viewer(db):
    return _staff("vic", BILLING_VIEWER)


@pytest.fixture
def staff_without_roles(db):
    return _staff("sam", None)

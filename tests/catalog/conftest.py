"""Admin fixtures: staff clients for a superuser and for each billing role, and a full catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from catalog.demo import demo_catalog_build
from catalog.roles import BILLING_ADMIN, BILLING_VIEWER, billing_roles_sync
from catalog.services import feature_create
from tests.factories import DynamicRateFactory, MetricFilterFactory, TestClockFactory

DEMO_NOW = datetime(2026, 3, 17, 9, 30, tzinfo=UTC)


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


@pytest.fixture
def catalog_data(db):
    """Both demo examples plus the rows the demo does not make (clock, filter, rate schedule)."""
    summary = demo_catalog_build(now=DEMO_NOW)
    neural = summary.merchants[0]
    metric = neural.billable_metrics.get(name="Input tokens")
    MetricFilterFactory(metric=metric, property_path="$.status", values=["ok"])
    TestClockFactory(merchant=neural, name="Month-end rehearsal")
    feature_create(
        merchant=neural,
        product=metric.product,
        key="api-access",
        name="API access",
        type="metered",
        billable_metric=metric,
    )
    plan = neural.plans.get(name="Pro")
    DynamicRateFactory(
        price__plan=plan,
        price__billable_metric=neural.billable_metrics.get(name="API calls"),
        price__invoice_display_name="Spot calls",
        unit_price=Decimal("0.0004"),
    )
    return summary

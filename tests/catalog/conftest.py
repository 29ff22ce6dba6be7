"""Admin fixtures: a full catalog (the staff clients are in tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.demo import demo_catalog_build
from catalog.services import feature_create
from tests.factories import DynamicRateFactory, MetricFilterFactory, TestClockFactory

DEMO_NOW = datetime(2026, 3, 17, 9, 30, tzinfo=UTC)


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

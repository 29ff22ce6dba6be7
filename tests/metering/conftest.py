"""Fixtures for metering: a product with an LLM metric, customers of the authenticated merchant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from catalog.models import Aggregation
from tests.factories import BillableMetricFactory, CustomerFactory, ProductFactory

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def product(merchant):
    return ProductFactory(merchant=merchant, name="Neural Language Engine")


@pytest.fixture
def input_tokens(product):
    return BillableMetricFactory(
        product=product,
        merchant=product.merchant,
        name="Input tokens",
        aggregation=Aggregation.SUM,
        event_type="llm.completion",
        value_property="$.input_tokens",
        group_by={"model": "$.model"},
    )


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, name="Acme", external_id="acme-001")

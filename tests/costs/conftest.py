"""Shared data for the costs tests: a GPU product whose jobs are costed per GPU-second."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from costs.models import Cost
from tests.api.conftest import JsonClient, api, other_client, other_merchant, rival  # noqa: F401
from tests.factories import ProductFactory

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def gpu_product(merchant):
    return ProductFactory(merchant=merchant, name="GPU cloud")


def gpu_cost(product, **fields) -> Cost:
    """GPU-seconds × $0.0005 (written directly: the service is tested through the API)."""
    values = {
        "name": "GPU time",
        "currency": "USD",
        "unit_cost": Decimal("0.0005"),
        "unit": "GPU-seconds",
        "aggregation": "SUM",
        "event_type": "gpu.job",
        "value_property": "$.seconds",
        "group_by": {"gpu": "$.gpu"},
    }
    return Cost.objects.create(merchant=product.merchant, product=product, **{**values, **fields})


__all__ = ["JsonClient", "gpu_cost", "JAN_1", "FEB_1"]

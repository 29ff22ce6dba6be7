from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from catalog.models import FeatureType
from catalog.services import api_key_create, feature_create
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    MerchantFactory,
    PlanFactory,
    ProductFactory,
    SubscriptionFactory,
)


@pytest.fixture
def product(merchant):
    return ProductFactory(merchant=merchant, name="Neural Engine")


@pytest.fixture
def metric(product):
    return BillableMetricFactory(product=product, event_type="llm.completion", value_property="$.tokens")


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, external_id="acme-1")


@pytest.fixture
def subscription(merchant, product, customer):
    return SubscriptionFactory(plan=PlanFactory(product=product, merchant=merchant), customer=customer)


@pytest.fixture
def metered_feature(merchant, product, metric):
    return feature_create(
        merchant=merchant,
        product=product,
        key="api-tokens",
        name="API tokens",
        type=FeatureType.METERED,
        billable_metric=metric,
    )


@pytest.fixture
def boolean_feature(merchant, product):
    return feature_create(merchant=merchant, product=product, key="sso", name="SSO", type=FeatureType.BOOLEAN)


@pytest.fixture
def static_feature(merchant, product):
    return feature_create(merchant=merchant, product=product, key="seats", name="Seats", type=FeatureType.STATIC)


@pytest.fixture
def rival_client(db):
    rival = MerchantFactory(name="Rival")
    _, raw = api_key_create(merchant=rival, name="rival")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client

"""The unmodified paygentic-sdk client against a live server: features, entitlements and grants."""

from __future__ import annotations

import pytest
from paygentic_sdk import Paygentic

from catalog.services import api_key_create
from tests.factories import CustomerFactory, MerchantFactory, ProductFactory


@pytest.mark.django_db(transaction=True)
def test_feature_entitlement_grant_flow_with_the_client(live_server):
    # given
    merchant = MerchantFactory()
    _, key = api_key_create(merchant=merchant, name="sdk")
    product = ProductFactory(merchant=merchant)
    customer = CustomerFactory(merchant=merchant)

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when
        feature = sdk.features.create(
            key="api-tokens", name="API tokens", merchant_id=merchant.pk, product_id=product.pk, type_="metered"
        )
        entitlement = sdk.entitlements.issue(
            customer_id=customer.pk,
            feature_id=feature.id,
            template={"type": "metered", "usage_period": {"interval": "P1M"}},
        )
        grant = sdk.entitlements.grants.create(entitlement_id=entitlement.id, amount=250, idempotency_key="g-1")
        after_grant = sdk.entitlements.get(entitlement_id=entitlement.id)
        voided = sdk.entitlements.grants.void(entitlement_id=entitlement.id, grant_id=grant.id)
        after_void = sdk.entitlements.get(entitlement_id=entitlement.id)

    # then
    assert (feature.type, feature.product_id) == ("metered", product.pk)
    assert (grant.amount, grant.idempotency_key) == (250, "g-1")
    # no billable metric on the feature: usage is 0 and the balance is the grants
    assert (after_grant.feature_type, after_grant.balance, after_grant.has_access) == ("metered", 250, True)
    assert voided.voided_at is not None
    assert (after_void.balance, after_void.has_access) == (0, False)

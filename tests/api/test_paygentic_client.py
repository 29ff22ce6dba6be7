"""The unmodified Paygentic Python client drives a live server through the catalog (digest §8, steps 2–10)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic

from catalog.models import Customer, Price
from catalog.services import api_key_create
from tests.factories import MerchantFactory


@pytest.mark.django_db(transaction=True)
def test_client_builds_the_catalog_of_an_llm_api(live_server):
    # given
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    mid = merchant.id

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when
        prod = sdk.products.create(merchant_id=mid, name="Neural Language Engine", description="LLM inference API")
        m_in = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Input tokens",
            description="Prompt tokens consumed",
            unit="tokens",
            aggregation="SUM",
            event_type="llm.completion",
            value_property="$.input_tokens",
            group_by={"model": "$.model"},
        )
        m_out = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Output tokens",
            description="Completion tokens generated",
            unit="tokens",
            aggregation="SUM",
            event_type="llm.completion",
            value_property="$.output_tokens",
        )
        fee = sdk.fees.create(merchant_id=mid, product_id=prod.id, name="Platform fee", description="Monthly access")
        p_fee = sdk.prices.create(
            fee_id=fee.id,
            invoice_display_name="Platform fee",
            payment_term="in_advance",
            billing_cadence="P1M",
            properties={"unit_price": "49.00"},
            quantity=1,
        )
        p_in = sdk.prices.create(
            billable_metric_id=m_in.id,
            model="standard",
            invoice_display_name="Input tokens",
            payment_term="in_arrears",
            properties={"unit_price": "0.000002"},
        )
        p_out = sdk.prices.create(
            billable_metric_id=m_out.id,
            model="standard",
            invoice_display_name="Output tokens",
            payment_term="in_arrears",
            properties={"unit_price": "0.000006"},
        )
        plan = sdk.plans.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Pro",
            currency="USD",
            billing_cadence="P1M",
            prices=[
                {"price_id": p_fee.id, "key": "platform_fee"},
                {"price_id": p_in.id, "key": "input_tokens"},
                p_out.id,
            ],
        )
        consumer = {
            "name": "Acme Inc",
            "email": "billing@acme.io",
            "address": {"country": "US", "state": "CA", "zip_code": "94105", "city": "San Francisco"},
        }
        first = sdk.customers.create(merchant_id=mid, consumer=consumer, external_id="acme-001")
        again = sdk.customers.create(merchant_id=mid, consumer=consumer, external_id="acme-001")
        fetched = sdk.customers.get(id=first.customer_id)
        metrics = sdk.billable_metrics.list(merchant_id=mid)
        plans = sdk.plans.list(request={"merchant_id": mid})

    # then
    assert prod.id.startswith("prod_") and prod.metadata == {} and prod.merchant_id == mid
    assert (m_in.aggregation, m_in.group_by, m_in.product_id, m_in.item_id) == (
        "SUM",
        {"model": "$.model"},
        prod.id,
        None,
    )
    assert m_out.value_property == "$.output_tokens"
    assert (fee.product_id, fee.item_id) == (prod.id, None)
    assert p_fee.properties.unit_price == "49" and p_fee.fee_id == fee.id and p_fee.quantity == 1
    assert p_fee.tax.supply_scope == "IN_SCOPE" and p_fee.billing_cadence == "P1M"
    assert p_in.properties.unit_price == "0.000002" and p_in.model == "standard"
    assert p_out.properties.unit_price == "0.000006"
    with pytest.deprecated_call():  # the client flags billingInterval as deprecated, yet requires it
        assert plan.billing_interval == "monthly"
    assert plan.object == "plan" and plan.billing_cadence == "P1M"
    assert plan.version_transition.effective_date == "end_of_current_period"
    assert plan.default_tax_rate == 0 and plan.tax_behavior == "exclusive"
    assert {p.id: p.model for p in plan.prices} == {p_fee.id: "standard", p_in.id: "standard", p_out.id: "standard"}
    assert plan.payment_term.in_advance is True and plan.payment_term.in_arrears is True
    assert first.customer_id == again.customer_id and first.valid_tax_address.valid is True
    assert fetched.external_id == "acme-001" and fetched.consumer_id == first.customer_id
    assert fetched.organization.address.zip_code == "94105"
    assert metrics.object == "list" and metrics.pagination.total == 2
    assert [p.id for p in plans.data] == [plan.id]
    # and in the database
    lines = dict(Price.objects.filter(plan_id=plan.id).values_list("plan_line_key", "unit_price"))
    assert lines == {
        "platform_fee": Decimal("49"),
        "input_tokens": Decimal("0.000002"),
        "output_tokens": Decimal("0.000006"),
    }
    assert Customer.objects.filter(merchant=merchant).count() == 1

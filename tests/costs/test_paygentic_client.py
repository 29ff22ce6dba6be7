"""The unmodified Paygentic client (paygentic-sdk 0.6.3) drives costs and profitability on a live server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from tests.factories import MerchantFactory, ProductFactory, SubscriptionFactory
from tests.invoicing.factories import record_usage
from tests.invoicing.receivables import issued

from .conftest import FEB_1, JAN_1


@pytest.mark.django_db(transaction=True)
def test_client_defines_a_gpu_cost_and_reads_its_summary_and_the_margin(live_server):
    # given: a merchant invoiced $2.00 for January to a customer who ran 1,000 GPU-seconds
    merchant = MerchantFactory(name="GPU Labs")
    product = ProductFactory(merchant=merchant, name="GPU cloud")
    subscription = SubscriptionFactory(
        merchant=merchant, customer__merchant=merchant, customer__name="Acme", plan__product=product
    )
    issued(subscription, "2.00", now=JAN_1 + timedelta(days=20))
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when: the cost is defined, changed and read back
        cost = sdk.costs.create_cost(
            type_="metered",
            name="GPU time",
            unit_cost=0.0004,
            currency="USD",
            product_id=product.id,
            aggregation="SUM",
            event_type="gpu.job",
            unit="GPU-seconds",
            value_property="$.seconds",
            group_by={"gpu": "$.gpu"},
            merchant_id=merchant.id,
        )
        cost = sdk.costs.update_cost(id=cost.id, unit_cost=0.0005)
        assert (cost.unit_cost, cost.product_id, cost.aggregation) == ("0.0005", product.id, "SUM")
        assert sdk.costs.get_cost(id=cost.id).name == "GPU time"
        assert [
            c.id for c in sdk.costs.list_costs(request={"merchant_id": merchant.id, "product_id": product.id}).data
        ] == [cost.id]

        from costs.models import Cost

        stored = Cost.objects.get(pk=cost.id)
        record_usage(subscription.customer, stored, JAN_1 + timedelta(hours=2), 600, gpu="a100")
        record_usage(subscription.customer, stored, JAN_1 + timedelta(days=2), 400, gpu="h100")

        summary = sdk.costs.get_cost_summary(id=cost.id, from_=JAN_1, to=FEB_1, group_by="gpu", window="DAY")
        profitability = sdk.profitability.get_profitability(merchant_id=merchant.id, from_=JAN_1, to=FEB_1)
        march = sdk.profitability.get_profitability(
            merchant_id=merchant.id, from_=FEB_1 + timedelta(days=28), to=FEB_1 + timedelta(days=59)
        )

        sdk.costs.delete_cost(id=cost.id)
        with pytest.raises(errors.PaygenticError) as missing:
            sdk.costs.get_cost(id=cost.id)

    # then: 1,000 s × $0.0005 = $0.50 against $2.00 → $1.50, 75 %
    assert (summary.total_quantity, summary.total_cost) == (1000, 0.5)
    assert sorted((g.dimensions["gpu"], g.cost) for g in summary.groups) == [("a100", 0.3), ("h100", 0.2)]
    assert [(w.window_start.day, w.quantity) for w in summary.time_series] == [(1, 600), (3, 400)]
    [row] = profitability.rows
    assert (row.customer_name, row.net_revenue, row.total_cost, row.profit, row.margin_pct, row.cost_data) == (
        "Acme",
        "2.00",
        "0.50",
        "1.50",
        "75.00",
        "recorded",
    )
    assert missing.value.status_code == 404
    # an empty March says where the revenue (the invoice of the 21st) and the cost events lie
    assert (march.rows, march.revenue_range.from_, march.revenue_range.to) == (
        [],
        JAN_1 + timedelta(days=20),
        JAN_1 + timedelta(days=20),
    )
    assert (march.cost_range.from_, march.cost_range.to) == (JAN_1 + timedelta(hours=2), JAN_1 + timedelta(days=2))
    assert "revenue_range" not in profitability.model_fields_set and "cost_range" not in profitability.model_fields_set

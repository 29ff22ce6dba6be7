"""/v0/subscriptions/{id}/adjustments through DRF's APIClient and through the unmodified Paygentic client
against a live server: shapes, replays, 400 field errors, 404 across merchants, delete 204/200."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def _subscription(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    inputs = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input")
    customer = CustomerFactory(merchant=merchant, tax_rate=Decimal("0"))
    return subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1), inputs


def _post(api_client, path, body):
    response = api_client.post(path, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


@pytest.mark.django_db
def test_create_list_replay_and_delete(api_client, merchant):
    subscription, inputs = _subscription(merchant)
    path = f"/v0/subscriptions/{subscription.pk}/adjustments"
    body = {
        "type": "usageDiscount",
        "usageDiscount": "200000",
        "targetPriceIds": [inputs.pk],
        "effectiveFrom": "2026-01-01T00:00:00Z",
        "effectiveTo": "2026-02-01T00:00:00Z",
        "idempotencyKey": "deal-1",
    }
    code, created = _post(api_client, path, body)
    assert code == 201
    assert created == {
        "object": "subscriptionAdjustment",
        "id": created["id"],
        "subscriptionId": subscription.pk,
        "type": "usageDiscount",
        "percentageDiscount": None,
        "usageDiscount": "200000",
        "minimumQuantity": None,
        "maximumQuantity": None,
        "targetPriceIds": [inputs.pk],
        "effectiveFrom": "2026-01-01T00:00:00Z",
        "effectiveTo": "2026-02-01T00:00:00Z",
        "description": None,
        "createdAt": created["createdAt"],
    }
    assert _post(api_client, path, body) == (200, created)
    code, error = _post(api_client, path, {**body, "usageDiscount": "300000"})
    assert code == 409
    listed = api_client.get(path).json()
    assert listed == {"data": [created], "pagination": {"limit": 10, "offset": 0, "total": 1}}
    assert api_client.delete(f"{path}/{created['id']}").status_code == 204
    assert api_client.delete(f"{path}/{created['id']}").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"usageDiscount": "1e3"}, "usageDiscount"),
        ({"usageDiscount": "-1"}, "usageDiscount"),
        ({"targetPriceIds": []}, "targetPriceIds"),
        ({"effectiveTo": "2025-12-01T00:00:00Z"}, "effectiveTo"),
        ({"percentageDiscount": "0.1"}, "percentageDiscount"),
        ({"type": "percentageDiscount"}, "percentageDiscount"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(api_client, merchant, change, field):
    subscription, inputs = _subscription(merchant)
    body = {
        "type": "usageDiscount",
        "usageDiscount": "5",
        "targetPriceIds": [inputs.pk],
        "effectiveFrom": "2026-01-01T00:00:00Z",
        **change,
    }
    code, error = _post(api_client, f"/v0/subscriptions/{subscription.pk}/adjustments", body)
    assert code == 400
    assert field in json.dumps(error)


@pytest.mark.django_db
def test_another_merchants_subscription_is_not_found(api_client):
    subscription, _ = _subscription(MerchantFactory())
    assert api_client.get(f"/v0/subscriptions/{subscription.pk}/adjustments").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_attaches_a_discount_that_the_billing_run_applies(live_server):
    merchant = MerchantFactory(name="Neural Language Engine")
    _, key = api_key_create(merchant=merchant, name="sdk")
    subscription, inputs = _subscription(merchant)
    record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        waiver = sdk.subscriptions.create_subscription_adjustment(
            id=subscription.pk,
            create_subscription_adjustment_request={
                "type": "usageDiscount",
                "usage_discount": "200000",
                "target_price_ids": [inputs.pk],
                "effective_from": JAN_1,
                "effective_to": FEB_1,
                "idempotency_key": "waiver-jan",
            },
        )
        discount = sdk.subscriptions.create_subscription_adjustment(
            id=subscription.pk,
            create_subscription_adjustment_request={
                "type": "percentageDiscount",
                "percentage_discount": "0.1",
                "effective_from": JAN_1,
                "description": "Launch deal",
            },
        )
        with pytest.raises(errors.BadRequest):
            sdk.subscriptions.create_subscription_adjustment(
                id=subscription.pk,
                create_subscription_adjustment_request={
                    "type": "percentageDiscount",
                    "percentage_discount": "10",
                    "effective_from": JAN_1,
                },
            )
        page = sdk.subscriptions.list_subscription_adjustments(id=subscription.pk)
        assert [a.id for a in page.data] == [waiver.id, discount.id]
        assert page.pagination.total == 2
        assert waiver.usage_discount == "200000" and discount.percentage_discount == "0.1"
        billing_run_execute(as_of=FEB_1)
        january = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=JAN_1)
        # 1,000,000 − 200,000 = 800,000 × 0.000002 = 1.60; 10 % = −0.16; total 1.44
        assert january.total == Decimal("1.44")
        assert january.lines.get(kind=LineKind.DISCOUNT).amount == Decimal("-0.16")
        invoice_finalize(invoice=january, now=FEB_1)
        later = sdk.subscriptions.create_subscription_adjustment(
            id=subscription.pk,
            create_subscription_adjustment_request={
                "type": "minimumQuantity",
                "minimum_quantity": "4",
                "target_price_ids": [inputs.pk],
                "effective_from": FEB_1,
            },
        )
        # never billed: removed (204 → None); billed on the issued January invoice: retracted to its end (200)
        assert sdk.subscriptions.delete_subscription_adjustment(id=subscription.pk, adjustment_id=later.id) is None
        retracted = sdk.subscriptions.delete_subscription_adjustment(id=subscription.pk, adjustment_id=discount.id)
        assert retracted.effective_to == FEB_1 and retracted.id == discount.id
        again = sdk.subscriptions.delete_subscription_adjustment(id=subscription.pk, adjustment_id=discount.id)
        assert again.effective_to == FEB_1
        kept = sdk.subscriptions.delete_subscription_adjustment(id=subscription.pk, adjustment_id=waiver.id)
        assert kept.effective_to == FEB_1

"""Plan versions on the wire: list, mint, get, make default, and a subscription's versionMigration — through
DRF's APIClient, and through the unmodified Paygentic client against a live server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from invoicing.services import subscription_start
from tests.factories import BillableMetricFactory, CustomerFactory, FeeFactory, MerchantFactory, ProductFactory


def catalog(api, merchant):
    """An LLM Pro plan: platform fee $49 in advance, output tokens $0.002 per 1K."""
    product = ProductFactory(merchant=merchant, name="LLM")
    fee = {"id": FeeFactory(product=product, merchant=merchant, name="Platform fee").id}
    metric = {"id": BillableMetricFactory(product=product, merchant=merchant, name="Output tokens").id}
    _, platform = api.post(
        "/v0/prices",
        {
            "feeId": fee["id"],
            "invoiceDisplayName": "Platform fee",
            "paymentTerm": "in_advance",
            "billingCadence": "P1M",
            "properties": {"unitPrice": "49.00"},
        },
    )
    _, output = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric["id"],
            "model": "standard",
            "invoiceDisplayName": "Output tokens",
            "paymentTerm": "in_arrears",
            "properties": {"unitPrice": "0.000002"},
        },
    )
    status, plan = api.post(
        "/v0/plans",
        {
            "merchantId": merchant.id,
            "productId": product.id,
            "name": "LLM Pro",
            "currency": "USD",
            "prices": [{"priceId": platform["id"], "key": "platform"}, {"priceId": output["id"], "key": "output"}],
        },
    )
    assert status == 201, plan
    return plan, metric, platform


def new_output_price(api, metric, unit_price="0.000003"):
    status, price = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric["id"],
            "model": "standard",
            "invoiceDisplayName": "Output tokens",
            "paymentTerm": "in_arrears",
            "properties": {"unitPrice": unit_price},
        },
    )
    assert status == 201, price
    return price


def test_a_new_plan_has_version_one_holding_its_prices(api, merchant):
    plan, _, _ = catalog(api, merchant)

    status, page = api.get(f"/v0/plans/{plan['id']}/versions")

    assert status == 200
    assert page["object"] == "list" and page["pagination"]["total"] == 1
    [v1] = page["data"]
    assert (v1["object"], v1["versionNumber"], v1["status"], v1["isDefault"]) == ("plan_version", 1, "published", True)
    status, full = api.get(f"/v0/plans/{plan['id']}/versions/1")
    assert status == 200
    assert {(slot["key"], slot["properties"]["unitPrice"]) for slot in full["prices"]} == {
        ("platform", "49"),
        ("output", "0.000002"),
    }
    assert all(slot["priceDeleted"] is False for slot in full["prices"])


def test_mint_replaces_by_key_becomes_default_and_a_stale_base_is_409(api, merchant):
    plan, metric, platform = catalog(api, merchant)
    _, v1 = api.get(f"/v0/plans/{plan['id']}/versions/1")
    output = new_output_price(api, metric)

    status, v2 = api.post(
        f"/v0/plans/{plan['id']}/versions",
        {
            "prices": [{"priceId": platform["id"], "key": "platform"}, {"priceId": output["id"], "key": "output"}],
            "basedOnVersionId": v1["id"],
        },
    )

    assert status == 201, v2
    assert (v2["versionNumber"], v2["isDefault"], v2["basedOnVersionId"]) == (2, True, v1["id"])
    assert {(s["key"], s["id"]) for s in v2["prices"]} == {("platform", platform["id"]), ("output", output["id"])}
    _, v1_again = api.get(f"/v0/plans/{plan['id']}/versions/1")
    assert v1_again["isDefault"] is False
    _, read_plan = api.get(f"/v0/plans/{plan['id']}")
    assert {p["id"] for p in read_plan["prices"]} == {platform["id"], output["id"]}
    # a set built from v1 after v2 was minted
    status, body = api.post(
        f"/v0/plans/{plan['id']}/versions", {"prices": [platform["id"]], "basedOnVersionId": v1["id"]}
    )
    assert status == 409 and body["code"] == "VERSION_STALE"


def test_mint_field_errors(api, merchant):
    plan, _, _ = catalog(api, merchant)
    status, body = api.post(f"/v0/plans/{plan['id']}/versions", {"prices": []})
    assert status == 400 and "prices" in str(body)
    status, body = api.post(f"/v0/plans/{plan['id']}/versions", {"prices": [{"priceId": "price_nope", "key": "x"}]})
    assert status == 400 and "prices[0].priceId" in str(body)
    status, body = api.post(f"/v0/plans/{plan['id']}/versions", {"prices": [7]})
    assert status == 400
    status, _ = api.post("/v0/plans/plan_nope/versions", {"prices": ["price_x"]})
    assert status == 404


def test_transition_rolls_back_idempotently_and_needs_default_true(api, merchant):
    plan, metric, platform = catalog(api, merchant)
    output = new_output_price(api, metric)
    api.post(f"/v0/plans/{plan['id']}/versions", {"prices": [platform["id"], output["id"]]})

    status, body = api.patch(f"/v0/plans/{plan['id']}/versions/1", {})
    assert status == 400 and "default" in str(body)
    status, v1 = api.patch(f"/v0/plans/{plan['id']}/versions/1", {"default": True})
    assert status == 200 and v1["isDefault"] is True
    status, again = api.patch(f"/v0/plans/{plan['id']}/versions/1", {"default": True})
    assert status == 200 and again["isDefault"] is True
    status, _ = api.patch(f"/v0/plans/{plan['id']}/versions/9", {"default": True})
    assert status == 404


def test_another_merchants_plan_versions_are_not_found(api, rival, merchant):
    plan, _, _ = catalog(api, merchant)
    assert rival.get(f"/v0/plans/{plan['id']}/versions")[0] == 404
    assert rival.get(f"/v0/plans/{plan['id']}/versions/1")[0] == 404


def test_version_migration_pins_at_period_end(api, merchant):
    plan, metric, platform = catalog(api, merchant)
    output = new_output_price(api, metric)
    api.post(f"/v0/plans/{plan['id']}/versions", {"prices": [platform["id"], output["id"]]})
    customer = CustomerFactory(merchant=merchant)
    started = datetime.now(UTC)
    subscription = subscription_start(customer=customer, plan=plan_row(plan["id"]), started_at=started, now=started)

    status, body = api.post(f"/v0/subscriptions/{subscription.id}/versionMigration", {"targetVersionNumber": 1})

    assert status == 200, body
    assert body["migration"]["fromVersionNumber"] == 2 and body["migration"]["toVersionNumber"] == 1
    assert body["migration"]["changed"] is True and body["lineItems"] == {"syncFailed": False}
    assert body["subscription"]["versionPolicy"] == "pinned"
    status, body = api.post(f"/v0/subscriptions/{subscription.id}/versionMigration", {"targetVersionNumber": 5})
    assert status == 404
    status, body = api.post(f"/v0/subscriptions/{subscription.id}/versionMigration", {"targetVersionNumber": "x"})
    assert status == 400 and "targetVersionNumber" in str(body)
    status, body = api.post(
        f"/v0/subscriptions/{subscription.id}/versionMigration", {"targetVersionNumber": 1, "timing": "someday"}
    )
    assert status == 400 and "timing" in str(body)


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_mints_reads_rolls_back_and_migrates(live_server):
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    mid = merchant.id
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        prod = sdk.products.create(merchant_id=mid, name="LLM", description="LLM inference API")
        metric = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Output tokens",
            description="Completion tokens",
            unit="tokens",
            aggregation="SUM",
            event_type="llm.completion",
            value_property="$.output_tokens",
        )
        v1_price = sdk.prices.create(
            billable_metric_id=metric.id,
            model="standard",
            invoice_display_name="Output tokens",
            payment_term="in_arrears",
            properties={"unit_price": "0.000002"},
        )
        plan = sdk.plans.create(
            merchant_id=mid,
            product_id=prod.id,
            name="LLM Pro",
            currency="USD",
            billing_cadence="P1M",
            prices=[{"price_id": v1_price.id, "key": "output"}],
        )
        v2_price = sdk.prices.create(
            billable_metric_id=metric.id,
            model="standard",
            invoice_display_name="Output tokens",
            payment_term="in_arrears",
            properties={"unit_price": "0.000003"},
        )
        v1 = sdk.plans.get_plan_version(id=plan.id, version_number=1)

        v2 = sdk.plans.mint_plan_version(
            id=plan.id, prices=[{"price_id": v2_price.id, "key": "output"}], based_on_version_id=v1.id
        )

        assert (v2.version_number, v2.is_default, v2.based_on_version_id) == (2, True, v1.id)
        assert [(slot.key, slot.id, Decimal(slot.unit_amount)) for slot in v2.prices] == [
            ("output", v2_price.id, Decimal("0.000003"))
        ]
        listed = sdk.plans.list_plan_versions(id=plan.id)
        assert [(v.version_number, v.is_default) for v in listed.data] == [(2, True), (1, False)]
        with pytest.raises(errors.Error) as stale:
            sdk.plans.mint_plan_version(id=plan.id, prices=[v1_price.id], based_on_version_id=v1.id)
        assert stale.value.raw_response.status_code == 409
        back = sdk.plans.transition_plan_version(id=plan.id, version_number=1, default=True)
        assert back.is_default is True

        customer = CustomerFactory(merchant=merchant)
        now = datetime.now(UTC)
        subscription = subscription_start(customer=customer, plan=plan_row(plan.id), started_at=now, now=now)
        moved = sdk.subscriptions.migrate_subscription_version(
            id=subscription.id, target_version_number=2, timing="immediate"
        )
        assert (moved.migration.from_version_number, moved.migration.to_version_number) == (1, 2)
        assert moved.migration.changed is True and moved.subscription.version_policy == "pinned"
        assert moved.line_items.sync_failed is False


def plan_row(plan_id):
    from catalog.models import Plan

    return Plan.objects.get(pk=plan_id)

"""/v0/plans: create with the client's always-sent defaults, attach prices, list, get, PATCH, available."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Plan, Price, SubscriptionStatus
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    FeeFactory,
    MeteredPriceFactory,
    PlanFactory,
    ProductFactory,
    SubscriptionFactory,
)

CLIENT_DEFAULTS = {
    "defaultTaxCode": "eservice",
    "defaultTaxRate": 0.0,
    "taxBehavior": "exclusive",
    "renewalReminderEnabled": True,
    "renewalReminderDays": 3,
    "billingVersion": 1,
    "stablePriceIds": True,
}


@pytest.fixture
def product(merchant):
    return ProductFactory(merchant=merchant)


def unattached_price(api, product, name="Input tokens", unit_price="0.000002"):
    metric = BillableMetricFactory(product=product, name=name)
    status, body = api.post(
        "/v0/prices",
        {
            "billableMetricId": metric.id,
            "model": "standard",
            "invoiceDisplayName": name,
            "paymentTerm": "in_arrears",
            "properties": {"unitPrice": unit_price},
        },
    )
    assert status == 201
    return body["id"]


def plan_body(merchant, product, **extra):
    return {
        "merchantId": merchant.id,
        "productId": product.id,
        "name": "Pro",
        "currency": "usd",
        **CLIENT_DEFAULTS,
        **extra,
    }


def test_create_attaches_prices_and_answers_the_plan(api, merchant, product):
    # given
    p_in = unattached_price(api, product, "Input tokens")
    p_out = unattached_price(api, product, "Output tokens", "0.000006")

    # when
    status, body = api.post(
        "/v0/plans",
        plan_body(merchant, product, billingCadence="P1M", prices=[{"priceId": p_in, "key": "input_tokens"}, p_out]),
    )

    # then
    assert status == 201, body
    plan = Plan.objects.get()
    assert {k: body[k] for k in body if k not in ("prices", "createdAt", "updatedAt")} == {
        "id": plan.id,
        "object": "plan",
        "merchantId": merchant.id,
        "productId": product.id,
        "name": "Pro",
        "description": "",
        "invoiceDisplayName": "",
        "currency": "USD",
        "billingCadence": "P1M",
        "billingInterval": "monthly",
        "billingAnchor": None,
        "defaultTaxCode": "eservice",
        "defaultTaxRate": 0,
        "taxBehavior": "exclusive",
        "renewalReminderEnabled": True,
        "renewalReminderDays": 3,
        "billingVersion": 1,
        "stablePriceIds": True,
        "versionTransition": {"effectiveDate": "end_of_current_period", "proration": "none"},
        "paymentTerm": {"in_arrears": True, "in_advance": False},
        "minimumCommitment": None,
        "discountPercent": None,
        "thresholdAmount": None,
        "thresholdLadder": [],
        "thresholdRecurring": False,
        "archivedAt": None,
    }
    prices = {p["id"]: p for p in body["prices"]}
    assert set(prices) == {p_in, p_out}
    assert prices[p_in]["key"] == "input_tokens" and prices[p_out]["key"] == "output_tokens"
    assert prices[p_in]["currency"] == "USD" and prices[p_in]["unitAmount"] == "0.000002"
    assert prices[p_in]["tax"] == {"supplyScope": "IN_SCOPE"} and prices[p_in]["model"] == "standard"
    assert set(Price.objects.values_list("plan_id", flat=True)) == {plan.id}


def test_tax_rate_is_read_as_a_decimal(api, merchant, product):
    status, body = api.post("/v0/plans", plan_body(merchant, product, defaultTaxRate=8.25))

    assert status == 201 and body["defaultTaxRate"] == 8.25
    assert Plan.objects.get().default_tax_rate == Decimal("8.25")


def test_billing_interval_maps_to_the_cadence_and_cadence_wins(api, merchant, product):
    _, yearly = api.post("/v0/plans", plan_body(merchant, product, billingInterval="annual"))
    _, both = api.post("/v0/plans", plan_body(merchant, product, billingInterval="yearly", billingCadence="P3M"))

    assert (yearly["billingCadence"], yearly["billingInterval"]) == ("P1Y", "yearly")
    assert (both["billingCadence"], both["billingInterval"]) == ("P3M", "quarterly")


def test_attaching_a_price_of_another_plan_answers_409(api, merchant, product):
    taken = MeteredPriceFactory(plan__product=product, plan__merchant=merchant)

    status, body = api.post("/v0/plans", plan_body(merchant, product, prices=[taken.id]))

    assert status == 409
    assert body["code"] == "PRICE_ATTACHED_TO_OTHER_PLAN"
    assert Plan.objects.count() == 1  # only the factory's plan: the create rolled back


def test_a_price_of_another_product_is_a_400_naming_the_line(api, merchant, product):
    ok = unattached_price(api, product)
    elsewhere = unattached_price(api, ProductFactory(merchant=merchant), "Other")

    status, body = api.post("/v0/plans", plan_body(merchant, product, prices=[ok, elsewhere]))

    assert status == 400
    assert [e["field"] for e in body["errors"]] == ["prices[1]"]
    assert not Plan.objects.exists()
    assert not Price.objects.filter(plan__isnull=False).exists()


def test_unknown_price_ids_and_bad_keys_name_the_line(api, merchant, product):
    ok = unattached_price(api, product)

    status, body = api.post("/v0/plans", plan_body(merchant, product, prices=[ok, "price_nope"]))
    assert status == 400 and [e["field"] for e in body["errors"]] == ["prices[1]"]

    status, body = api.post("/v0/plans", plan_body(merchant, product, prices=[{"priceId": ok, "key": "Bad Key"}]))
    assert status == 400 and [e["field"] for e in body["errors"]] == ["prices[0].key"]


def test_unknown_currency_and_future_anchor_are_refused(api, merchant, product):
    status, body = api.post("/v0/plans", plan_body(merchant, product, currency="XYZ"))
    assert status == 400 and body["errors"][0]["field"] == "currency"

    status, body = api.post("/v0/plans", plan_body(merchant, product, billingAnchor="2999-01-01T00:00:00Z"))
    assert status == 400 and body["errors"][0]["field"] == "billingAnchor"


def test_patch_replaces_the_price_set(api, merchant, product):
    first = unattached_price(api, product, "First")
    second = unattached_price(api, product, "Second")
    _, plan = api.post("/v0/plans", plan_body(merchant, product, prices=[first]))

    status, body = api.patch(f"/v0/plans/{plan['id']}", {"prices": [second], "name": "Pro 2"})

    assert status == 200, body
    assert ([p["id"] for p in body["prices"]], body["name"]) == ([second], "Pro 2")
    assert Price.objects.get(pk=first).plan_id is None


def test_patch_prices_of_a_plan_with_live_subscriptions_answers_409(api, merchant, product):
    price = MeteredPriceFactory(plan__product=product, plan__merchant=merchant)
    SubscriptionFactory(plan=price.plan)
    other = unattached_price(api, product)

    status, body = api.patch(f"/v0/plans/{price.plan_id}", {"prices": [other]})

    assert status == 409 and body["code"] == "PLAN_IN_USE"
    assert body["details"]["fields"] == ["prices"]
    status, body = api.patch(f"/v0/plans/{price.plan_id}", {"description": "Still editable"})
    assert (status, body["description"]) == (200, "Still editable")


def test_list_get_and_available(api, merchant, product):
    # given
    subscribed = PlanFactory(product=product, merchant=merchant, name="Subscribed")
    sibling = PlanFactory(product=product, merchant=merchant, name="Sibling")
    open_product = ProductFactory(merchant=merchant)
    open_plan = PlanFactory(product=open_product, merchant=merchant, name="Open")
    ended = PlanFactory(product=ProductFactory(merchant=merchant), merchant=merchant, name="Ended")
    customer = CustomerFactory(merchant=merchant)
    SubscriptionFactory(plan=subscribed, customer=customer)
    SubscriptionFactory(plan=ended, customer=customer, status=SubscriptionStatus.TERMINATED)

    # when / then
    status, body = api.get("/v0/plans", merchantId=merchant.id, productId=product.id)
    assert status == 200 and [p["id"] for p in body["data"]] == [subscribed.id, sibling.id]

    status, body = api.get(f"/v0/plans/{open_plan.id}")
    assert (status, body["object"], body["prices"]) == (200, "plan", [])

    status, body = api.get("/v0/plans/available", customerId=customer.id)
    assert status == 200
    assert sorted(p["id"] for p in body["data"]) == sorted([open_plan.id, ended.id])
    assert body["pagination"]["total"] == 2

    status, body = api.get("/v0/plans/available")
    assert status == 400 and body["errors"][0]["field"] == "customerId"


def test_unsupported_options_are_refused(api, merchant, product):
    status, body = api.post("/v0/plans", plan_body(merchant, product, billingVersion=0))
    assert status == 400 and body["errors"][0]["field"] == "billingVersion"

    status, body = api.post(
        "/v0/plans", plan_body(merchant, product, creditAllocations=[{"pricingUnitId": "pu_1", "amount": 10}])
    )
    assert status == 400 and body["errors"][0]["field"] == "creditAllocations"


def test_fee_and_metric_lines_mix(api, merchant, product):
    fee = FeeFactory(product=product)
    _, fee_price = api.post(
        "/v0/prices",
        {
            "feeId": fee.id,
            "invoiceDisplayName": "Platform",
            "paymentTerm": "in_advance",
            "billingCadence": "P1M",
            "properties": {"unitPrice": "49"},
        },
    )

    status, body = api.post(
        "/v0/plans", plan_body(merchant, product, prices=[fee_price["id"], unattached_price(api, product)])
    )

    assert status == 201
    assert body["paymentTerm"] == {"in_arrears": True, "in_advance": True}


def test_listing_plans_takes_a_fixed_number_of_queries(api, merchant, django_assert_num_queries):
    for _ in range(3):
        price = MeteredPriceFactory(plan__product__merchant=merchant)
        MeteredPriceFactory(plan=price.plan)

    # auth (key) + count + plans + plan prices + tiers + rates
    with django_assert_num_queries(6):
        status, body = api.get("/v0/plans")

    assert status == 200 and [len(p["prices"]) for p in body["data"]] == [2, 2, 2]


def test_a_plan_takes_a_usage_threshold_within_its_bounds(api, merchant, product):
    # Meterline extension: threshold (progressive) billing, invoicing/THRESHOLDS.md
    status, body = api.post("/v0/plans", plan_body(merchant, product, thresholdAmount="100", thresholdRecurring=True))
    assert status == 201, body
    assert (body["thresholdAmount"], body["thresholdRecurring"]) == ("100", True)
    plan = Plan.objects.get()
    assert (plan.threshold_amount, plan.threshold_recurring) == (Decimal("100"), True)

    for refused, message in (("0", "Must be at least 0.01."), ("1000000000.01", "Must be at most 1000000000.")):
        status, body = api.patch(f"/v0/plans/{plan.id}", {"thresholdAmount": refused})
        assert status == 400
        assert (body["errors"][0]["field"], body["errors"][0]["message"]) == ("thresholdAmount", message)

    status, body = api.patch(f"/v0/plans/{plan.id}", {"thresholdLadder": ["500", "1000.50"]})
    assert status == 200 and body["thresholdLadder"] == ["500", "1000.5"]
    for ladder, message in ((["500", "400"], "The thresholds must increase."), (["0"], "Must be at least 0.01.")):
        status, body = api.patch(f"/v0/plans/{plan.id}", {"thresholdLadder": ladder})
        assert status == 400 and body["errors"][0]["field"].startswith("thresholdLadder"), body
        assert body["errors"][0]["message"] == message

    status, body = api.patch(f"/v0/plans/{plan.id}", {"thresholdAmount": None})
    assert status == 200 and body["thresholdAmount"] is None

"""Subscription-only intervals on the wire (/v0/subscriptions/{id}/intervals): the unmodified Paygentic client adds
a platform add-on outside the plan, reads it back as ``subscription_owned``, closes it and reads the change log;
refusals through DRF's client (400 naming the field, 409 for an overlap and a real-time metered add)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.models import PaymentTerm
from catalog.services import api_key_create
from invoicing.models import Invoice, InvoiceKind, SubscriptionIntervalChange, SubscriptionPriceInterval
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price

APR_1 = datetime(2026, 4, 1, tzinfo=UTC)
APR_11 = datetime(2026, 4, 11, tzinfo=UTC)
MAY_1 = datetime(2026, 5, 1, tzinfo=UTC)


def _catalog(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    fee_price(plan, "49", name="Pro plan", plan_line_key="pro", term=PaymentTerm.IN_ARREARS)
    addons = PlanFactory(merchant=merchant, product=plan.product, name="Add-ons")
    prices = {
        "support": fee_price(addons, "300", name="Dedicated support"),
        "setup": fee_price(addons, "500", name="Set-up", cadence="P0D"),
        "images": metered_price(addons, "0.04", name="Image generations", unit="images"),
    }
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    subscription = subscription_start(customer=customer, plan=plan, started_at=APR_1, now=APR_1)
    return subscription, prices


def _op(price, *, key="platform-addon", start="2026-04-11T00:00:00Z", mode="advance", **extra):
    return {
        "priceKey": key,
        "priceId": price.pk,
        "unitPrice": None,
        "baseQuantity": "1",
        "billingCadence": "P1M",
        "billingMode": mode,
        "startDate": start,
        **extra,
    }


def _post(api_client, subscription, body):
    response = api_client.post(
        f"/v0/subscriptions/{subscription.pk}/intervals", data=json.dumps(body), content_type="application/json"
    )
    return response.status_code, response.json()


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_adds_an_add_on_outside_the_plan_and_closes_it(live_server):
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    subscription, prices = _catalog(merchant)
    support = prices["support"]
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        added = sdk.subscriptions.edit_subscription_intervals(
            id=subscription.pk,
            edit_subscription_intervals_request={"add": [_op(support)], "changeReason": "commercial"},
        )
        owned = [i for i in added.intervals if i.kind == "subscription_owned"]
        assert [(i.price_key, i.price_id, i.unit_price, i.billing_mode, i.start_date, i.end_date) for i in owned] == [
            ("platform-addon", support.pk, "300", "advance", APR_11, None)
        ]
        assert added.interval_change.intervals[0].after.resolved_unit_price == "300"
        listed = sdk.subscriptions.get_subscription_intervals(id=subscription.pk).intervals
        assert [(i.price_key, i.kind) for i in listed] == [
            ("pro", "plan_line"),
            ("platform-addon", "subscription_owned"),
        ]

        billing_run_execute(as_of=MAY_1)
        april = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=APR_1)
        invoice_finalize(invoice=april, now=MAY_1)
        # Pro 49.00 in arrears + support April 11–30 (300 × 20/30 = 200.00) + support May ahead 300.00
        assert april.total == Decimal("549.00")

        # billed now: a remove is refused, a close after the period billed ahead is accepted
        with pytest.raises(errors.Error) as billed:
            sdk.subscriptions.edit_subscription_intervals(
                id=subscription.pk, edit_subscription_intervals_request={"remove": [{"id": owned[0].id}]}
            )
        assert billed.value.data.code == "INTERVAL_BILLED"
        closed = sdk.subscriptions.edit_subscription_intervals(
            id=subscription.pk,
            edit_subscription_intervals_request={"edit": [{"id": owned[0].id, "endDate": "2026-06-16T00:00:00Z"}]},
        )
        assert [i.end_date for i in closed.intervals if i.id == owned[0].id] == [datetime(2026, 6, 16, tzinfo=UTC)]
        changes = sdk.subscriptions.list_subscription_interval_changes(id=subscription.pk).data
        assert [c.intervals[0].interval_id for c in changes] == [owned[0].id, owned[0].id]
        assert changes[1].intervals[0].before.end_date is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_op", "field"),
    [
        (lambda p: {**_op(p["support"]), "priceId": "price_nope"}, "add[0].priceId"),
        (lambda p: {k: v for k, v in _op(p["support"]).items() if k != "priceId"}, "add[0].priceId"),
        (lambda p: _op(p["setup"]), "add[0].priceId"),
        (lambda p: _op(p["support"], start="2026-03-31T00:00:00Z"), "add[0].startDate"),
        (lambda p: _op(p["support"], endDate="2026-04-11T00:00:00Z"), "add[0].endDate"),
        (lambda p: _op(p["support"], mode="arrears"), "add[0].billingMode"),
        (lambda p: {**_op(p["support"]), "billingCadence": "P1Y"}, "add[0].billingCadence"),
        (lambda p: _op(p["images"], mode="arrears", baseQuantity="2"), "add[0].baseQuantity"),
        (lambda p: {**_op(p["support"]), "unitPrice": "-5"}, "add[0].unitPrice"),
        (
            lambda p: _op(
                p["support"], quantityTransitions=[{"effectiveDate": "2026-04-20T00:00:00Z", "quantity": "2"}]
            ),
            "add[0].quantityTransitions",
        ),
    ],
)
def test_bad_subscription_only_adds_are_400_naming_the_field(api_client, merchant, make_op, field):
    subscription, prices = _catalog(merchant)
    code, error = _post(api_client, subscription, {"add": [make_op(prices)]})
    assert code == 400, error
    assert [e["field"] for e in error["errors"]] == [field]
    assert not SubscriptionPriceInterval.objects.exists()
    assert not SubscriptionIntervalChange.objects.exists()


@pytest.mark.django_db
def test_another_merchants_price_is_not_found_as_a_catalog_price(api_client, merchant):
    subscription, _ = _catalog(merchant)
    _, foreign = _catalog(MerchantFactory())
    code, error = _post(api_client, subscription, {"add": [_op(foreign["support"])]})
    assert (code, [e["field"] for e in error["errors"]]) == (400, ["add[0].priceId"])


@pytest.mark.django_db
def test_a_price_of_the_plan_under_another_key_is_refused(api_client, merchant):
    subscription, _ = _catalog(merchant)
    plan_fee = subscription.plan.prices.get(plan_line_key="pro")
    code, error = _post(api_client, subscription, {"add": [_op(plan_fee, mode="arrears")]})
    assert (code, [e["field"] for e in error["errors"]]) == (400, ["add[0].priceId"])
    assert "pro" in error["errors"][0]["message"]


@pytest.mark.django_db
def test_a_second_interval_with_the_same_key_overlaps(api_client, merchant):
    subscription, prices = _catalog(merchant)
    assert _post(api_client, subscription, {"add": [_op(prices["support"])]})[0] == 200
    code, error = _post(api_client, subscription, {"add": [_op(prices["support"], start="2026-04-20T00:00:00Z")]})
    assert (code, error["code"]) == (409, "INTERVAL_OVERLAP")
    assert SubscriptionPriceInterval.objects.count() == 1


@pytest.mark.django_db
def test_a_real_time_subscription_takes_fees_but_not_metered_intervals(api_client, merchant):
    subscription, prices = _catalog(merchant)
    subscription.billing_mode = "real_time"
    subscription.save(update_fields=["billing_mode"])
    code, error = _post(
        api_client, subscription, {"add": [_op(prices["images"], key="images", mode="arrears", unitPrice="0.03")]}
    )
    assert (code, error["code"]) == (409, "REAL_TIME_METERED_INTERVAL")
    code, added = _post(api_client, subscription, {"add": [_op(prices["support"])]})
    assert code == 200, added
    assert [i["kind"] for i in added["intervals"]].count("subscription_owned") == 1


@pytest.mark.django_db
def test_an_edit_of_a_fixed_field_is_400_and_an_unbilled_remove_deletes(api_client, merchant):
    subscription, prices = _catalog(merchant)
    _, added = _post(api_client, subscription, {"add": [_op(prices["support"])]})
    interval_id = next(i["id"] for i in added["intervals"] if i["kind"] == "subscription_owned")
    code, error = _post(api_client, subscription, {"edit": [{"id": interval_id, "priceId": prices["images"].pk}]})
    assert (code, [e["field"] for e in error["errors"]]) == (400, ["edit[0].priceId"])
    code, edited = _post(api_client, subscription, {"edit": [{"id": interval_id, "unitPrice": "250"}]})
    assert code == 200 and [i["unitPrice"] for i in edited["intervals"] if i["id"] == interval_id] == ["250"]
    code, removed = _post(api_client, subscription, {"remove": [{"id": interval_id}]})
    assert code == 200 and [i["kind"] for i in removed["intervals"]] == ["plan_line"]
    assert not SubscriptionPriceInterval.objects.exists()

"""/v0/subscriptions/{id}/intervals and the interval-change listings: an Enterprise customer's negotiated token
rate set through the unmodified Paygentic client against a live server, billed by the next invoice and never
by the invoiced one; refusals (400 naming the field, 409 states, 404 across merchants) through DRF's client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.models import Price
from catalog.services import api_key_create
from invoicing.models import Invoice, InvoiceKind, SubscriptionIntervalChange
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


def _enterprise(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Enterprise")
    inputs = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input", plan_line_key="input_tokens")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    return subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1), inputs


def _add(start: str, unit_price: str | None = "0.0000015", **extra) -> dict:
    op = {
        "priceKey": "input_tokens",
        "unitPrice": unit_price,
        "baseQuantity": "1",
        "billingCadence": "P1M",
        "billingMode": "arrears",
        "startDate": start,
        **extra,
    }
    return {"add": [op], "changeReason": "commercial"}


def _post(api_client, path, body):
    response = api_client.post(path, data=json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def _january_invoiced(subscription, inputs):
    record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
    billing_run_execute(as_of=FEB_1)
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=JAN_1)


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_sets_a_negotiated_rate_the_next_invoice_bills(live_server):
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    subscription, inputs = _enterprise(merchant)
    january = _january_invoiced(subscription, inputs)
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # a draft in its grace period would be re-rated by its refresh: refused until issued
        with pytest.raises(errors.Error) as draft_open:
            sdk.subscriptions.edit_subscription_intervals(
                id=subscription.pk, edit_subscription_intervals_request=_add("2026-02-01T00:00:00Z")
            )
        assert draft_open.value.data.code == "INVOICE_DRAFT_OPEN"
        invoice_finalize(invoice=january, now=FEB_1)
        # 1,000,000 × 0.000002 = 2.00 at the list rate
        assert january.total == Decimal("2.00")

        before = sdk.subscriptions.get_subscription_intervals(id=subscription.pk).intervals
        assert [(i.id, i.price_key, i.kind, i.unit_price, i.start_date, i.end_date) for i in before] == [
            (inputs.pk, "input_tokens", "plan_line", None, JAN_1, None)
        ]
        # January is invoiced: a rate from January 1 would re-rate it
        with pytest.raises(errors.BadRequest):
            sdk.subscriptions.edit_subscription_intervals(
                id=subscription.pk, edit_subscription_intervals_request=_add("2026-01-01T00:00:00Z")
            )

        edited = sdk.subscriptions.edit_subscription_intervals(
            id=subscription.pk,
            edit_subscription_intervals_request={
                **_add("2026-02-01T00:00:00Z"),
                "description": "Enterprise deal, 25 % off input tokens",
                "metadata": {"crmDealId": "D-42"},
            },
        )
        rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
        assert rate.unit_price == Decimal("0.0000015")
        assert not edited.unchanged
        assert [(i.id, i.price_id, i.unit_price, i.start_date, i.end_date) for i in edited.intervals] == [
            (inputs.pk, inputs.pk, None, JAN_1, FEB_1),
            (rate.pk, inputs.pk, "0.0000015", FEB_1, None),
        ]
        change = edited.interval_change
        assert (change.change_reason, change.description, change.metadata) == (
            "commercial",
            "Enterprise deal, 25 % off input tokens",
            {"crmDealId": "D-42"},
        )
        entries = {e.interval_id: e for e in change.intervals}
        assert entries[rate.pk].before is None and entries[rate.pk].after.resolved_unit_price == "0.0000015"
        assert entries[inputs.pk].before.end_date is None and entries[inputs.pk].after.end_date == FEB_1

        # re-sent after a timeout: it overlaps the first add
        with pytest.raises(errors.Error) as overlap:
            sdk.subscriptions.edit_subscription_intervals(
                id=subscription.pk, edit_subscription_intervals_request=_add("2026-02-01T00:00:00Z")
            )
        assert overlap.value.data.code == "INTERVAL_OVERLAP"

        record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 2, 10, tzinfo=UTC), 2_000_000)
        billing_run_execute(as_of=MAR_1)
        february = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=FEB_1)
        # 2,000,000 × 0.0000015 = 3.00 at the negotiated rate (4.00 at the list rate); January keeps its 2.00
        assert february.total == Decimal("3.00")
        january.refresh_from_db()
        assert january.total == Decimal("2.00")
        invoice_finalize(invoice=february, now=MAR_1)

        # billed now: changing it would change a billing period that exists
        with pytest.raises(errors.Error) as billed:
            sdk.subscriptions.edit_subscription_intervals(
                id=subscription.pk,
                edit_subscription_intervals_request={"edit": [{"id": rate.pk, "unit_price": "0.000001"}]},
            )
        assert billed.value.data.code == "INTERVAL_BILLED"

        listed = sdk.subscriptions.list_subscription_interval_changes(id=subscription.pk)
        assert [c.id for c in listed.data] == [change.id] and listed.pagination.total == 1
        merchant_wide = sdk.subscriptions.list_interval_changes(request={"change_reason": "commercial"})
        assert [c.id for c in merchant_wide.data] == [change.id]
        assert sdk.subscriptions.list_interval_changes(request={"change_reason": "correction"}).data == []


@pytest.mark.django_db
def test_an_unbilled_override_is_edited_and_removed_and_each_change_recorded(api_client, merchant):
    subscription, inputs = _enterprise(merchant)
    path = f"/v0/subscriptions/{subscription.pk}/intervals"
    code, added = _post(api_client, path, _add("2026-01-01T00:00:00Z"))
    assert code == 200
    rate_id = added["intervals"][0]["id"]
    assert [(i["id"], i["unitPrice"]) for i in added["intervals"]] == [(rate_id, "0.0000015")]
    code, edited = _post(api_client, path, {"edit": [{"id": rate_id, "unitPrice": "0.000001"}]})
    assert code == 200 and edited["intervals"][0]["unitPrice"] == "0.000001"
    assert edited["intervalChange"]["changeReason"] == "unspecified"
    code, same = _post(api_client, path, {"edit": [{"id": rate_id, "unitPrice": "0.000001"}]})
    assert (code, same["unchanged"], same["intervalChange"]) == (200, True, None)
    code, removed = _post(api_client, path, {"remove": [{"id": rate_id}]})
    assert code == 200
    assert [(i["id"], i["unitPrice"]) for i in removed["intervals"]] == [(inputs.pk, None)]
    assert not Price.objects.filter(customer=subscription.customer).exists()
    assert SubscriptionIntervalChange.objects.filter(subscription=subscription).count() == 3
    listed = api_client.get(f"/v0/subscriptions/{subscription.pk}/intervalChanges").json()
    # the first add replaces the whole plan line (it starts with the subscription): two entries
    assert [len(c["intervals"]) for c in listed["data"]] == [2, 1, 2]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        # inside a period: a rate replaces the plan price for whole periods
        (_add("2026-02-15T00:00:00Z"), "add[0].startDate"),
        (_add("2025-12-01T00:00:00Z"), "add[0].startDate"),
        (_add("2026-01-01T00:00:00Z", endDate="2026-01-01T00:00:00Z"), "add[0].endDate"),
        (_add("2026-01-01T00:00:00Z", unit_price="1e-3"), "add[0].unitPrice"),
        (_add("2026-01-01T00:00:00Z", billingMode="advance"), "add[0].billingMode"),
        (_add("2026-01-01T00:00:00Z", baseQuantity="2"), "add[0].baseQuantity"),
        (
            {
                **_add("2026-01-01T00:00:00Z"),
                "add": [{**_add("2026-01-01T00:00:00Z")["add"][0], "priceKey": "no_such_line"}],
            },
            # a key outside the plan is a subscription-only interval: it names its catalog price
            "add[0].priceId",
        ),
        ({"edit": [{"id": "price_nope", "unitPrice": "1"}]}, "edit[0].id"),
        ({"remove": []}, "add"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(api_client, merchant, body, field):
    subscription, _ = _enterprise(merchant)
    code, error = _post(api_client, f"/v0/subscriptions/{subscription.pk}/intervals", body)
    assert code == 400, error
    assert [e["field"] for e in error["errors"]] == [field]
    assert not SubscriptionIntervalChange.objects.exists()


@pytest.mark.django_db
def test_another_merchants_subscription_is_not_found(api_client):
    subscription, _ = _enterprise(MerchantFactory())
    assert api_client.get(f"/v0/subscriptions/{subscription.pk}/intervals").status_code == 404
    assert api_client.get(f"/v0/subscriptions/{subscription.pk}/intervalChanges").status_code == 404


@pytest.mark.django_db
def test_a_real_time_subscription_is_refused_and_nothing_written(api_client, merchant):
    subscription, _ = _enterprise(merchant)
    subscription.billing_mode = "real_time"
    subscription.save(update_fields=["billing_mode"])
    code, error = _post(api_client, f"/v0/subscriptions/{subscription.pk}/intervals", _add("2026-01-01T00:00:00Z"))
    assert (code, error["code"]) == (409, "REAL_TIME_SUBSCRIPTION")
    assert not Price.objects.filter(customer=subscription.customer).exists()


@pytest.mark.django_db
def test_after_a_mid_term_upgrade_the_intervals_are_the_new_plans_from_the_change(api_client, merchant):
    from invoicing.services import subscription_upgrade

    subscription, _ = _enterprise(merchant)
    bigger = PlanFactory(merchant=merchant, product=subscription.plan.product, name="Enterprise Plus")
    plus_inputs = metered_price(bigger, "0.0000018", name="Input tokens", plan_line_key="input_tokens")
    change = datetime(2026, 1, 20, tzinfo=UTC)
    subscription_upgrade(subscription=subscription, new_plan=bigger, now=change)
    intervals = api_client.get(f"/v0/subscriptions/{subscription.pk}/intervals").json()["intervals"]
    assert [(i["id"], i["startDate"]) for i in intervals] == [(plus_inputs.pk, "2026-01-20T00:00:00Z")]
    # the plan-change invoice billed the old plan up to January 20; a negotiated rate starts there
    for draft in Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.PLAN_CHANGE, status="draft"):
        invoice_finalize(invoice=draft, now=change)
    path = f"/v0/subscriptions/{subscription.pk}/intervals"
    assert _post(api_client, path, _add("2026-01-01T00:00:00Z"))[0] == 400
    code, added = _post(api_client, path, _add("2026-01-20T00:00:00Z"))
    assert code == 200, added
    assert [(i["priceId"], i["unitPrice"], i["startDate"]) for i in added["intervals"]] == [
        (plus_inputs.pk, "0.0000015", "2026-01-20T00:00:00Z")
    ]


@pytest.mark.django_db
def test_an_override_with_an_end_date_then_the_plan_line_resumes(api_client, merchant):
    subscription, inputs = _enterprise(merchant)
    path = f"/v0/subscriptions/{subscription.pk}/intervals"
    # an end inside February closes the rate at the end of February's period
    code, added = _post(api_client, path, _add("2026-01-01T00:00:00Z", endDate="2026-02-15T00:00:00Z"))
    assert code == 200, added
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    assert [(i["id"], i["unitPrice"], i["startDate"], i["endDate"]) for i in added["intervals"]] == [
        (rate.pk, "0.0000015", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"),
        (f"{inputs.pk}:{rate.pk}", None, "2026-03-01T00:00:00Z", None),
    ]
    # a second rate from April; March keeps the plan price
    code, second = _post(api_client, path, _add("2026-04-01T00:00:00Z", unit_price="0.000001"))
    assert code == 200, second
    assert [(i["unitPrice"], i["startDate"], i["endDate"]) for i in second["intervals"]] == [
        ("0.0000015", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"),
        (None, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        ("0.000001", "2026-04-01T00:00:00Z", None),
    ]
    # re-opening the first would overlap the second
    code, error = _post(api_client, path, {"edit": [{"id": rate.pk, "endDate": None}]})
    assert (code, error["code"]) == (409, "INTERVAL_OVERLAP")
    # the resumed plan line is the plan's: its end is where the next override starts
    resumed = f"{inputs.pk}:{rate.pk}"
    code, error = _post(api_client, path, {"edit": [{"id": resumed, "endDate": "2026-05-01T00:00:00Z"}]})
    assert code == 400 and error["errors"][0]["field"] == "edit[0].endDate"


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_closes_and_reopens_an_override(live_server):
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    subscription, inputs = _enterprise(merchant)
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        added = sdk.subscriptions.edit_subscription_intervals(
            id=subscription.pk,
            edit_subscription_intervals_request=_add("2026-01-01T00:00:00Z", endDate="2026-03-01T00:00:00Z"),
        )
        rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
        assert [(i.id, i.unit_price, i.start_date, i.end_date) for i in added.intervals] == [
            (rate.pk, "0.0000015", JAN_1, MAR_1),
            (f"{inputs.pk}:{rate.pk}", None, MAR_1, None),
        ]
        reopened = sdk.subscriptions.edit_subscription_intervals(
            id=subscription.pk, edit_subscription_intervals_request={"edit": [{"id": rate.pk, "end_date": None}]}
        )
        assert [(i.id, i.end_date) for i in reopened.intervals] == [(rate.pk, None)]
        closed = sdk.subscriptions.edit_subscription_intervals(
            id=subscription.pk,
            edit_subscription_intervals_request={"edit": [{"id": rate.pk, "end_date": FEB_1}]},
        )
        assert [(i.id, i.start_date, i.end_date) for i in closed.intervals] == [
            (rate.pk, JAN_1, FEB_1),
            (f"{inputs.pk}:{rate.pk}", FEB_1, None),
        ]

        # January invoiced at the rate, February at the plan price; an end before February 1 is refused
        record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
        record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 2, 9, tzinfo=UTC), 1_000_000)
        billing_run_execute(as_of=FEB_1)
        invoice_finalize(invoice=Invoice.objects.get(subscription=subscription, period_start=JAN_1), now=FEB_1)
        billing_run_execute(as_of=MAR_1)
        february = Invoice.objects.get(subscription=subscription, period_start=FEB_1)
        invoice_finalize(invoice=february, now=MAR_1)
        # 1,000,000 × 0.0000015 = 1.50 in January; 1,000,000 × 0.000002 = 2.00 in February
        assert Invoice.objects.get(subscription=subscription, period_start=JAN_1).total == Decimal("1.50")
        assert february.total == Decimal("2.00")
        with pytest.raises(errors.Error) as billed:
            sdk.subscriptions.edit_subscription_intervals(
                id=subscription.pk, edit_subscription_intervals_request={"edit": [{"id": rate.pk, "end_date": None}]}
            )
        assert billed.value.data.code == "INTERVAL_BILLED"

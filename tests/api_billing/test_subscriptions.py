"""/v0/subscriptions: create (Invoice 0 and pending_payment), get, list, update, terminate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from paygentic_sdk.models import Subscription as ClientSubscription

from catalog.models import Customer, SubscriptionStatus
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus

from .factories import llm_plan

pytestmark = pytest.mark.django_db

REQUIRED = {
    "id", "object", "merchantId", "createdAt", "customerId", "name", "planId", "versionPolicy", "startedAt",
    "elapsedPeriodBilling", "billingStartsAt", "billingAnchor", "billingCadence", "status", "updatedAt",
    "paymentTermDays",
}  # fmt: skip


def test_plan_with_in_advance_fee_waits_for_invoice_zero(subscribe, plan, merchant, customer, clock):
    # when
    response = subscribe(plan)

    # then
    assert response.status_code == 201
    body = response.json()
    assert REQUIRED <= set(body)
    ClientSubscription.model_validate(body)
    opening = Invoice.objects.get(subscription_id=body["id"], kind=InvoiceKind.OPENING)
    assert body["status"] == "pending_payment"
    assert body["payment"] == {
        "status": "pending",
        "amount": "49.00",
        "invoiceId": opening.id,
        "breakdown": {"upfrontCharges": "49.00", "walletCharge": "0.00"},
        "checkoutUrl": f"http://testserver/admin/invoicing/invoice/{opening.id}/change/",
        "paymentSessionId": opening.id,
    }
    assert (opening.status, opening.total, opening.issued_at) == (InvoiceStatus.ISSUED, 49, clock.current_time)
    assert body["billingAnchor"] == "2025-01-01T00:00:00Z"
    assert body["billingCadence"] == "P1M"
    assert body["elapsedPeriodBilling"] == "none"
    assert body["billingStartsAt"] is None
    assert body["testClockId"] == clock.id
    assert (body["merchantId"], body["customerId"], body["planId"]) == (merchant.id, customer.id, plan.id)


def test_paying_invoice_zero_activates_the_subscription(api_client, subscribe, plan):
    body = subscribe(plan).json()

    # when
    paid = api_client.post(
        f"/v2/invoices/{body['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json"
    )
    after = api_client.get(f"/v0/subscriptions/{body['id']}").json()

    # then
    assert paid.status_code == 200
    assert after["status"] == "active"
    assert after["payment"] == {"status": "paid", "invoiceId": body["payment"]["invoiceId"], "amount": "49.00"}


def test_zero_amount_invoice_zero_is_paid_at_once(subscribe, merchant):
    plan = llm_plan(merchant, fee="0")

    body = subscribe(plan).json()

    assert body["status"] == "active"
    assert body["payment"]["status"] == "paid"
    assert body["payment"]["amount"] == "0.00"
    assert Invoice.objects.get(pk=body["payment"]["invoiceId"]).status == InvoiceStatus.PAID


def test_plan_without_upfront_charges_is_active_without_payment(subscribe, arrears_plan):
    body = subscribe(arrears_plan).json()

    assert body["status"] == "active"
    assert "payment" not in body
    assert not Invoice.objects.filter(subscription_id=body["id"]).exists()


def test_terms_from_the_body_are_stored_before_billing(subscribe, plan):
    body = subscribe(
        plan, taxExempt=True, paymentTermDays=30, versionPolicy="pinned", metadata={"crm": "A-1", "seats": 3}
    ).json()

    assert (body["taxExempt"], body["paymentTermDays"], body["versionPolicy"]) == (True, 30, "pinned")
    assert body["estimatedTaxRate"] == 0
    assert body["metadata"] == {"crm": "A-1", "seats": 3}


def test_inline_customer_is_created(api_client, plan, merchant):
    response = api_client.post(
        "/v0/subscriptions",
        {
            "name": "Globex - Pro",
            "planId": plan.id,
            "startedAt": (timezone.now() - timedelta(days=10)).isoformat(),  # within the backdating horizon
            "customer": {"name": "Globex", "email": "ap@globex.test", "address": {"country": "de", "zipCode": "10115"}},
        },
        format="json",
    )

    assert response.status_code == 201
    customer = Customer.objects.get(pk=response.json()["customerId"])
    assert (customer.merchant_id, customer.name, customer.country, customer.postal_code) == (
        merchant.id,
        "Globex",
        "DE",
        "10115",
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name"),
        ({"planId": "plan_nope"}, "planId"),
        ({"customerId": "cus_nope"}, "customerId"),
        ({"testClockId": "tc_nope"}, "testClockId"),
        ({"startedAt": "yesterday"}, "startedAt"),
        ({"endingAt": "2024-12-01T00:00:00Z"}, "endingAt"),
        ({"elapsedPeriodBilling": "all"}, "elapsedPeriodBilling"),
        ({"paymentTermDays": -1}, "paymentTermDays"),
        ({"seats": 3}, "seats"),
        ({"customer": {"name": "X", "email": "x@x.test", "address": {"country": "US", "zipCode": "1"}}}, "customerId"),
    ],
)
def test_bad_input_names_the_field(subscribe, plan, change, field):
    body = {key: value for key, value in change.items() if value is not None}
    response = subscribe(plan, **body) if "name" not in change else _without_name(subscribe, plan)

    assert response.status_code == 400
    assert field in {error["field"] for error in response.json()["errors"]}
    assert not Invoice.objects.exists()


def _without_name(subscribe, plan):
    return subscribe(plan, name="")


def test_inline_customer_needs_country_and_zip(api_client, plan):
    response = api_client.post(
        "/v0/subscriptions",
        {
            "name": "N",
            "planId": plan.id,
            "startedAt": (timezone.now() - timedelta(days=10)).isoformat(),  # within the backdating horizon
            "customer": {"name": "Globex", "email": "ap@globex.test", "address": {"city": "Berlin"}},
        },
        format="json",
    )

    assert response.status_code == 400
    assert {error["field"] for error in response.json()["errors"]} == {
        "customer.address.country",
        "customer.address.zipCode",
    }


def test_deleted_clock_cannot_take_a_subscription(subscribe, plan, clock):
    clock.deleted_at = datetime(2025, 1, 2, tzinfo=UTC)
    clock.save()

    response = subscribe(plan)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "testClockId"


def test_list_filters_by_customer_and_repeated_status(api_client, subscribe, plan, arrears_plan, merchant):
    pending = subscribe(plan).json()
    active = subscribe(arrears_plan).json()

    everything = api_client.get("/v0/subscriptions", {"limit": "10", "offset": "0"}).json()
    both = api_client.get("/v0/subscriptions?status=active&status=pending_payment&limit=10&offset=0").json()
    only_active = api_client.get("/v0/subscriptions", {"status": "active", "customerId": active["customerId"]}).json()
    page = api_client.get("/v0/subscriptions", {"limit": "1", "offset": "1", "merchantId": merchant.id}).json()

    assert everything["pagination"] == {"limit": 10, "offset": 0, "total": 2}
    assert {row["id"] for row in both["data"]} == {pending["id"], active["id"]}
    assert [row["id"] for row in only_active["data"]] == [active["id"]]
    assert page["pagination"] == {"limit": 1, "offset": 1, "total": 2}
    assert len(page["data"]) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"customerId": "cus_1", "merchantId": "org_1"}, "customerId"),
        ({"include": "plan"}, "include"),
        ({"startedBefore": "soon"}, "startedBefore"),
    ],
)
def test_list_refuses_bad_query(api_client, query, field):
    response = api_client.get("/v0/subscriptions", query)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_get_with_include_customer(api_client, subscribe, plan, merchant, customer):
    sub = subscribe(plan).json()

    body = api_client.get(f"/v0/subscriptions/{sub['id']}", {"include": "customer"}).json()

    assert body["customer"] == {
        "id": customer.id,
        "merchantId": merchant.id,
        "merchant": {"id": merchant.id, "name": merchant.name, "email": merchant.email},
        "consumer": {"id": customer.id, "name": customer.name, "email": customer.email},
    }


def test_patch_changes_terms_and_end(api_client, subscribe, arrears_plan):
    sub = subscribe(arrears_plan).json()

    response = api_client.patch(
        f"/v0/subscriptions/{sub['id']}",
        {"endingAt": "2025-06-01T00:00:00Z", "autoCharge": True, "taxExempt": True, "paymentTermDays": 14},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["endingAt"], body["autoCharge"], body["taxExempt"], body["paymentTermDays"]) == (
        "2025-06-01T00:00:00Z",
        True,
        True,
        14,
    )
    cleared = api_client.patch(f"/v0/subscriptions/{sub['id']}", {"endingAt": None}, format="json").json()
    assert "endingAt" not in cleared


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"endingAt": "2024-06-01T00:00:00Z"}, 400, "endingAt"),
        ({"terminationReason": "x"}, 400, "status"),
        ({"status": "paused"}, 400, "status"),
        ({"renewalReminderDays": 3}, 400, "renewalReminderDays"),
        ({"status": "terminated", "terminatedAt": "2024-06-01T00:00:00Z"}, 400, "terminatedAt"),
    ],
)
def test_patch_refuses_bad_changes(api_client, subscribe, arrears_plan, body, status, field):
    sub = subscribe(arrears_plan).json()

    response = api_client.patch(f"/v0/subscriptions/{sub['id']}", body, format="json")

    assert response.status_code == status
    assert response.json()["errors"][0]["field"] == field


def test_patch_status_terminated_terminates_now(api_client, subscribe, arrears_plan, clock):
    sub = subscribe(arrears_plan).json()
    clock.current_time = datetime(2025, 1, 16, tzinfo=UTC)
    clock.save()

    body = api_client.patch(
        f"/v0/subscriptions/{sub['id']}",
        {"status": "terminated", "terminationReason": "moved on", "terminatedBy": "ops"},
        format="json",
    ).json()

    assert body["status"] == "terminated"
    assert body["terminatedAt"] == "2025-01-16T00:00:00Z"
    assert (body["terminationReason"], body["terminatedBy"]) == ("moved on", "ops")
    final = Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)
    assert (final.period_start, final.period_end) == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 1, 16, tzinfo=UTC),
    )


def test_activating_a_pending_subscription_is_a_conflict(api_client, subscribe, plan):
    sub = subscribe(plan).json()

    response = api_client.patch(f"/v0/subscriptions/{sub['id']}", {"status": "active"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "SUBSCRIPTION_STATUS"


def test_termination_endpoint_bills_the_partial_period(api_client, subscribe, plan, clock):
    sub = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    clock.current_time = datetime(2025, 1, 11, tzinfo=UTC)
    clock.save()

    # when
    response = api_client.post(
        f"/v0/subscriptions/{sub['id']}/termination", {"reason": "churn", "changeReason": "commercial"}, format="json"
    )
    again = api_client.post(f"/v0/subscriptions/{sub['id']}/termination", {"reason": "churn"}, format="json")

    # then: 10 of 31 days used → credit 21/31 of 49 = 33.19
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["terminationReason"], body["terminationChangeReason"]) == (
        "terminated",
        "churn",
        "commercial",
    )
    final = Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)
    assert str(final.total) == "-33.1900"
    assert again.status_code == 409
    assert again.json()["code"] == "SUBSCRIPTION_ALREADY_TERMINATED"


def test_terminating_a_pending_subscription_bills_nothing_more(api_client, subscribe, plan):
    sub = subscribe(plan).json()

    body = api_client.post(f"/v0/subscriptions/{sub['id']}/termination", {"reason": "never paid"}, format="json").json()

    assert body["status"] == SubscriptionStatus.TERMINATED
    assert Invoice.objects.filter(subscription_id=sub["id"]).count() == 1


def test_termination_needs_a_reason(api_client, subscribe, plan):
    sub = subscribe(plan).json()

    response = api_client.post(f"/v0/subscriptions/{sub['id']}/termination", {}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "reason"


def test_marking_invoice_zero_paid_in_the_admin_activates_too(api_client, subscribe, plan):
    from django.utils import timezone

    from invoicing.services import invoice_mark_paid

    sub = subscribe(plan).json()

    invoice_mark_paid(invoice=Invoice.objects.get(pk=sub["payment"]["invoiceId"]), now=timezone.now())

    assert api_client.get(f"/v0/subscriptions/{sub['id']}").json()["status"] == "active"


def test_a_subscription_overrides_the_plans_threshold_and_clears_it(api_client, subscribe, arrears_plan):
    # Meterline extension: threshold (progressive) billing, invoicing/THRESHOLDS.md
    sub = subscribe(arrears_plan, thresholdAmount="250.50", thresholdLadder=["1000"], thresholdRecurring=True).json()
    assert (sub["thresholdAmount"], sub["thresholdLadder"], sub["thresholdRecurring"]) == ("250.5", ["1000"], True)

    cleared = api_client.patch(
        f"/v0/subscriptions/{sub['id']}", {"thresholdAmount": None, "thresholdRecurring": None}, format="json"
    ).json()
    assert (cleared["thresholdAmount"], cleared["thresholdRecurring"]) == (None, None)

    refused = api_client.patch(f"/v0/subscriptions/{sub['id']}", {"thresholdAmount": "0"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "thresholdAmount"

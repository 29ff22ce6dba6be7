"""/v0/testClocks: create, get, list, advance (which bills the clock's subscriptions), soft delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from paygentic_sdk.models import TestClock as ClientTestClock

from catalog.models import SubscriptionStatus, TestClock
from core.durations import add_duration, parse_duration
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus
from invoicing.services import billing_run_execute

from .factories import record_usage

pytestmark = pytest.mark.django_db


def test_create_defaults_to_now_and_reads_back(api_client, merchant):
    before = timezone.now()

    response = api_client.post("/v0/testClocks", {"name": "demo"}, format="json")

    assert response.status_code == 201
    body = response.json()
    ClientTestClock.model_validate(body)
    clock = TestClock.objects.get(pk=body["id"])
    assert before <= clock.current_time <= timezone.now()
    assert (body["merchantId"], body["name"], body["description"], body["deletedAt"]) == (
        merchant.id,
        "demo",
        None,
        None,
    )
    assert api_client.get(f"/v0/testClocks/{clock.id}").json() == body


def test_create_in_the_past_and_list(api_client, merchant):
    created = api_client.post(
        "/v0/testClocks", {"currentTime": "2020-02-29T12:00:00Z", "merchantId": merchant.id}, format="json"
    ).json()

    listed = api_client.get("/v0/testClocks", {"limit": 10, "offset": 0}).json()

    assert created["currentTime"] == "2020-02-29T12:00:00Z"
    assert listed["pagination"] == {"limit": 10, "offset": 0, "total": 1}
    assert [row["id"] for row in listed["data"]] == [created["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currentTime": "later"}, "currentTime"),
        ({"merchantId": "org_other"}, None),
        ({"tick": 1}, "tick"),
    ],
)
def test_create_refuses_bad_input(api_client, body, field):
    response = api_client.post("/v0/testClocks", body, format="json")

    if field is None:
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN_MERCHANT"
    else:
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == field


def test_advance_to_a_time(api_client, clock):
    response = api_client.patch(f"/v0/testClocks/{clock.id}", {"currentTime": "2025-03-15T08:00:00Z"}, format="json")

    assert response.status_code == 200
    assert response.json()["currentTime"] == "2025-03-15T08:00:00Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currentTime": "2025-01-01T00:00:00Z"}, "currentTime"),
        ({"currentTime": "2024-12-31T00:00:00Z"}, "currentTime"),
        ({"advanceBy": "1 month"}, "advanceBy"),
        ({"advanceBy": "P0D"}, "advanceBy"),
        ({"advanceBy": "-P1D"}, "advanceBy"),
        ({"currentTime": "2025-02-01T00:00:00Z", "advanceBy": "P1D"}, "currentTime"),
        ({}, "currentTime"),
    ],
)
def test_advance_only_moves_forward(api_client, clock, body, field):
    response = api_client.patch(f"/v0/testClocks/{clock.id}", body, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    clock.refresh_from_db()
    assert clock.current_time == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        (datetime(2025, 1, 31, tzinfo=UTC), "P1M", datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 1, 31, tzinfo=UTC), "P1M", datetime(2024, 2, 29, tzinfo=UTC)),
        (datetime(2025, 1, 1, tzinfo=UTC), "P7D", datetime(2025, 1, 8, tzinfo=UTC)),
        (datetime(2025, 1, 1, tzinfo=UTC), "PT2H", datetime(2025, 1, 1, 2, tzinfo=UTC)),
        (datetime(2025, 1, 1, tzinfo=UTC), "P2W", datetime(2025, 1, 15, tzinfo=UTC)),
        (datetime(2025, 1, 1, tzinfo=UTC), "P1Y2M3DT4H5M6S", datetime(2026, 3, 4, 4, 5, 6, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), "P1Y", datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2025, 1, 1, tzinfo=UTC), "PT1.5S", datetime(2025, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)),
        (datetime(2025, 11, 30, tzinfo=UTC), "P3M", datetime(2026, 2, 28, tzinfo=UTC)),
    ],
)
def test_iso_durations_add_calendar_months(start, duration, expected):
    assert add_duration(start, parse_duration(duration)) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "1M", "P1H", "PT1D", "P1MT", "P1.5M", "p 1m"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_year_on_a_monthly_plan_writes_twelve_invoices(
    api_client, subscribe, arrears_plan, customer, clock, django_capture_on_commit_callbacks
):
    # given: 1,000,000 tokens on the 10th of every month of 2025
    sub = subscribe(arrears_plan).json()
    for month in range(1, 13):
        record_usage(customer, arrears_plan, datetime(2025, month, 10, tzinfo=UTC), 1_000_000)

    # when: the request bills 3 months, the background catch-up run (run here on commit) the other 9
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1Y"}, format="json")

    # then: 12 closed months of $2; all but December are past their 24 h grace period and issued
    assert response.json()["currentTime"] == "2026-01-01T00:00:00Z"
    invoices = list(Invoice.objects.filter(subscription_id=sub["id"]).order_by("period_start"))
    assert [invoice.period_start.month for invoice in invoices] == list(range(1, 13))
    assert {invoice.kind for invoice in invoices} == {InvoiceKind.RECURRING}
    assert {str(invoice.total) for invoice in invoices} == {"2.0000"}
    assert [invoice.status for invoice in invoices] == [InvoiceStatus.ISSUED] * 11 + [InvoiceStatus.DRAFT]
    # each issued when its grace period ended, as the beat would have
    assert invoices[0].issued_at == datetime(2025, 2, 2, tzinfo=UTC)
    assert invoices[10].issued_at == datetime(2025, 12, 2, tzinfo=UTC)
    listed = api_client.get("/v2/invoices", {"subscriptionId": sub["id"], "limit": 100}).json()
    assert [row["sequenceNumber"] for row in listed["data"]] == list(range(12, 0, -1))


def test_advancing_twice_never_bills_a_period_twice(api_client, subscribe, arrears_plan, clock):
    sub = subscribe(arrears_plan).json()

    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M"}, format="json")
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "PT1H"}, format="json")
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M"}, format="json")

    starts = list(Invoice.objects.filter(subscription_id=sub["id"]).values_list("period_start", flat=True))
    assert sorted(starts) == [datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)]


def test_the_wall_clock_run_bills_clock_subscriptions_only_up_to_the_clock(subscribe, arrears_plan, clock):
    sub = subscribe(arrears_plan).json()
    clock.current_time = datetime(2025, 2, 15, tzinfo=UTC)
    clock.save()

    # when: the beat runs at wall time, far after the clock
    billing_run_execute(as_of=timezone.now())

    # then: only January (ended by the clock's time) is billed
    starts = list(Invoice.objects.filter(subscription_id=sub["id"]).values_list("period_start", flat=True))
    assert starts == [datetime(2025, 1, 1, tzinfo=UTC)]


def test_advancing_one_clock_leaves_other_clocks_alone(api_client, subscribe, arrears_plan, merchant, customer):
    sub = subscribe(arrears_plan).json()
    other = TestClock.objects.create(merchant=merchant, current_time=datetime(2025, 1, 1, tzinfo=UTC))

    api_client.patch(f"/v0/testClocks/{other.id}", {"advanceBy": "P2M"}, format="json")

    assert not Invoice.objects.filter(subscription_id=sub["id"]).exists()


def test_pending_subscription_is_billed_once_paid(api_client, subscribe, plan, clock):
    # given: Invoice 0 unpaid while two months pass
    sub = subscribe(plan).json()
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P2M"}, format="json")
    assert Invoice.objects.filter(subscription_id=sub["id"]).count() == 1

    # when: it is paid, and the clock moves on
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "PT1H"}, format="json")

    # then: both ended months are caught up
    recurring = Invoice.objects.filter(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)
    assert sorted(recurring.values_list("period_start__month", flat=True)) == [1, 2]


def test_delete_is_refused_while_a_subscription_runs(api_client, subscribe, arrears_plan, clock):
    sub = subscribe(arrears_plan).json()

    refused = api_client.delete(f"/v0/testClocks/{clock.id}")
    api_client.post(f"/v0/subscriptions/{sub['id']}/termination", {"reason": "done"}, format="json")
    deleted = api_client.delete(f"/v0/testClocks/{clock.id}")

    assert refused.status_code == 409
    assert refused.json()["code"] == "TEST_CLOCK_IN_USE"
    assert sub["id"] in refused.json()["message"]
    assert deleted.status_code == 200
    assert deleted.json()["deletedAt"] is not None
    assert api_client.get(f"/v0/testClocks/{clock.id}").status_code == 404
    assert api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1D"}, format="json").status_code == 404
    assert api_client.get("/v0/testClocks").json()["pagination"]["total"] == 0
    assert SubscriptionStatus.TERMINATED == api_client.get(f"/v0/subscriptions/{sub['id']}").json()["status"]


def test_delete_an_unused_clock(api_client, clock):
    response = api_client.delete(f"/v0/testClocks/{clock.id}")

    assert response.status_code == 200
    clock.refresh_from_db()
    assert clock.deleted_at is not None
    assert timezone.now() - clock.deleted_at < timedelta(minutes=1)

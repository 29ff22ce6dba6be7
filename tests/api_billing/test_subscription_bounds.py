"""Time bounds and bounded catch-up on the wire: 400 naming the field beyond a bound, and a backdated
start that says which elapsed periods a background billing run bills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from paygentic_sdk.models import Subscription as ClientSubscription
from paygentic_sdk.models import TestClock as ClientTestClock

from catalog.models import Subscription, TestClock
from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceKind

from .factories import TestClockFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def bounds(settings):
    settings.METERLINE_BACKDATE_HORIZON_DAYS = 366
    settings.METERLINE_START_MAX_AHEAD_DAYS = 1827
    settings.METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS = 1827
    settings.METERLINE_INLINE_CATCHUP_PERIODS = 3


def fields_of(response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("started_at", ["1000-01-01T00:00:00Z", "9999-01-01T00:00:00Z"])
def test_a_start_beyond_the_bounds_is_a_400_naming_started_at_and_creates_nothing(subscribe, arrears_plan, started_at):
    response = subscribe(arrears_plan, startedAt=started_at)

    assert response.status_code == 400
    assert fields_of(response) == ["startedAt"]
    assert (Subscription.objects.count(), Invoice.objects.count(), BillingRun.objects.count()) == (0, 0, 0)


def test_the_400_says_the_bound(subscribe, arrears_plan):
    # the fixture's clock is at 2025-01-01
    response = subscribe(arrears_plan, startedAt="2023-12-31T00:00:00Z")

    assert response.json()["errors"][0]["message"] == (
        "The start may lie at most 366 days in the past (not before 2024-01-01T00:00:00+00:00)."
    )


def test_a_test_clock_far_ahead_is_a_400_naming_current_time(api_client):
    response = api_client.post("/v0/testClocks", {"currentTime": "9999-01-01T00:00:00Z"}, format="json")

    assert response.status_code == 400
    assert fields_of(response) == ["currentTime"]
    assert TestClock.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [({"currentTime": "9999-01-01T00:00:00Z"}, "currentTime"), ({"advanceBy": "P100Y"}, "advanceBy")],
)
def test_advancing_a_test_clock_far_ahead_is_a_400_naming_the_field(api_client, clock, body, field):
    response = api_client.patch(f"/v0/testClocks/{clock.id}", body, format="json")

    assert response.status_code == 400
    assert fields_of(response) == [field]
    clock.refresh_from_db()
    assert clock.current_time == datetime(2025, 1, 1, tzinfo=UTC)


def test_a_start_a_year_back_bills_three_periods_in_the_request_and_says_nine_are_pending(
    api_client, customer, arrears_plan, merchant, django_capture_on_commit_callbacks
):
    # given a clock one year after the start
    clock = TestClockFactory(merchant=merchant, current_time=datetime(2026, 1, 1, tzinfo=UTC))
    body = {
        "name": "Acme - Usage",
        "planId": arrears_plan.id,
        "customerId": customer.id,
        "startedAt": "2025-01-01T00:00:00Z",
        "testClockId": clock.id,
    }

    # when
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api_client.post("/v0/subscriptions", body, format="json")

    # then the request invoiced January to March and says the rest is billed in the background
    assert response.status_code == 201
    created = response.json()
    run = BillingRun.objects.get(trigger="catch_up")
    assert created["catchUp"] == {
        "status": "pending",
        "pendingPeriods": 9,
        "inlinePeriodLimit": 3,
        "billingRunId": run.pk,
    }
    assert ClientSubscription.model_validate(created).id == created["id"]  # the client ignores the extension
    recurring = Invoice.objects.filter(subscription_id=created["id"], kind=InvoiceKind.RECURRING)
    assert recurring.count() == 3

    # when the background run works (eager Celery, once committed)
    for callback in queued:
        callback()

    # then every month is invoiced and the run shows it finished
    assert sorted(recurring.values_list("period_start__month", flat=True)) == list(range(1, 13))
    run.refresh_from_db()
    assert (run.status, run.invoices_created, run.subscriptions_done, run.subscriptions_total) == (
        BillingRunStatus.SUCCEEDED,
        9,
        1,
        1,
    )


def test_advancing_a_clock_a_year_says_what_the_background_run_bills(
    api_client, subscribe, arrears_plan, clock, django_capture_on_commit_callbacks
):
    subscribe(arrears_plan)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1Y"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert ClientTestClock.model_validate(body).id == clock.id
    assert body["catchUp"]["pendingPeriods"] == 9
    assert BillingRun.objects.get(pk=body["catchUp"]["billingRunId"]).trigger == "catch_up"
    assert Invoice.objects.filter(kind=InvoiceKind.RECURRING).count() == 12

"""Bounded catch-up: start and test clock times within configured bounds, at most N elapsed periods
invoiced inside a request and the rest by a background ``catch_up`` billing run, interrupted chunks
never recorded as succeeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catalog.models import PaymentTerm, Subscription, TestClock
from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceKind, InvoiceStatus
from invoicing.services import (
    TimeBoundError,
    billing_run_create,
    billing_run_process_chunk,
    subscription_start,
    test_clock_advance,
    test_clock_create,
)
from tests.factories import TestClockFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price

pytestmark = pytest.mark.django_db

JAN_1_2025 = datetime(2025, 1, 1, tzinfo=UTC)
JAN_1_2026 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def bounds(settings):
    settings.METERLINE_BACKDATE_HORIZON_DAYS = 366
    settings.METERLINE_START_MAX_AHEAD_DAYS = 1827
    settings.METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS = 1827
    settings.METERLINE_INLINE_CATCHUP_PERIODS = 3


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro")
    fee_price(plan, "10.00", term=PaymentTerm.IN_ARREARS, name="Support")
    metered_price(plan, "0.000002", name="Input tokens")
    return plan


@pytest.fixture
def customer(seller):
    return CustomerFactory(merchant=seller, name="Acme")


def recurring_starts(subscription) -> list[datetime]:
    return list(
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING)
        .order_by("period_start")
        .values_list("period_start", flat=True)
    )


def months_of_2025(first: int = 1, last: int = 12) -> list[datetime]:
    return [datetime(2025, month, 1, tzinfo=UTC) for month in range(first, last + 1)]


# -- bounds ----------------------------------------------------------------------------------------


def test_a_start_beyond_the_backdating_horizon_is_refused_and_nothing_is_written(plan, customer):
    with pytest.raises(TimeBoundError) as refused:
        subscription_start(customer=customer, plan=plan, started_at=JAN_1_2026 - timedelta(days=367), now=JAN_1_2026)

    assert refused.value.field == "startedAt"
    assert (
        str(refused.value) == "The start may lie at most 366 days in the past (not before 2024-12-31T00:00:00+00:00)."
    )
    assert (Subscription.objects.count(), Invoice.objects.count(), BillingRun.objects.count()) == (0, 0, 0)


def test_a_start_in_the_year_1000_is_refused(plan, customer):
    with pytest.raises(TimeBoundError) as refused:
        subscription_start(customer=customer, plan=plan, started_at=datetime(1000, 1, 1, tzinfo=UTC), now=JAN_1_2026)

    assert refused.value.field == "startedAt"
    assert Subscription.objects.count() == 0


def test_the_horizon_is_configurable(plan, customer, settings):
    settings.METERLINE_BACKDATE_HORIZON_DAYS = 30

    with pytest.raises(TimeBoundError):
        subscription_start(customer=customer, plan=plan, started_at=JAN_1_2026 - timedelta(days=31), now=JAN_1_2026)
    subscription = subscription_start(
        customer=customer, plan=plan, started_at=JAN_1_2026 - timedelta(days=30), now=JAN_1_2026
    )

    assert subscription.started_at == datetime(2025, 12, 2, tzinfo=UTC)


def test_a_start_too_far_ahead_is_refused(plan, customer):
    with pytest.raises(TimeBoundError) as refused:
        subscription_start(customer=customer, plan=plan, started_at=datetime(9999, 1, 1, tzinfo=UTC), now=JAN_1_2026)

    assert refused.value.field == "startedAt"
    assert str(refused.value) == (
        "The start may lie at most 1827 days in the future (not after 2031-01-02T00:00:00+00:00)."
    )


def test_the_horizon_of_a_clock_subscription_counts_from_the_clock(seller, plan, customer):
    clock = TestClockFactory(merchant=seller, current_time=datetime(2020, 1, 1, tzinfo=UTC))

    subscription = subscription_start(
        customer=customer, plan=plan, started_at=datetime(2019, 6, 1, tzinfo=UTC), now=JAN_1_2026, test_clock=clock
    )
    with pytest.raises(TimeBoundError):
        subscription_start(
            customer=customer, plan=plan, started_at=datetime(2025, 6, 1, tzinfo=UTC), now=JAN_1_2026, test_clock=clock
        )  # more than 1827 days after the clock's time, though in the past of the real time

    assert subscription.started_at == datetime(2019, 6, 1, tzinfo=UTC)


def test_a_test_clock_too_far_ahead_is_refused(seller):
    with pytest.raises(TimeBoundError) as refused:
        test_clock_create(merchant=seller, current_time=datetime(9999, 1, 1, tzinfo=UTC), now=JAN_1_2026)

    assert refused.value.field == "currentTime"
    assert str(refused.value) == (
        "A test clock may be at most 1827 days ahead of the real time (not after 2031-01-02T00:00:00+00:00)."
    )
    assert TestClock.objects.count() == 0


def test_a_test_clock_advance_too_far_ahead_is_refused_and_the_clock_stays(seller):
    clock = TestClockFactory(merchant=seller, current_time=JAN_1_2025)

    with pytest.raises(TimeBoundError):
        test_clock_advance(test_clock=clock, to=datetime(9999, 1, 1, tzinfo=UTC), now=JAN_1_2026)

    clock.refresh_from_db()
    assert clock.current_time == JAN_1_2025
    assert BillingRun.objects.count() == 0


# -- bounded catch-up ------------------------------------------------------------------------------


def test_a_start_a_year_back_invoices_three_periods_inline_and_leaves_nine_to_a_catch_up_run(
    plan, customer, django_capture_on_commit_callbacks
):
    # when: what the request itself does (the background run is only queued, on commit)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1_2025, now=JAN_1_2026)

    # then: January to March are invoiced, April to December are handed to a catch-up run
    assert recurring_starts(subscription) == months_of_2025(1, 3)
    catch_up = subscription.catch_up
    assert catch_up.pending_periods == 9
    run = BillingRun.objects.get(pk=catch_up.billing_run.pk)
    assert (run.trigger, run.status, run.subscriptions_total, run.chunks_total, run.chunks_done) == (
        "catch_up",
        BillingRunStatus.RUNNING,
        1,
        1,
        0,
    )
    assert len(queued) == 1

    # when the background run works
    queued[0]()

    # then every period is invoiced once and the run is recorded as done
    assert recurring_starts(subscription) == months_of_2025()
    run.refresh_from_db()
    assert (run.status, run.invoices_created, run.chunks_done, run.subscriptions_done) == (
        BillingRunStatus.SUCCEEDED,
        9,
        1,
        1,
    )


def test_a_start_with_no_more_elapsed_periods_than_the_limit_queues_nothing(
    plan, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        subscription = subscription_start(
            customer=customer, plan=plan, started_at=datetime(2025, 10, 1, tzinfo=UTC), now=JAN_1_2026
        )

    assert recurring_starts(subscription) == months_of_2025(10, 12)
    assert subscription.catch_up is None
    assert queued == []
    assert list(BillingRun.objects.values_list("trigger", flat=True)) == ["subscription_start"]


def test_a_test_clock_year_invoices_three_months_inline_and_the_catch_up_run_issues_like_the_beat(
    seller, plan, customer, django_capture_on_commit_callbacks
):
    clock = TestClockFactory(merchant=seller, current_time=JAN_1_2025)
    subscription = subscription_start(
        customer=customer, plan=plan, started_at=JAN_1_2025, now=JAN_1_2025, test_clock=clock
    )

    with django_capture_on_commit_callbacks(execute=False) as queued:
        run = test_clock_advance(test_clock=clock, to=JAN_1_2026, now=JAN_1_2026)

    assert recurring_starts(subscription) == months_of_2025(1, 3)
    assert (run.trigger, run.catch_up.pending_periods, run.catch_up.billing_run.trigger) == (
        "test_clock",
        9,
        "catch_up",
    )

    queued[0]()

    invoices = list(Invoice.objects.filter(subscription=subscription).order_by("period_start"))
    assert [invoice.period_start for invoice in invoices] == months_of_2025()
    assert [invoice.status for invoice in invoices] == [InvoiceStatus.ISSUED] * 11 + [InvoiceStatus.DRAFT]
    assert invoices[10].issued_at == datetime(2025, 12, 2, tzinfo=UTC)  # at its own grace end
    assert BillingRun.objects.get(pk=run.catch_up.billing_run.pk).status == BillingRunStatus.SUCCEEDED


# -- a run records only finished work --------------------------------------------------------------


def test_an_interrupted_chunk_is_not_recorded_as_succeeded(plan, customer, monkeypatch):
    # given a subscription with two ended periods and a run for it
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1_2026, now=JAN_1_2026)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    run, chunks = billing_run_create(as_of=now, trigger="beat", now=now, subscription_ids=[subscription.pk])

    # when the worker is stopped mid-chunk (gunicorn's timeout raises SystemExit in the worker)
    def stop(**kwargs):
        raise SystemExit(1)

    monkeypatch.setattr("invoicing.usage.quantities_by_customer", stop)
    with pytest.raises(SystemExit):
        billing_run_process_chunk(run_id=run.pk, subscription_ids=chunks[0], as_of=now, clock=lambda: now)

    # then the run is not done, let alone succeeded: the chunk stays in flight for a retry (or the stall sweep)
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.chunks_done, run.subscriptions_done) == (
        BillingRunStatus.RUNNING,
        None,
        0,
        0,
    )

    # when the chunk is retried, it finishes the work and the run succeeds
    monkeypatch.undo()
    billing_run_process_chunk(run_id=run.pk, subscription_ids=chunks[0], as_of=now, clock=lambda: now)

    run.refresh_from_db()
    assert (run.status, run.finished_at, run.chunks_done, run.invoices_created) == (
        BillingRunStatus.SUCCEEDED,
        now,
        1,
        2,
    )
    assert recurring_starts(subscription) == [JAN_1_2026, datetime(2026, 2, 1, tzinfo=UTC)]

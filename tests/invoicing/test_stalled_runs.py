"""Runs a lost worker left ``running``: the beat pass abandons their stale chunks and closes them, the next
run bills what they missed exactly once; the Celery settings that make a lost chunk come back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from catalog.models import PaymentTerm
from invoicing.models import BillingRun, BillingRunChunk, BillingRunError, BillingRunStatus, Invoice, InvoiceKind
from invoicing.services import (
    MAX_CHUNK_ATTEMPTS,
    billing_run_create,
    billing_run_execute,
    billing_run_process_chunk,
    billing_runs_close_stalled,
    runs,
)
from invoicing.tasks import billing_run_chunk_task, close_billing_periods_task
from tests.invoicing.factories import CustomerFactory, PlanFactory, SubscriptionFactory, fee_price

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
T0 = FEB_1 + timedelta(minutes=10)  # when the beat pass recorded the run
TIMEOUT = timedelta(minutes=45)


class WorkerKilled(BaseException):
    """SIGKILL: nothing after it runs, not even ``finally`` blocks that report the chunk."""


@pytest.fixture
def subscriptions(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro")
    fee_price(plan, "20.00", term=PaymentTerm.IN_ARREARS)  # one recurring invoice a month, no opening one
    return [
        SubscriptionFactory(plan=plan, merchant=seller, customer=CustomerFactory(merchant=seller), started_at=JAN_1)
        for _ in range(3)
    ]


def at(moment: datetime):
    return lambda: moment


def process(run, chunks, number, moment):
    return billing_run_process_chunk(
        run_id=run.pk, subscription_ids=chunks[number], as_of=FEB_1, clock=at(moment), chunk=number
    )


def process_and_die(monkeypatch, run, chunks, number, moment):
    """A worker that writes the chunk's invoices and is killed before it reports the chunk."""

    def killed(**kwargs):
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setattr(runs, "_chunk_finish", killed)
        with pytest.raises(WorkerKilled):
            process(run, chunks, number, moment)


def recurring_invoices(subscription) -> list[datetime]:
    return list(
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).values_list(
            "period_start", flat=True
        )
    )


def test_the_stall_timeout_is_the_setting():
    assert settings.METERLINE_BILLING_RUN_STALL_TIMEOUT == TIMEOUT


def test_a_run_with_a_killed_chunk_and_a_lost_one_closes_partial_and_the_next_run_bills_them_once(
    subscriptions, monkeypatch
):
    first, second, third = sorted(subscriptions, key=lambda sub: sub.pk)
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=1, now=T0)
    assert chunks == [[first.pk], [second.pk], [third.pk]]
    process(run, chunks, 0, T0 + timedelta(minutes=1))
    process_and_die(monkeypatch, run, chunks, 1, T0 + timedelta(minutes=2))  # its invoice was written
    # the third chunk's message was lost: no worker ever starts it

    # a beat pass within the timeout leaves the run to its workers
    assert billing_runs_close_stalled(now=T0 + TIMEOUT) == []
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.chunks_done) == (BillingRunStatus.RUNNING, None, 1)

    # the first beat pass after both chunks' last sign of life is older than the timeout closes it
    now = T0 + timedelta(minutes=2) + TIMEOUT + timedelta(seconds=1)
    assert billing_runs_close_stalled(now=now) == [run]
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (BillingRunStatus.PARTIAL, now)
    assert (run.chunks_done, run.subscriptions_done, run.invoices_created, run.invoices_failed) == (1, 1, 1, 0)
    assert list(run.chunks.values_list("number", "attempts", "started_at", "finished_at", "abandoned_at")) == [
        (0, 1, T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), None),
        (1, 1, T0 + timedelta(minutes=2), None, now),
        (2, 0, None, None, now),
    ]
    assert list(run.errors.values_list("subscription_id", "abandoned", "period_start", "message")) == [
        (
            second.pk,
            True,
            None,
            "Abandoned: chunk 1 started at 2026-02-01 00:12 UTC never finished (worker lost after 1 attempt(s)); "
            "the next run bills this subscription.",
        ),
        (
            third.pk,
            True,
            None,
            "Abandoned: chunk 2 queued at 2026-02-01 00:10 UTC never finished (worker lost after 0 attempt(s)); "
            "the next run bills this subscription.",
        ),
    ]
    # a later pass finds nothing more to close
    assert billing_runs_close_stalled(now=now + TIMEOUT) == []

    # the next run bills the lost chunk's subscription; the killed chunk's invoice exists and is not repeated
    rerun = billing_run_execute(as_of=FEB_1, clock=at(now + timedelta(minutes=5)))
    assert (rerun.status, rerun.invoices_created, rerun.invoices_skipped, rerun.invoices_failed) == (
        BillingRunStatus.SUCCEEDED,
        1,
        0,
        0,
    )
    assert [recurring_invoices(sub) for sub in (first, second, third)] == [[JAN_1], [JAN_1], [JAN_1]]
    assert Invoice.objects.get(subscription=third, kind=InvoiceKind.RECURRING).billing_run == rerun
    # and a run after that has nothing left to bill
    again = billing_run_execute(as_of=FEB_1, clock=at(now + timedelta(minutes=20)))
    assert (again.invoices_created, again.invoices_skipped) == (0, 0)
    assert Invoice.objects.filter(kind=InvoiceKind.RECURRING).count() == 3


def test_a_run_no_worker_ever_started_closes_failed(subscriptions):
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=2, now=T0)
    assert len(chunks) == 2
    now = T0 + TIMEOUT + timedelta(seconds=1)
    assert billing_runs_close_stalled(now=now) == [run]
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.chunks_done, run.subscriptions_done) == (
        BillingRunStatus.FAILED,
        now,
        0,
        0,
    )
    assert sorted(run.errors.values_list("subscription_id", flat=True)) == sorted(sub.pk for sub in subscriptions)
    assert run.errors.filter(abandoned=False).count() == 0
    # a message delivered after all (a broker restored late) does nothing: the next run bills instead
    outcome = process(run, chunks, 0, now + timedelta(minutes=1))
    assert (outcome.created, outcome.skipped, outcome.failed) == (0, 0, 0)
    run.refresh_from_db()
    assert (run.status, run.chunks_done, run.invoices_created) == (BillingRunStatus.FAILED, 0, 0)
    assert not Invoice.objects.exists()
    rerun = billing_run_execute(as_of=FEB_1, clock=at(now + timedelta(minutes=2)))
    assert (rerun.status, rerun.invoices_created) == (BillingRunStatus.SUCCEEDED, 3)


def test_a_run_whose_chunks_all_finished_but_stuck_running_closes_succeeded(subscriptions):
    run = billing_run_execute(as_of=FEB_1, chunk_size=2, clock=at(T0))
    BillingRun.objects.filter(pk=run.pk).update(status=BillingRunStatus.RUNNING, finished_at=None)
    # closed by the next pass, without waiting for the stall timeout: nothing is in flight
    now = T0 + timedelta(minutes=15)
    assert billing_runs_close_stalled(now=now) == [run]
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.invoices_created) == (BillingRunStatus.SUCCEEDED, now, 3)
    assert not run.errors.exists()


def test_a_run_recorded_before_chunks_were_is_closed_from_its_counts(subscriptions):
    fresh = BillingRun.objects.create(
        as_of=FEB_1, started_at=T0, subscriptions_total=4, subscriptions_done=2, chunks_total=2, chunks_done=1
    )
    stale = BillingRun.objects.create(
        as_of=FEB_1,
        started_at=T0 - TIMEOUT - timedelta(minutes=1),
        subscriptions_total=4,
        subscriptions_done=2,
        chunks_total=2,
        chunks_done=1,
    )
    assert billing_runs_close_stalled(now=T0) == [stale]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.finished_at) == (BillingRunStatus.PARTIAL, T0)
    assert (fresh.status, fresh.finished_at) == (BillingRunStatus.RUNNING, None)


def test_a_fresh_run_is_left_alone(subscriptions):
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=1, now=T0)
    process(run, chunks, 0, T0 + timedelta(minutes=1))
    # chunk 1 queued behind a long queue, chunk 2 started recently
    BillingRunChunk.objects.filter(run=run, number=2).update(started_at=T0 + TIMEOUT, attempts=1)
    assert billing_runs_close_stalled(now=T0 + TIMEOUT - timedelta(seconds=1)) == []
    # chunk 1 is stale now, chunk 2 is not: chunk 1 is abandoned but the run waits for chunk 2
    assert billing_runs_close_stalled(now=T0 + TIMEOUT + timedelta(minutes=1)) == []
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (BillingRunStatus.RUNNING, None)
    assert list(run.chunks.filter(abandoned_at__isnull=False).values_list("number", flat=True)) == [1]
    # when chunk 2 reports, the run closes itself: partial, since chunk 1 was abandoned
    process(run, chunks, 2, T0 + TIMEOUT + timedelta(minutes=2))
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.chunks_done) == (
        BillingRunStatus.PARTIAL,
        T0 + TIMEOUT + timedelta(minutes=2),
        2,
    )


def test_a_redelivered_chunk_restarts_the_clock_and_completes_the_run(subscriptions, monkeypatch):
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=3, now=T0)
    process_and_die(monkeypatch, run, chunks, 0, T0 + timedelta(minutes=1))
    # the broker redelivers the message after its visibility timeout (30 min): another worker finishes it
    outcome = process(run, chunks, 0, T0 + timedelta(minutes=31))
    assert (outcome.created, outcome.skipped) == (0, 0)  # the killed worker had written the invoices
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.chunks_done, run.subscriptions_done) == (
        BillingRunStatus.SUCCEEDED,
        T0 + timedelta(minutes=31),
        1,
        3,
    )
    assert run.chunks.get().attempts == 2
    assert Invoice.objects.filter(kind=InvoiceKind.RECURRING).count() == 3


def test_a_chunk_delivered_twice_is_counted_once(subscriptions):
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=2, now=T0)
    process(run, chunks, 0, T0 + timedelta(minutes=1))
    outcome = process(run, chunks, 0, T0 + timedelta(minutes=2))
    assert (outcome.created, outcome.skipped) == (0, 0)
    run.refresh_from_db()
    assert (run.status, run.chunks_done, run.subscriptions_done, run.invoices_created) == (
        BillingRunStatus.RUNNING,
        1,
        2,
        2,
    )
    process(run, chunks, 1, T0 + timedelta(minutes=3))
    run.refresh_from_db()
    assert (run.status, run.chunks_done, run.subscriptions_done, run.invoices_created) == (
        BillingRunStatus.SUCCEEDED,
        2,
        3,
        3,
    )


def test_a_chunk_that_kills_its_worker_every_time_stops_being_started(subscriptions, monkeypatch):
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=3, now=T0)

    def killed(**kwargs):
        raise WorkerKilled

    monkeypatch.setattr(runs, "_close_subscriptions", killed)
    monkeypatch.setattr(runs, "_chunk_finish", killed)
    for attempt in range(MAX_CHUNK_ATTEMPTS):
        with pytest.raises(WorkerKilled):
            process(run, chunks, 0, T0 + timedelta(minutes=attempt))
    # the next redelivery is acknowledged without running the chunk
    outcome = process(run, chunks, 0, T0 + timedelta(minutes=10))
    assert (outcome.created, outcome.skipped, outcome.failed) == (0, 0, 0)
    chunk = run.chunks.get()
    assert (chunk.attempts, chunk.started_at) == (MAX_CHUNK_ATTEMPTS, T0 + timedelta(minutes=MAX_CHUNK_ATTEMPTS - 1))
    monkeypatch.undo()
    now = chunk.started_at + TIMEOUT + timedelta(seconds=1)
    assert billing_runs_close_stalled(now=now) == [run]
    run.refresh_from_db()
    assert run.status == BillingRunStatus.FAILED
    assert "after 3 attempt(s)" in run.errors.first().message


def test_the_beat_pass_closes_stalled_runs_then_bills_what_they_missed(
    subscriptions, django_capture_on_commit_callbacks
):
    stalled, _ = billing_run_create(
        as_of=FEB_1, trigger="beat", chunk_size=3, now=timezone.now() - TIMEOUT - timedelta(minutes=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run_id = close_billing_periods_task.delay(as_of=FEB_1.isoformat()).get()
    stalled.refresh_from_db()
    assert stalled.status == BillingRunStatus.FAILED
    assert BillingRunError.objects.filter(run=stalled, abandoned=True).count() == 3
    run = BillingRun.objects.get(pk=run_id)
    assert (run.status, run.invoices_created) == (BillingRunStatus.SUCCEEDED, 3)
    assert run.chunks.get().finished_at is not None  # the task passed its chunk number


def test_the_chunk_task_and_broker_are_configured_for_lost_workers():
    assert billing_run_chunk_task.acks_late is True
    assert billing_run_chunk_task.reject_on_worker_lost is True
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert visibility == 30 * 60
    # a redelivered message gets its chance before the run is declared stalled
    assert timedelta(seconds=visibility) < settings.METERLINE_BILLING_RUN_STALL_TIMEOUT


def test_the_run_page_shows_the_final_status_and_the_subscriptions_not_billed(subscriptions, superuser_client):
    run, _ = billing_run_create(as_of=FEB_1, trigger="beat", chunk_size=2, now=T0)
    billing_runs_close_stalled(now=T0 + TIMEOUT + timedelta(seconds=1))
    page = superuser_client.get(reverse("admin:invoicing_billingrun_change", args=[run.pk])).content.decode()
    assert "Failed: no subscription billed" in page
    assert "Subscriptions not billed (failed, or abandoned with a lost worker&#x27;s chunk)" in page
    for sub in subscriptions:
        assert sub.pk in page
    assert (
        "Abandoned: chunk 1 queued at 2026-02-01 00:10 UTC never finished (worker lost after 0 attempt(s)); "
        "the next run bills this subscription." in page
    )
    listing = superuser_client.get(reverse("admin:invoicing_billingrun_changelist") + "?status__exact=failed")
    assert f"/admin/invoicing/billingrun/{run.pk}/change/" in listing.content.decode()

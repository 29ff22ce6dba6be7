"""Test clocks: create, advance (bill the clock's subscriptions as if the time had passed, with bounded
catch-up), the background catch-up of an advance, and delete."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import Subscription, SubscriptionStatus

from ..models import (
    BillingRun,
    Invoice,
    InvoiceError,
    InvoiceStatus,
)
from .catch_up import catch_up_enqueue, test_clock_check_bounds
from .invoice_states import invoice_finalize
from .runs import billing_run_create, billing_run_process_chunk, candidate_subscription_ids


class TestClockError(InvoiceError):
    """A refused test clock change; ``conflict`` tells a state conflict (409) from bad input (400)."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, *, conflict: bool = False):
        super().__init__(message)
        self.conflict = conflict


def test_clock_create(
    *, merchant, current_time: datetime, name: str = "", description: str = "", now: datetime | None = None
):
    """A test clock of ``merchant`` set at ``current_time`` (may be in the past; at most
    ``METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS`` after the real ``now``, else ``TimeBoundError``)."""
    from catalog.models import TestClock

    test_clock_check_bounds(current_time=current_time, now=now or timezone.now())
    with transaction.atomic():
        clock = TestClock(merchant=merchant, current_time=current_time, name=name, description=description)
        clock.full_clean()
        clock.save()
    return clock


test_clock_create.__test__ = False  # not a pytest test


def test_clock_advance(*, test_clock, to: datetime, now: datetime) -> BillingRun:
    """Move ``test_clock`` forward to ``to`` and bill its subscriptions as if that time had passed: one
    billing run (the beat's code, restricted to the clock's subscriptions) closes the periods that ended
    by ``to`` — at most ``METERLINE_INLINE_CATCHUP_PERIODS`` per subscription, the rest are left to a
    background billing run (``catch_up``; the returned run's ``catch_up`` names it, else None) — then
    every draft of those subscriptions whose grace period ended by ``to`` is issued, each at the end of
    its own grace period (when the beat would have issued it). ``to`` may lie at most
    ``METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS`` after the real ``now`` (``TimeBoundError``)."""
    from catalog.models import TestClock

    test_clock_check_bounds(current_time=to, now=now)
    with transaction.atomic():
        clock = TestClock.objects.select_for_update().get(pk=test_clock.pk)
        if clock.deleted_at is not None:
            raise TestClockError("The test clock is deleted.", conflict=True)
        if to <= clock.current_time:
            raise TestClockError(
                f"A test clock only moves forward; it is at {clock.current_time.isoformat()}.",
            )
        clock.current_time = to
        clock.save(update_fields=["current_time", "updated_at"])
    on_clock = set(Subscription.objects.filter(test_clock=clock).values_list("pk", flat=True))
    ids = [pk for pk in candidate_subscription_ids(as_of=to, merchant=clock.merchant) if pk in on_clock]
    run, chunks = billing_run_create(
        as_of=to, trigger="test_clock", merchant=clock.merchant, now=now, subscription_ids=ids
    )
    deferred, deferred_ids = 0, []
    for chunk in chunks:
        outcome = billing_run_process_chunk(
            run_id=run.pk, subscription_ids=chunk, as_of=to, max_periods=settings.METERLINE_INLINE_CATCHUP_PERIODS
        )
        deferred += outcome.deferred
        deferred_ids += outcome.deferred_ids
    run.refresh_from_db()
    catch_up = catch_up_enqueue(subscription_ids=deferred_ids, as_of=to, pending=deferred, now=now, test_clock=clock)
    _test_clock_issue_due(clock, to=to)
    test_clock.refresh_from_db()
    run.catch_up = catch_up
    return run


test_clock_advance.__test__ = False  # not a pytest test


def _test_clock_issue_due(clock, *, to: datetime) -> None:
    """Issue the clock's drafts whose grace period ended by ``to``, each at its own grace end."""
    due = Invoice.objects.filter(
        subscription__test_clock=clock, status=InvoiceStatus.DRAFT, grace_ends_at__isnull=False, grace_ends_at__lte=to
    ).order_by("grace_ends_at", "pk")
    for invoice in due:
        try:
            invoice_finalize(invoice=invoice, now=invoice.grace_ends_at)
        except InvoiceError:
            continue  # issued meanwhile by the beat


def test_clock_catch_up(*, run_id: int, chunks: list[list[str]], to: datetime, test_clock_id: str) -> None:
    """The background part of a test clock advance: close the ended periods the request left (run
    ``run_id``, trigger ``catch_up``), then issue the clock's drafts whose grace ended by ``to``, each at
    its own grace end, as the advance itself does."""
    from catalog.models import TestClock

    for chunk in chunks:
        billing_run_process_chunk(run_id=run_id, subscription_ids=chunk, as_of=to)
    _test_clock_issue_due(TestClock.objects.get(pk=test_clock_id), to=to)


test_clock_catch_up.__test__ = False  # not a pytest test


def test_clock_delete(*, test_clock, now: datetime):
    """Soft-delete a test clock; refused while a subscription on it is not terminated."""
    from catalog.models import TestClock

    with transaction.atomic():
        clock = TestClock.objects.select_for_update().get(pk=test_clock.pk)
        if clock.deleted_at is not None:
            raise TestClockError("The test clock is already deleted.", conflict=True)
        live = clock.subscriptions.exclude(status=SubscriptionStatus.TERMINATED).order_by("pk")
        if live.exists():
            raise TestClockError(
                "Subscriptions on this clock are not terminated: " + ", ".join(live.values_list("pk", flat=True)[:10]),
                conflict=True,
            )
        clock.deleted_at = now
        clock.save(update_fields=["deleted_at", "updated_at"])
    return clock


test_clock_delete.__test__ = False  # not a pytest test

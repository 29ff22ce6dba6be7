"""Bounded catch-up: the time bounds of a start or a test clock (``TimeBoundError``) and the ended
periods a request leaves to a background billing run (``CatchUp``; invoicing/API.md, "Time bounds")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from ..models import (
    BillingRun,
    InvoiceError,
)
from .runs import billing_run_create


class TimeBoundError(InvoiceError):
    """A time beyond the configured bounds (invoicing/API.md, "Time bounds"); ``field`` is the wire field."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CatchUp:
    """Ended periods a request left to a background billing run (trigger ``catch_up``): a backdated start
    or a test clock advance invoices at most ``METERLINE_INLINE_CATCHUP_PERIODS`` periods per subscription
    itself. Read from ``subscription.catch_up`` after ``subscription_start`` (None: nothing was left)."""

    pending_periods: int
    billing_run: BillingRun


def _shifted(moment: datetime, days: int) -> datetime:
    """``moment`` moved by ``days``, clamped to the calendar's ends."""
    try:
        return moment + timedelta(days=days)
    except OverflowError:
        return datetime.max.replace(tzinfo=moment.tzinfo) if days > 0 else datetime.min.replace(tzinfo=moment.tzinfo)


def subscription_start_check_bounds(*, started_at: datetime, at: datetime) -> None:
    """Refuse a start more than ``METERLINE_BACKDATE_HORIZON_DAYS`` before ``at`` (the subscription's
    current time) or more than ``METERLINE_START_MAX_AHEAD_DAYS`` after it."""
    back, ahead = settings.METERLINE_BACKDATE_HORIZON_DAYS, settings.METERLINE_START_MAX_AHEAD_DAYS
    earliest, latest = _shifted(at, -back), _shifted(at, ahead)
    if started_at < earliest:
        raise TimeBoundError(
            f"The start may lie at most {back} days in the past (not before {earliest.isoformat()}).",
            field="startedAt",
        )
    if started_at > latest:
        raise TimeBoundError(
            f"The start may lie at most {ahead} days in the future (not after {latest.isoformat()}).",
            field="startedAt",
        )


def test_clock_check_bounds(*, current_time: datetime, now: datetime, field: str = "currentTime") -> None:
    """Refuse a test clock time more than ``METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS`` after the real ``now``."""
    ahead = settings.METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS
    latest = _shifted(now, ahead)
    if current_time > latest:
        raise TimeBoundError(
            f"A test clock may be at most {ahead} days ahead of the real time (not after {latest.isoformat()}).",
            field=field,
        )


test_clock_check_bounds.__test__ = False  # not a pytest test


def catch_up_enqueue(
    *, subscription_ids: list[str], as_of: datetime, pending: int, now: datetime, test_clock=None
) -> CatchUp | None:
    """Hand the ended periods a request did not invoice to a background run, queued once committed. A
    test clock's catch-up also issues the clock's drafts whose grace ended (``test_clock_catch_up``)."""
    if not subscription_ids:
        return None
    from ..tasks import billing_run_enqueue, test_clock_catch_up_task  # tasks import this package

    if test_clock is None:
        run = billing_run_enqueue(as_of=as_of, trigger="catch_up", subscription_ids=subscription_ids)
        return CatchUp(pending_periods=pending, billing_run=run)
    with transaction.atomic():
        run, chunks = billing_run_create(as_of=as_of, trigger="catch_up", now=now, subscription_ids=subscription_ids)
        transaction.on_commit(lambda: test_clock_catch_up_task.delay(run.pk, chunks, as_of.isoformat(), test_clock.pk))
    return CatchUp(pending_periods=pending, billing_run=run)

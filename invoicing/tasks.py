"""Celery tasks: thin wrappers that pass the time in and call the services.

The beat task records a run and fans its subscriptions out in chunks, one task per chunk, so several
workers share a large run; a chunk is safe to retry (what exists is skipped). Each beat pass first
closes the runs a lost worker left ``running`` (``billing_runs_close_stalled``).
"""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import BillingRun
from .receivables import invoices_mark_overdue
from .services import (
    DEFAULT_CHUNK_SIZE,
    billing_run_create,
    billing_run_process_chunk,
    billing_runs_close_stalled,
    document_deliveries_send_due,
    document_delivery_send,
    dunning_reminders_send_due,
    invoices_finalize_due,
    test_clock_catch_up,
    usage_thresholds_evaluate,
)


def _moment(value: str | None) -> datetime:
    if not value:
        return timezone.now()
    moment = parse_datetime(value)
    if moment is None or timezone.is_naive(moment):
        raise ValueError(f"{value!r} is not an aware ISO 8601 datetime")
    return moment


def billing_run_enqueue(
    *,
    as_of: datetime,
    trigger: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    requested_by: str = "",
    note: str = "",
    subscription_ids: list[str] | None = None,
) -> BillingRun:
    """Record a run and queue one task per chunk of subscriptions, once the run row is committed.
    ``subscription_ids`` restricts the run to these subscriptions (a request's catch-up)."""
    with transaction.atomic():
        run, chunks = billing_run_create(
            as_of=as_of,
            trigger=trigger,
            chunk_size=chunk_size,
            now=timezone.now(),
            requested_by=requested_by,
            note=note,
            subscription_ids=subscription_ids,
        )
        for number, chunk in enumerate(chunks):
            transaction.on_commit(
                lambda number=number, chunk=chunk: billing_run_chunk_task.delay(
                    run.pk, chunk, run.as_of.isoformat(), chunk=number
                )
            )
    return run


@shared_task(name="invoicing.close_billing_periods")
def close_billing_periods_task(
    as_of: str | None = None, trigger: str = "beat", chunk_size: int = DEFAULT_CHUNK_SIZE
) -> int:
    """Close the stalled runs (at the real now, whatever ``as_of``), then every billing period ended by
    ``as_of`` (default: now); returns the new run's id. The new run bills what a stalled one missed."""
    billing_runs_close_stalled(now=timezone.now())
    return billing_run_enqueue(as_of=_moment(as_of), trigger=trigger, chunk_size=chunk_size).pk


# acks_late: the message is acknowledged when the chunk ends, not when a worker takes it, so a worker
# killed mid-chunk (deploy, OOM, SIGKILL) leaves the message to another worker instead of losing it.
# reject_on_worker_lost: when the worker *process* dies, Celery requeues the message at once rather than
# acknowledging it as failed. Both are safe only because a chunk is idempotent by constraint (a second
# delivery skips what exists and is not counted twice, see ``billing_run_process_chunk``), and a chunk
# that kills its worker every time stops after MAX_CHUNK_ATTEMPTS. A message whose worker vanished
# without a word (network split, host lost) comes back after the broker's visibility timeout
# (CELERY_BROKER_TRANSPORT_OPTIONS); a run still unfinished after the stall timeout is closed anyway.
@shared_task(name="invoicing.billing_run_chunk", acks_late=True, reject_on_worker_lost=True)
def billing_run_chunk_task(
    run_id: int, subscription_ids: list[str], as_of: str, chunk: int | None = None
) -> dict[str, int]:
    outcome = billing_run_process_chunk(
        run_id=run_id, subscription_ids=subscription_ids, as_of=_moment(as_of), chunk=chunk
    )
    return {"created": outcome.created, "skipped": outcome.skipped, "failed": outcome.failed}


@shared_task(name="invoicing.test_clock_catch_up", acks_late=True)
def test_clock_catch_up_task(run_id: int, chunks: list[list[str]], to: str, test_clock_id: str) -> None:
    """The periods a test clock advance left to the background (safe to retry: what exists is skipped)."""
    test_clock_catch_up(run_id=run_id, chunks=chunks, to=_moment(to), test_clock_id=test_clock_id)


test_clock_catch_up_task.__test__ = False  # not a pytest test


@shared_task(name="invoicing.finalize_due_invoices")
def finalize_due_invoices_task(now: str | None = None) -> dict[str, int]:
    """Issue the drafts whose grace period has ended."""
    return invoices_finalize_due(now=_moment(now))


@shared_task(name="invoicing.bill_commitment_true_ups")
def bill_commitment_true_ups_task(now: str | None = None) -> int:
    """True up ended commitments and bill their shortfalls (invoicing/REALTIME.md); returns the count."""
    from .one_off_invoices import commitment_true_ups_bill

    return len(commitment_true_ups_bill(now=_moment(now)))


@shared_task(name="invoicing.link_external_subjects")
def link_external_subjects_task(now: str | None = None) -> int:
    """Link events stored before their customer existed and debit those of real-time subscriptions
    (invoicing/REALTIME.md, "Events linked to their customer later"); returns the number linked."""
    from .realtime import events_link_and_debit

    return events_link_and_debit(now=_moment(now)).linked


# acks_late: a worker lost mid-send leaves the message for another; the delivery's lease (services/delivery.py)
# keeps a second worker from sending while the first still may be, and the beat sweep below finds what is left.
@shared_task(name="invoicing.document_delivery_send", acks_late=True)
def document_delivery_send_task(delivery_id: int) -> str:
    """E-mail one issued invoice or credit note (invoicing/README.md, "Delivery"); returns the status."""
    return document_delivery_send(delivery_id=delivery_id, now=timezone.now()).status


@shared_task(name="invoicing.document_deliveries_send_due")
def document_deliveries_send_due_task() -> int:
    """Retry the deliveries whose next attempt is due, and send those whose task was lost; returns the count."""
    return len(document_deliveries_send_due(now=timezone.now()))


@shared_task(name="invoicing.invoices_mark_overdue")
def invoices_mark_overdue_task(now: str | None = None) -> int:
    """Mark open invoices past their due date OVERDUE (invoicing/RECEIVABLES.md); returns the count."""
    return invoices_mark_overdue(now=_moment(now))


@shared_task(name="invoicing.dunning_reminders_send_due")
def dunning_reminders_send_due_task(now: str | None = None) -> int:
    """E-mail the payment reminders and final notices that are due (invoicing/RECEIVABLES.md, "Dunning");
    returns how many were queued. Safe to retry: each step exists once per invoice (a constraint)."""
    return len(dunning_reminders_send_due(now=_moment(now)))


@shared_task(name="invoicing.evaluate_usage_thresholds")
def evaluate_usage_thresholds_task(now: str | None = None, after: str | None = None) -> int:
    """Issue the threshold invoices now due (invoicing/THRESHOLDS.md): one bounded batch of subscriptions with
    a threshold, then the next batch queued as a task of its own with the same time; returns the invoices
    issued by this batch. Safe to retry or overlap: each threshold invoice exists once (a constraint)."""
    moment = _moment(now)
    sweep = usage_thresholds_evaluate(now=moment, after=after)
    if sweep.next_after is not None:
        evaluate_usage_thresholds_task.delay(moment.isoformat(), sweep.next_after)
    return len(sweep.invoices)


@shared_task(name="invoicing.spend_evaluate_due")
def spend_evaluate_due_task(now: str | None = None) -> int:
    """Fire the spend alerts and enforce the spend caps of the watched customers whose usage changed
    (invoicing/SPEND.md); returns how many customers were evaluated. Safe to retry: a threshold fires once
    per period (a constraint)."""
    from .spend.services import spend_evaluate_due

    return len(spend_evaluate_due(now=_moment(now)))


@shared_task(name="invoicing.spend_alert_email_send", acks_late=True)
def spend_alert_email_send_task(firing_id: int) -> str:
    """E-mail one fired spend alert (invoicing/SPEND.md); returns the e-mail's status."""
    from .spend.mail import spend_alert_email_send

    return spend_alert_email_send(firing_id=firing_id, now=timezone.now()).email_status

"""Dunning: reminders of overdue invoices on each merchant's schedule (invoicing/RECEIVABLES.md, "Dunning").

A merchant's ``DunningSettings`` lists reminder days after the due date (e.g. 3, 7, 14) and a final notice
day; steps 1…n are the reminders, n + 1 the final notice. The beat task calls
``dunning_reminders_send_due(now=…)``: for every open invoice with money due whose latest due step has not
been reached yet, one transaction locks the invoice, re-checks it, inserts the step's ``DunningReminder``
(unique per invoice and step: a beat retry or a second worker loses the insert and sends nothing) and
queues the e-mail through the delivery log, sent after commit. When several steps are due at once (dunning
switched on late, a worker down for days) only the latest is sent; the earlier ones are recorded as skipped.

Dunning stops the moment the invoice is paid, credited to zero or voided: such invoices are not selected,
the insert re-checks the status under the invoice's lock, and a reminder queued before the payment is
skipped when its turn to be sent comes (``services/delivery.py``). Invoices on a test clock follow their
clock's time; their reminders are logged, not e-mailed, like their documents.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q

from ..calculation import subscription_now
from ..models import (
    OPEN_STATUSES,
    DeliveryReason,
    DunningAfterFinal,
    DunningReminder,
    DunningReminderStatus,
    DunningSettings,
    Invoice,
)
from ..receivables.locks import invoices_lock
from ..receivables.past_due import subscription_past_due_mark
from .delivery import document_delivery_queue

PAST_DUE_ACTION = "Subscription marked past due."
USAGE_BLOCKED_ACTION = "Subscription marked past due; its real-time usage is blocked."


def dunning_step_due(*, dunning: DunningSettings, due_at: datetime, as_of: datetime) -> tuple[int, int] | None:
    """The latest step of ``dunning``'s schedule due at ``as_of`` for an invoice due at ``due_at``, as
    (step, days after the due date); None before the first reminder day."""
    due = [(step, days) for step, days in dunning.schedule if due_at + timedelta(days=days) <= as_of]
    return due[-1] if due else None


def _candidates(*, merchant_ids, now: datetime):
    """Open invoices with money due, past their due date (by their test clock's time when they have one),
    with the last dunning step they got."""
    return (
        Invoice.objects.filter(
            merchant_id__in=merchant_ids, status__in=OPEN_STATUSES, amount_due__gt=0, due_at__isnull=False
        )
        .filter(
            Q(subscription__test_clock__isnull=True, due_at__lt=now)
            | Q(subscription__test_clock__isnull=False, due_at__lt=F("subscription__test_clock__current_time"))
        )
        .annotate(clock_time=F("subscription__test_clock__current_time"), last_step=Max("dunning_reminders__step"))
        .order_by("due_at", "pk")
        .values_list("pk", "merchant_id", "due_at", "clock_time", "last_step")
    )


def dunning_reminders_send_due(*, now: datetime) -> list[DunningReminder]:
    """Queue the reminder (or final notice) of every overdue invoice whose next step is due, at most once per
    step; returns the reminders queued by this call. Safe to run twice or concurrently (see the module)."""
    settings_by_merchant = {row.merchant_id: row for row in DunningSettings.objects.filter(enabled=True)}
    if not settings_by_merchant:
        return []
    queued = []
    for invoice_id, merchant_id, due_at, clock_time, last_step in _candidates(
        merchant_ids=list(settings_by_merchant), now=now
    ):
        dunning = settings_by_merchant[merchant_id]
        step = dunning_step_due(dunning=dunning, due_at=due_at, as_of=clock_time or now)
        if step is None or (last_step or 0) >= step[0]:
            continue
        reminder = dunning_reminder_send(invoice_id=invoice_id, dunning=dunning, now=now)
        if reminder is not None:
            queued.append(reminder)
    return queued


@transaction.atomic
def dunning_reminder_send(*, invoice_id: str, dunning: DunningSettings, now: datetime) -> DunningReminder | None:
    """Queue the latest due step of one invoice (one transaction, under the invoice's lock); None when the
    invoice is settled, no step is due, or this step (or a later one) was already sent."""
    invoice = invoices_lock([invoice_id]).get(invoice_id)
    if invoice is None or invoice.status not in OPEN_STATUSES or invoice.amount_due <= 0 or invoice.due_at is None:
        return None
    step = dunning_step_due(dunning=dunning, due_at=invoice.due_at, as_of=subscription_now(invoice.subscription, now))
    if step is None:
        return None
    number, days = step
    final = number == dunning.final_step
    if DunningReminder.objects.filter(invoice=invoice, step__gt=number).exists():
        return None  # a later step went out already (a schedule shortened since): never step back
    try:
        # Exactly once: the (invoice, step) constraint decides who sends a step, not a check: a beat retry or a
        # second worker loses the insert, and the savepoint turns that into a skip.
        with transaction.atomic():
            reminder = DunningReminder.objects.create(
                merchant_id=invoice.merchant_id,
                customer_id=invoice.customer_id,
                invoice=invoice,
                step=number,
                days_after_due=days,
                final=final,
                status=DunningReminderStatus.QUEUED,
                created_at=now,
            )
    except IntegrityError:
        return None
    DunningReminder.objects.bulk_create(
        [
            DunningReminder(
                merchant_id=invoice.merchant_id,
                customer_id=invoice.customer_id,
                invoice=invoice,
                step=earlier,
                days_after_due=earlier_days,
                status=DunningReminderStatus.SKIPPED,
                created_at=now,
            )
            for earlier, earlier_days in dunning.schedule
            if earlier < number
        ],
        ignore_conflicts=True,  # the steps that were sent keep their rows
    )
    reminder.delivery = document_delivery_queue(
        document=invoice,
        now=now,
        reason=DeliveryReason.FINAL_NOTICE if final else DeliveryReason.REMINDER,
    )
    changed = ["delivery"]
    if final and dunning.after_final in (DunningAfterFinal.MARK_PAST_DUE, DunningAfterFinal.BLOCK_USAGE):
        block = dunning.after_final == DunningAfterFinal.BLOCK_USAGE
        subscription_past_due_mark(subscription_id=invoice.subscription_id, block_usage=block, at=now)
        reminder.action = USAGE_BLOCKED_ACTION if block else PAST_DUE_ACTION
        changed.append("action")
    reminder.save(update_fields=changed)
    return reminder

"""Writes of invoicing: subscription lifecycle, billing runs, invoice states, numbering, credit notes.

Every public service is keyword-only, takes the time it acts at (``now`` / ``as_of``) and runs its
writes in one explicit transaction. Exactly once rests on the database: a partial unique constraint on
(subscription, period_start) for recurring invoices, a row lock on the subscription while its invoice
is written, and a savepoint that turns a lost race into a skip.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from catalog.models import Customer, Plan, Subscription, SubscriptionStatus
from catalog.pricing import round_money
from catalog.pricing.currency import CTX
from core.formatting import decimal_string
from wallets.entitlements import grant_purchase_fulfil
from wallets.selectors import PeriodDebits, period_debits_by_segment, subscriptions_with_debits
from wallets.services import invoice_settlement_record, wallet_lock

from . import metrics
from . import usage as usage_source
from .calculation import (
    SUBSCRIPTION_RELATED,
    Biller,
    ComposedInvoice,
    LineDraft,
    apply_prepaid,
    finish_lines,
    is_in_advance_fee,
    is_one_off,
    service_window,
    subscription_end,
    subscription_next_period,
    subscription_now,
    subscription_period_at,
)
from .models import (
    BillingRun,
    BillingRunChunk,
    BillingRunError,
    BillingRunStatus,
    CreditNote,
    CreditNoteLine,
    DocumentSequence,
    DocumentType,
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    PlanChangeKind,
    SubscriptionPlanChange,
)
from .periods import Period
from .pricing_adapter import plan_prices_for_customer, prices_for_subscriptions
from .selectors import invoice_creditable_lines

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 500


# -- numbering -------------------------------------------------------------------------------------


def _next_number(*, merchant, year: int, document_type: str) -> int:
    """The next number of the merchant's yearly sequence; the row stays locked until the caller commits,
    so two concurrent issues serialise and numbers are gap-free (a rollback gives the number back)."""
    sequence, _ = DocumentSequence.objects.select_for_update().get_or_create(
        merchant=merchant, year=year, document_type=document_type
    )
    number = sequence.last_number + 1  # safe: the row is locked until the caller commits
    DocumentSequence.objects.filter(pk=sequence.pk).update(last_number=number)
    return number


def invoice_number_format(*, merchant, year: int, sequence: int) -> str:
    prefix = merchant.invoice_number_prefix or "INV"
    return f"{prefix}-{year}-{sequence:06d}"


def credit_note_number_format(*, year: int, sequence: int) -> str:
    return f"CN-{year}-{sequence:06d}"


# -- writing invoices ------------------------------------------------------------------------------


def _invoice_from_composition(
    composed: ComposedInvoice, *, subscription: Subscription, plan: Plan, run: BillingRun | None = None, **extra
) -> Invoice:
    return Invoice(
        merchant_id=subscription.merchant_id,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        plan=plan,
        kind=composed.kind,
        currency=composed.currency,
        period_start=composed.period_start,
        period_end=composed.period_end,
        tax_behavior=composed.tax_behavior,
        tax_rate=composed.tax_rate,
        subtotal=composed.subtotal,
        tax=composed.tax,
        total=composed.total,
        amount_due=composed.amount_due,
        billing_run=run,
        **extra,
    )


def _line_rows(invoice: Invoice, lines: Iterable[LineDraft]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            price=line.price,
            description=line.description[:500],
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            service_start=line.service_start,
            service_end=line.service_end,
            explanation=line.explanation,
        )
        for position, line in enumerate(lines, start=1)
    ]


def _insert_invoice(invoice: Invoice, lines: Iterable[LineDraft]) -> bool:
    """Insert ``invoice`` and its lines; False when the unique constraint says it already exists."""
    try:
        with transaction.atomic():
            invoice.save(force_insert=True)
    except IntegrityError:
        return False
    InvoiceLine.objects.bulk_create(_line_rows(invoice, lines))
    return True


def invoice_insert(composed: ComposedInvoice, *, subscription: Subscription, plan: Plan, **extra) -> Invoice:
    """Write a composed invoice and its lines as a draft (caller holds the transaction); ``extra``:
    further ``Invoice`` fields (``adjusts``, ``grace_ends_at``, ...)."""
    invoice = _invoice_from_composition(composed, subscription=subscription, plan=plan, **extra)
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(_line_rows(invoice, composed.lines))
    return invoice


def invoice_issue(invoice: Invoice, *, now: datetime) -> None:
    """Give a draft its number and issue it (caller holds the transaction)."""
    year = now.year
    sequence = _next_number(merchant=invoice.merchant, year=year, document_type=DocumentType.INVOICE)
    invoice.number = invoice_number_format(merchant=invoice.merchant, year=year, sequence=sequence)
    invoice.status = InvoiceStatus.ISSUED
    invoice.issued_at = now
    invoice.grace_ends_at = None
    invoice.save(update_fields=["number", "status", "issued_at", "grace_ends_at", "updated_at"])
    transaction.on_commit(metrics.INVOICES_ISSUED.inc)  # counted once the number is committed


# -- billing runs ----------------------------------------------------------------------------------


@dataclass
class ChunkOutcome:
    created: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[tuple[str, datetime | None, str]] = field(default_factory=list)
    # With ``max_periods``: ended periods left unbilled, and the subscriptions they belong to.
    deferred: int = 0
    deferred_ids: list[str] = field(default_factory=list)


def _candidate_subscription_ids(*, as_of: datetime, merchant=None) -> list[str]:
    """Subscriptions that may have something to bill: started (by their own clock) and not yet billed
    through their end."""
    final_billed = Invoice.objects.filter(
        subscription_id=OuterRef("pk"), kind=InvoiceKind.RECURRING, period_end__gte=OuterRef("terminated_at")
    )
    queryset = (
        Subscription.objects.filter(status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.TERMINATED])
        .filter(
            Q(test_clock__isnull=True, started_at__lte=as_of)
            | Q(test_clock__isnull=False, started_at__lte=F("test_clock__current_time"))
        )
        .exclude(Q(status=SubscriptionStatus.TERMINATED) & Exists(final_billed))
    )
    if merchant is not None:
        queryset = queryset.filter(merchant=merchant)
    return list(queryset.order_by("pk").values_list("pk", flat=True))


def billing_run_create(
    *,
    as_of: datetime,
    trigger: str,
    merchant=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    now: datetime | None = None,
    subscription_ids: list[str] | None = None,
    requested_by: str = "",
    note: str = "",
) -> tuple[BillingRun, list[list[str]]]:
    """Record a run closing every period ended by ``as_of`` and split its subscriptions into chunks.

    ``requested_by`` and ``note`` say who started a run by hand and why (the admin asks for a reason)."""
    ids = _candidate_subscription_ids(as_of=as_of, merchant=merchant) if subscription_ids is None else subscription_ids
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    run = BillingRun.objects.create(
        as_of=as_of,
        trigger=trigger,
        requested_by=requested_by,
        note=note,
        started_at=now or as_of,
        subscriptions_total=len(ids),
        chunks_total=len(chunks),
    )
    BillingRunChunk.objects.bulk_create(
        [BillingRunChunk(run=run, number=number, subscription_ids=chunk) for number, chunk in enumerate(chunks)]
    )
    if not chunks:
        BillingRun.objects.filter(pk=run.pk).update(status=BillingRunStatus.SUCCEEDED, finished_at=now or as_of)
        run.refresh_from_db()
    return run, chunks


def billing_run_execute(
    *,
    as_of: datetime,
    trigger: str = "command",
    merchant=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    clock: Callable[[], datetime] = timezone.now,
    subscription_ids: list[str] | None = None,
) -> BillingRun:
    """Close every billing period ended by ``as_of`` synchronously, chunk after chunk (the management
    command; the beat task fans the same chunks out to workers). ``subscription_ids`` restricts the run
    to these subscriptions (a test clock's)."""
    run, chunks = billing_run_create(
        as_of=as_of,
        trigger=trigger,
        merchant=merchant,
        chunk_size=chunk_size,
        now=clock(),
        subscription_ids=subscription_ids,
    )
    for number, chunk in enumerate(chunks):
        billing_run_process_chunk(run_id=run.pk, subscription_ids=chunk, as_of=as_of, clock=clock, chunk=number)
    run.refresh_from_db()
    return run


def billing_run_process_chunk(
    *,
    run_id: int,
    subscription_ids: list[str],
    as_of: datetime,
    clock: Callable[[], datetime] = timezone.now,
    chunk: int | None = None,
    max_periods: int | None = None,
) -> ChunkOutcome:
    """Invoice every due period of these subscriptions, one transaction per invoice, and report into the run.

    Safe to retry: what was already written is found and skipped. ``chunk`` is the chunk's number in
    the run (``BillingRunChunk``): a delivery of a chunk that is finished, abandoned, past its attempts
    or of a closed run does nothing (the next run bills what it missed), and a chunk is counted once.
    ``max_periods`` bounds the recurring invoices written per subscription (the oldest periods first); the
    outcome counts the ended periods left over (``deferred``). A chunk interrupted by an exception (a
    worker's time limit, a lost connection) is not counted: it stays in flight until a retry finishes it
    or the stall sweep abandons it (``billing_runs_close_stalled``).
    """
    run = BillingRun.objects.get(pk=run_id)
    outcome = ChunkOutcome()
    started = time.perf_counter()
    if chunk is not None and not _chunk_start(run_id=run_id, number=chunk, now=clock()):
        return outcome
    completed = False
    try:
        with _asynchronous_commit():
            _close_subscriptions(
                run=run, subscription_ids=subscription_ids, as_of=as_of, outcome=outcome, max_periods=max_periods
            )
        completed = True
    finally:
        if completed:
            _chunk_finish(run_id=run_id, number=chunk, subscription_ids=subscription_ids, outcome=outcome, now=clock())
        metrics.BILLING_CHUNK_DURATION.observe(time.perf_counter() - started)
        if outcome.failed:
            metrics.BILLING_INVOICE_FAILURES.inc(outcome.failed)
    return outcome


# A chunk whose worker dies on it this many times (a poison chunk: out of memory, a segfault) is no
# longer started: with ``reject_on_worker_lost`` its message would otherwise be redelivered forever.
# The stall sweep then abandons it and closes the run.
MAX_CHUNK_ATTEMPTS = 3


def _chunk_start(*, run_id: int, number: int, now: datetime) -> bool:
    """Record that a worker starts the chunk (committed before any work); False when it must not run."""
    with transaction.atomic():
        row = BillingRunChunk.objects.select_for_update().filter(run_id=run_id, number=number).first()
        if row is None:
            return True  # a run recorded before chunks were: no bookkeeping to do
        if row.finished_at or row.abandoned_at or row.attempts >= MAX_CHUNK_ATTEMPTS:
            return False
        if BillingRun.objects.filter(pk=run_id, finished_at__isnull=False).exists():
            return False
        row.attempts += 1
        row.started_at = now
        row.save(update_fields=["attempts", "started_at"])
    return True


def _chunk_finish(
    *, run_id: int, number: int | None, subscription_ids: list[str], outcome: ChunkOutcome, now: datetime
) -> None:
    with transaction.atomic():
        # The run row first, as the stall sweep does, so the two never wait on each other's locks.
        BillingRun.objects.select_for_update().filter(pk=run_id).values_list("pk").get()
        BillingRunError.objects.bulk_create(
            [
                BillingRunError(run_id=run_id, subscription_id=sub_id, period_start=start, message=message[:2000])
                for sub_id, start, message in outcome.errors
            ]
        )
        if number is not None and not BillingRunChunk.objects.filter(
            run_id=run_id, number=number, finished_at__isnull=True, abandoned_at__isnull=True
        ).update(finished_at=now):
            if BillingRunChunk.objects.filter(run_id=run_id, number=number).exists():
                return  # counted already (a concurrent duplicate delivery) or abandoned by the sweep
        BillingRun.objects.filter(pk=run_id).update(
            invoices_created=F("invoices_created") + outcome.created,
            invoices_skipped=F("invoices_skipped") + outcome.skipped,
            invoices_failed=F("invoices_failed") + outcome.failed,
            subscriptions_done=F("subscriptions_done") + len(subscription_ids),
            chunks_done=F("chunks_done") + 1,
        )
        run = BillingRun.objects.get(pk=run_id)
        if run.finished_at is None and _run_settled(run):
            _run_close(run, now=now)


def _run_settled(run: BillingRun) -> bool:
    """Nothing in flight: every chunk finished or abandoned (from the counts for a run without chunk rows)."""
    if run.chunks_done >= run.chunks_total:
        return True
    chunks = run.chunks.all()
    return chunks.exists() and not chunks.filter(finished_at__isnull=True, abandoned_at__isnull=True).exists()


def _run_close(run: BillingRun, *, now: datetime) -> None:
    """Close a run whose chunks are all finished or abandoned with its final status.

    ``succeeded``: every chunk finished and no invoice failed; ``failed``: no subscription was billed
    (every chunk abandoned, or every subscription of the finished ones failed); ``partial`` otherwise.
    """
    abandoned = run.chunks_done < run.chunks_total or run.chunks.filter(abandoned_at__isnull=False).exists()
    if not abandoned and not run.invoices_failed:
        status = BillingRunStatus.SUCCEEDED
    else:
        failed = run.errors.filter(abandoned=False).values("subscription_id").distinct().count()
        status = BillingRunStatus.PARTIAL if run.subscriptions_done > failed else BillingRunStatus.FAILED
    if BillingRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(status=status, finished_at=now):
        metrics.BILLING_RUNS.labels(status=status).inc()


def billing_runs_close_stalled(*, now: datetime, stall_timeout: timedelta | None = None) -> list[BillingRun]:
    """Close the running runs whose chunks are all finished or abandoned (the beat pass; see ``BillingRunChunk``).

    A chunk not finished within ``stall_timeout`` (``METERLINE_BILLING_RUN_STALL_TIMEOUT``) of its last
    start — of the run's start if no worker started it — is abandoned: each of its subscriptions gets a
    ``BillingRunError(abandoned=True)``. The run closes once nothing is in flight. Nothing is re-dispatched:
    the next run's candidates are every subscription with an ended, uninvoiced period, so it bills them
    (exactly once: the unique constraint and the watermark skip what a lost worker managed to write).
    Returns the runs closed.
    """
    timeout = settings.METERLINE_BILLING_RUN_STALL_TIMEOUT if stall_timeout is None else stall_timeout
    stale_before = now - timeout
    closed = []
    for run_id in BillingRun.objects.filter(finished_at__isnull=True).values_list("pk", flat=True):
        with transaction.atomic():
            run = BillingRun.objects.select_for_update().get(pk=run_id)
            if run.finished_at is not None:
                continue
            open_chunks = list(
                run.chunks.select_for_update().filter(finished_at__isnull=True, abandoned_at__isnull=True)
            )
            stale = [c for c in open_chunks if (c.started_at or run.started_at) < stale_before]
            for chunk in stale:
                _chunk_abandon(chunk, now=now, stale_since=chunk.started_at or run.started_at)
            if len(stale) < len(open_chunks):
                continue  # chunks still in flight: the run is left to them
            legacy = not open_chunks and not run.chunks.exists()  # recorded before runs had chunk rows
            if legacy and run.chunks_done < run.chunks_total and run.started_at >= stale_before:
                continue  # still fresh
            _run_close(run, now=now)
            run.refresh_from_db()
            closed.append(run)
    return closed


def _chunk_abandon(chunk: BillingRunChunk, *, now: datetime, stale_since: datetime) -> None:
    chunk.abandoned_at = now
    chunk.save(update_fields=["abandoned_at"])
    since = "started" if chunk.started_at else "queued"
    message = (
        f"Abandoned: chunk {chunk.number} {since} at {stale_since:%Y-%m-%d %H:%M} UTC never finished "
        f"(worker lost after {chunk.attempts} attempt(s)); the next run bills this subscription."
    )
    existing = Subscription.objects.filter(pk__in=chunk.subscription_ids).values_list("pk", flat=True)
    BillingRunError.objects.bulk_create(
        [
            BillingRunError(run_id=chunk.run_id, subscription_id=sub_id, message=message, abandoned=True)
            for sub_id in sorted(existing)
        ]
    )


@contextmanager
def _asynchronous_commit():
    """On PostgreSQL, commit this chunk's draft invoices without waiting for the WAL flush.

    One durable commit per invoice (an fsync each) is what bounds a run; a draft lost in the last
    fraction of a second before a server crash is simply written again by the next run — the unique
    constraint and the watermark make that safe. Issuing (numbers) and payments stay durable.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


@dataclass
class _Work:
    subscription: Subscription
    kind: str
    now: datetime
    period: Period | None = None
    charge_from: datetime | None = None
    debited: bool = False  # has real-time debits although post-paid now (switched inside a period)


def _preload_prices(
    biller: Biller, subscriptions: list[Subscription], pending: Iterable[SubscriptionPlanChange]
) -> None:
    """Every subscription's billing prices in a fixed number of queries (plus one per scheduled plan change)."""
    by_id = {sub.id: sub for sub in subscriptions}
    for sub_id, prices in prices_for_subscriptions(subscriptions).items():
        biller.remember_prices(sub_id, by_id[sub_id].plan_id, prices)
    for change in pending:
        sub = by_id[change.subscription_id]
        prices = plan_prices_for_customer(plan=change.to_plan, customer=sub.customer)
        biller.remember_prices(sub.id, change.to_plan_id, prices)


def _due_periods(subscription: Subscription, *, watermark: datetime | None, now: datetime) -> list[Period]:
    periods = []
    period = subscription_period_at(subscription, watermark or subscription.started_at)
    stop = subscription_end(subscription)
    while True:
        start, end = service_window(subscription, period)
        if start >= end or end > now:
            break
        periods.append(period)
        if stop is not None and end >= stop:
            break
        period = subscription_next_period(subscription, period)
    return periods


def _due_work(
    biller: Biller,
    subscriptions: list[Subscription],
    *,
    as_of: datetime,
    max_periods: int | None = None,
    outcome: ChunkOutcome | None = None,
) -> list[_Work]:
    """What a run as of ``as_of`` writes for these subscriptions: an opening invoice when one is owed
    and never written, and every recurring period ended by then and not yet invoiced (the watermark).
    ``max_periods`` keeps the oldest periods of each subscription; ``outcome`` counts the rest (deferred)."""
    subscription_ids = [sub.id for sub in subscriptions]
    watermarks = dict(
        Invoice.objects.filter(subscription_id__in=subscription_ids, kind=InvoiceKind.RECURRING)
        .values("subscription_id")
        .annotate(end=Max("period_end"))
        .values_list("subscription_id", "end")
    )
    opened = set(
        Invoice.objects.filter(subscription_id__in=subscription_ids, kind=InvoiceKind.OPENING).values_list(
            "subscription_id", flat=True
        )
    )
    upgrades = dict(
        SubscriptionPlanChange.objects.filter(subscription_id__in=subscription_ids, applied_at__isnull=False)
        .values("subscription_id")
        .annotate(last=Max("effective_at"))
        .values_list("subscription_id", "last")
    )
    work: list[_Work] = []
    for sub in subscriptions:
        sub_now = subscription_now(sub, as_of)
        if sub.id not in opened and any(is_in_advance_fee(p) or is_one_off(p) for p in biller.prices(sub)):
            work.append(_Work(sub, InvoiceKind.OPENING, sub_now))
        due = _due_periods(sub, watermark=watermarks.get(sub.id), now=sub_now)
        if max_periods is not None and len(due) > max_periods:
            if outcome is not None:
                outcome.deferred += len(due) - max_periods
                outcome.deferred_ids.append(sub.id)
            due = due[:max_periods]
        for period in due:
            change = upgrades.get(sub.id)
            charge_from = change if change is not None and period.start < change < period.end else None
            work.append(_Work(sub, InvoiceKind.RECURRING, sub_now, period, charge_from))
    return work


@dataclass(frozen=True)
class DueInvoice:
    """One invoice a billing run would write now (``billing_run_due``)."""

    subscription: Subscription
    kind: str
    period_start: datetime | None
    period_end: datetime | None


def billing_run_due(*, as_of: datetime, merchant=None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[DueInvoice]:
    """What a billing run as of ``as_of`` would invoice, without writing anything: the same candidate
    subscriptions and the same due rule as the run itself (the admin's "Run billing now" confirmation)."""
    ids = _candidate_subscription_ids(as_of=as_of, merchant=merchant)
    due: list[DueInvoice] = []
    for i in range(0, len(ids), chunk_size):
        subscriptions = list(
            Subscription.objects.filter(pk__in=ids[i : i + chunk_size])
            .select_related(*SUBSCRIPTION_RELATED)
            .order_by("pk")
        )
        biller = Biller()
        _preload_prices(biller, subscriptions, ())
        for item in _due_work(biller, subscriptions, as_of=as_of):
            window = service_window(item.subscription, item.period) if item.period is not None else (None, None)
            due.append(DueInvoice(item.subscription, item.kind, *window))
    return due


def _close_subscriptions(
    *,
    run: BillingRun,
    subscription_ids: list[str],
    as_of: datetime,
    outcome: ChunkOutcome,
    max_periods: int | None = None,
) -> None:
    subscriptions = list(Subscription.objects.filter(pk__in=subscription_ids).select_related(*SUBSCRIPTION_RELATED))
    pending = {
        change.subscription_id: change
        for change in SubscriptionPlanChange.objects.filter(
            subscription_id__in=subscription_ids, applied_at__isnull=True, canceled_at__isnull=True
        ).select_related("to_plan")
    }
    biller = Biller()
    _preload_prices(biller, subscriptions, pending.values())
    work = _due_work(biller, subscriptions, as_of=as_of, max_periods=max_periods, outcome=outcome)
    # Post-paid subscriptions that were real-time earlier in a period still settle its debits: one
    # query for the chunk finds them (real-time ones read their debits per invoice anyway).
    post_paid = [item for item in work if item.period is not None and not item.subscription.is_real_time]
    if post_paid:
        debited = subscriptions_with_debits(
            subscription_ids={item.subscription.id for item in post_paid},
            since=min(item.period.start for item in post_paid),
        )
        for item in post_paid:
            item.debited = item.subscription.id in debited
    # One grouped aggregation per (metric, window) for the whole chunk.
    wanted: dict[tuple[str, datetime, datetime], dict[str, Customer]] = defaultdict(dict)
    for item in work:
        if item.kind == InvoiceKind.RECURRING:
            for need in biller.usage_needs(item.subscription, item.period, charge_from=item.charge_from):
                wanted[need][item.subscription.customer_id] = item.subscription.customer
    if wanted:
        metrics = {
            price.billable_metric_id: price.billable_metric
            for prices in biller._prices.values()
            for price in prices
            if price.billable_metric_id
        }
        for (metric_id, start, end), customers in wanted.items():
            biller.remember_usage(
                metric_id,
                start,
                end,
                usage_source.quantities_by_customer(
                    metric=metrics[metric_id], start=start, end=end, customers=customers.values()
                ),
            )
    for item in work:
        try:
            created = _close_one(biller, item, run=run, pending=pending)
        except Exception as error:  # one bad subscription must not stop the run; it is recorded
            logger.exception("Billing %s failed", item.subscription.id)
            outcome.failed += 1
            outcome.errors.append(
                (item.subscription.id, item.period.start if item.period else None, f"{type(error).__name__}: {error}")
            )
            continue
        if created:
            outcome.created += 1
        else:
            outcome.skipped += 1


def _close_one_subscription(
    subscription: Subscription, *, now: datetime, trigger: str, max_periods: int | None = None
) -> tuple[BillingRun, int]:
    """Close the subscription's due periods (at most ``max_periods``); returns the run and the ended
    periods left over."""
    run, chunks = billing_run_create(as_of=now, trigger=trigger, now=now, subscription_ids=[subscription.pk])
    deferred = 0
    for number, chunk in enumerate(chunks):
        outcome = billing_run_process_chunk(
            run_id=run.pk,
            subscription_ids=chunk,
            as_of=now,
            clock=lambda: now,
            chunk=number,
            max_periods=max_periods,
        )
        deferred += outcome.deferred
    run.refresh_from_db()
    return run, deferred


# -- bounded catch-up ------------------------------------------------------------------------------


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


def _catch_up_enqueue(
    *, subscription_ids: list[str], as_of: datetime, pending: int, now: datetime, test_clock=None
) -> CatchUp | None:
    """Hand the ended periods a request did not invoice to a background run, queued once committed. A
    test clock's catch-up also issues the clock's drafts whose grace ended (``test_clock_catch_up``)."""
    if not subscription_ids:
        return None
    from .tasks import billing_run_enqueue, test_clock_catch_up_task  # tasks import this module

    if test_clock is None:
        run = billing_run_enqueue(as_of=as_of, trigger="catch_up", subscription_ids=subscription_ids)
        return CatchUp(pending_periods=pending, billing_run=run)
    with transaction.atomic():
        run, chunks = billing_run_create(as_of=as_of, trigger="catch_up", now=now, subscription_ids=subscription_ids)
        transaction.on_commit(lambda: test_clock_catch_up_task.delay(run.pk, chunks, as_of.isoformat(), test_clock.pk))
    return CatchUp(pending_periods=pending, billing_run=run)


def _lock_subscription(subscription: Subscription) -> None:
    current_plan = (
        Subscription.objects.select_for_update().filter(pk=subscription.pk).values_list("plan_id", flat=True).get()
    )
    if current_plan != subscription.plan_id:
        raise InvoiceError(f"{subscription.id} changed plan while being billed; the next run bills it.")


def _close_one(biller: Biller, item: _Work, *, run: BillingRun | None, pending: dict) -> bool:
    """Write one invoice in its own transaction; False when it already exists.

    The subscription row is locked first, so a concurrent worker waits here; when it goes on, the
    unique constraint refuses its duplicate, the whole invoice transaction rolls back and the
    ``IntegrityError`` becomes a skip. (The watermark keeps reruns from even trying.)
    """
    sub = item.subscription
    try:
        with transaction.atomic():
            _lock_subscription(sub)
            if item.kind == InvoiceKind.OPENING:
                composed = biller.compose_opening(sub)
                if composed is None:
                    return False
                invoice = _invoice_from_composition(composed, subscription=sub, plan=sub.plan, run=run)
                # No history row for the run's own insert: ``invoice.billing_run`` already records
                # who wrote it, and the run stays at one INSERT per invoice. Later changes are recorded.
                invoice.save_without_historical_record(force_insert=True)
                InvoiceLine.objects.bulk_create(_line_rows(invoice, composed.lines))
                invoice.merchant = sub.merchant
                invoice_issue(invoice, now=item.now)
                return True
            period = item.period
            _, end = service_window(sub, period)
            change = pending.get(sub.id)
            applies = change is not None and change.effective_at <= period.end
            composed = biller.compose_recurring(
                sub, period, charge_from=item.charge_from, next_plan=change.to_plan if applies else None
            )
            if item.debited or sub.is_real_time:
                composed = _with_prepaid(composed, subscription=sub, period=period, plan_from=item.charge_from)
            invoice = _invoice_from_composition(
                composed,
                subscription=sub,
                plan=sub.plan,
                run=run,
                grace_ends_at=end + sub.merchant.invoice_grace_period,
            )
            invoice.save_without_historical_record(force_insert=True)  # no history row: see above
            InvoiceLine.objects.bulk_create(_line_rows(invoice, composed.lines))
            if applies:
                _apply_plan_change(sub, change, invoice=invoice)
                pending.pop(sub.id, None)
            stop = subscription_end(sub)
            if stop is not None and end >= stop and sub.status != SubscriptionStatus.TERMINATED:
                sub.status = SubscriptionStatus.TERMINATED
                sub.terminated_at = sub.terminated_at or stop
                sub.save(update_fields=["status", "terminated_at", "updated_at"])
            return True
    except IntegrityError:
        if _already_invoiced(item):
            return False
        raise


def _already_invoiced(item: _Work) -> bool:
    invoices = Invoice.objects.filter(subscription=item.subscription, kind=item.kind).exclude(status=InvoiceStatus.VOID)
    if item.kind == InvoiceKind.RECURRING:
        invoices = invoices.filter(period_start=service_window(item.subscription, item.period)[0])
    return invoices.exists()


def _apply_plan_change(sub: Subscription, change: SubscriptionPlanChange, *, invoice: Invoice | None) -> None:
    sub.plan = change.to_plan
    sub.plan_changed_at = change.effective_at  # real-time debiting starts the new plan's usage here
    sub.save(update_fields=["plan", "plan_changed_at", "updated_at"])
    change.applied_at = change.effective_at
    change.invoice = invoice
    change.save(update_fields=["applied_at", "invoice"])


# -- subscription lifecycle ------------------------------------------------------------------------


def _load(subscription: Subscription) -> Subscription:
    return Subscription.objects.select_related(*SUBSCRIPTION_RELATED).get(pk=subscription.pk)


def subscription_start(
    *,
    customer: Customer,
    plan: Plan,
    started_at: datetime,
    now: datetime,
    name: str = "",
    billing_anchor: datetime | None = None,
    trial_ends_at: datetime | None = None,
    ending_at: datetime | None = None,
    test_clock=None,
    extra_fields: dict | None = None,
) -> Subscription:
    """Start ``customer`` on ``plan`` (``started_at`` may be in the past: a backdated start).

    In-advance and one-off fees are invoiced at once (an opening invoice, issued immediately); a
    backdated start also closes the periods that already ended by ``now``: the oldest
    ``METERLINE_INLINE_CATCHUP_PERIODS`` at once, the rest by a background billing run (``catch_up``),
    which the returned subscription's ``catch_up`` (a ``CatchUp``, else None) names. The start must lie
    within the bounds of ``subscription_start_check_bounds`` (``TimeBoundError``). ``extra_fields`` sets
    other subscription fields before anything is billed (``tax_exempt``, ``payment_term_days``, ``metadata``…).
    """
    if plan.merchant_id != customer.merchant_id:
        raise InvoiceError("The plan and the customer belong to different merchants.")
    subscription_start_check_bounds(
        started_at=started_at, at=test_clock.current_time if test_clock is not None else now
    )
    with transaction.atomic():
        subscription = Subscription(
            merchant_id=plan.merchant_id,
            customer=customer,
            plan=plan,
            name=name or f"{customer.name} · {plan.name}",
            status=SubscriptionStatus.ACTIVE,
            started_at=started_at,
            billing_anchor=billing_anchor,
            trial_ends_at=trial_ends_at,
            ending_at=ending_at,
            test_clock=test_clock,
            **(extra_fields or {}),
        )
        subscription.full_clean()
        subscription.save()
    subscription = _load(subscription)
    sub_now = subscription_now(subscription, now)
    catch_up = None
    if started_at <= sub_now:
        _, deferred = _close_one_subscription(
            subscription, now=now, trigger="subscription_start", max_periods=settings.METERLINE_INLINE_CATCHUP_PERIODS
        )
        if deferred:
            catch_up = _catch_up_enqueue(subscription_ids=[subscription.pk], as_of=now, pending=deferred, now=now)
    subscription = _load(subscription)
    subscription.catch_up = catch_up
    return subscription


def subscription_terminate(
    *,
    subscription: Subscription,
    now: datetime,
    at_period_end: bool = False,
    reason: str = "",
    by: str = "",
    change_reason: str | None = None,
) -> Subscription:
    """End a subscription now or at the end of its current period.

    Now: the final invoice bills the partial period (usage and in-arrears fees up to ``now``) and
    credits in-advance fees pro rata for the unused days (from the termination day; obligations are
    never credited). At period end: ``ending_at`` is set and the regular close bills the last period.
    A ``pending_payment`` subscription was never billed beyond its opening invoice: it ends now with
    nothing to close. ``change_reason`` (the API's ``changeReason``) is kept in the subscription's
    metadata as ``terminationChangeReason``, in the same transaction as the termination fields.
    """
    subscription = _load(subscription)
    sub_now = subscription_now(subscription, now)
    if subscription.status == SubscriptionStatus.TERMINATED:
        raise InvoiceError("The subscription is already terminated.")
    period = subscription_period_at(subscription, sub_now)
    fields = ["termination_reason", "terminated_by", "updated_at"]
    with transaction.atomic():
        _lock_subscription(subscription)
        subscription.termination_reason = reason
        subscription.terminated_by = by
        if change_reason:
            subscription.metadata = {**(subscription.metadata or {}), "terminationChangeReason": change_reason}
            fields.append("metadata")
        if subscription.status == SubscriptionStatus.PENDING_PAYMENT:
            subscription.status = SubscriptionStatus.TERMINATED
            subscription.terminated_at = sub_now
            subscription.save(update_fields=["status", "terminated_at", *fields])
            return _load(subscription)
        if at_period_end:
            subscription.ending_at = period.end
            subscription.save(update_fields=["ending_at", *fields])
            return subscription
        subscription.terminated_at = sub_now
        subscription.save(update_fields=["terminated_at", *fields])
    _close_one_subscription(subscription, now=now, trigger="termination")  # every period: the final close
    subscription = _load(subscription)
    if subscription.status != SubscriptionStatus.TERMINATED:
        Subscription.objects.filter(pk=subscription.pk).update(status=SubscriptionStatus.TERMINATED)
        subscription.refresh_from_db()
    return subscription


def _check_plan_change(subscription: Subscription, new_plan: Plan) -> None:
    old = subscription.plan
    if new_plan.pk == old.pk:
        raise InvoiceError("The subscription is already on this plan.")
    if new_plan.merchant_id != old.merchant_id:
        raise InvoiceError("The new plan belongs to another merchant.")
    if new_plan.currency != old.currency or new_plan.billing_cadence != old.billing_cadence:
        raise InvoiceError("A plan change keeps the currency and the billing cadence; start a new subscription.")


def subscription_upgrade(*, subscription: Subscription, new_plan: Plan, now: datetime) -> Invoice:
    """Move to ``new_plan`` now. A plan-change invoice settles the old plan's usage and in-arrears fees up
    to now, credits its unused in-advance fees and charges the new plan's for the rest of the period,
    both prorated by day. The period's recurring invoice then bills the new plan from now."""
    subscription = _load(subscription)
    _check_plan_change(subscription, new_plan)
    at = subscription_now(subscription, now)
    with transaction.atomic():
        _lock_subscription(subscription)
        SubscriptionPlanChange.objects.filter(
            subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True
        ).update(canceled_at=at)
        period = subscription_period_at(subscription, at)
        plan_from = _plan_charged_from(subscription, period, until=at)
        if subscription.is_real_time:
            # Events of the old plan are debited under this lock: the invoice below sees all of them,
            # and the next request reads the new plan (REALTIME.md, "Plan changes").
            wallet_lock(customer=subscription.customer, currency=subscription.plan.currency)
        composed = Biller().compose_plan_change(subscription, new_plan=new_plan, at=at, charge_from=plan_from)
        composed = _with_prepaid(composed, subscription=subscription, period=period, plan_from=plan_from)
        invoice = _invoice_from_composition(
            composed,
            subscription=subscription,
            plan=subscription.plan,
            grace_ends_at=at + subscription.merchant.invoice_grace_period,
        )
        _insert_invoice(invoice, composed.lines)
        change = SubscriptionPlanChange.objects.create(
            subscription=subscription,
            from_plan=subscription.plan,
            to_plan=new_plan,
            kind=PlanChangeKind.UPGRADE,
            requested_at=at,
            effective_at=at,
        )
        _apply_plan_change(subscription, change, invoice=invoice)
    return invoice


def subscription_downgrade(*, subscription: Subscription, new_plan: Plan, now: datetime) -> SubscriptionPlanChange:
    """Schedule ``new_plan`` for the end of the current period; the closing invoice of the period bills
    the old plan and the next period's in-advance fees of the new plan."""
    subscription = _load(subscription)
    _check_plan_change(subscription, new_plan)
    at = subscription_now(subscription, now)
    period = subscription_period_at(subscription, at)
    with transaction.atomic():
        _lock_subscription(subscription)
        SubscriptionPlanChange.objects.filter(
            subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True
        ).update(canceled_at=at)
        return SubscriptionPlanChange.objects.create(
            subscription=subscription,
            from_plan=subscription.plan,
            to_plan=new_plan,
            kind=PlanChangeKind.DOWNGRADE,
            requested_at=at,
            effective_at=period.end,
        )


# -- drafts, issue, payment, void ------------------------------------------------------------------


def _locked_invoice(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update().select_related("merchant", "plan").get(pk=invoice.pk)


def _refresh_lines(invoice: Invoice) -> _Prepaid | None:
    """Recompute a draft's usage lines and totals, the prepaid debits applied; returns those debits."""
    subscription = _load(invoice.subscription)
    biller = Biller()
    lines: list[LineDraft] = []
    for line in invoice.lines.select_related("price__billable_metric", "price__fee").prefetch_related(
        "price__tiers", "price__dynamic_rates"
    ):
        if line.kind == LineKind.USAGE and line.price is not None:
            lines.append(biller.refresh_usage_line(line, subscription, invoice.currency))
        else:
            lines.append(LineDraft.from_line(line))
    plan_terms = invoice.kind == InvoiceKind.RECURRING
    composed = finish_lines(
        kind=invoice.kind,
        lines=lines,
        currency=invoice.currency,
        rounding=subscription.merchant.rounding_mode,
        tax_rate=invoice.tax_rate,
        tax_behavior=invoice.tax_behavior,
        discount_percent=invoice.plan.discount_percent if plan_terms else None,
        minimum=invoice.plan.minimum_commitment if plan_terms else None,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
    )
    prepaid = _invoice_prepaid(invoice, subscription)
    if prepaid is not None:
        composed = apply_prepaid(
            composed, covered_by_credit=prepaid.debits.covered_by_credit, rounding=subscription.merchant.rounding_mode
        )
    invoice.lines.all().delete()
    InvoiceLine.objects.bulk_create(_line_rows(invoice, composed.lines))
    invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due = (
        composed.subtotal,
        composed.tax,
        composed.total,
        composed.amount_due,
    )
    invoice.save(update_fields=["subtotal", "tax", "total", "amount_due", "updated_at"])
    return prepaid


def invoice_refresh(*, invoice: Invoice, now: datetime) -> Invoice:
    """Recompute a draft's usage lines (late events of its period are included) and its totals."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; only drafts are refreshed.")
        _refresh_lines(invoice)
    return invoice


def invoice_finalize(*, invoice: Invoice, now: datetime) -> Invoice:
    """Refresh a draft with the usage known now, number it and issue it; it never changes afterwards."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; only drafts can be issued.")
        _prepaid_lock(invoice)
        prepaid = _refresh_lines(invoice)
        invoice_issue(invoice, now=now)
        if prepaid is not None:
            _prepaid_settle(invoice, prepaid, now=now)
    return invoice


def invoices_finalize_due(*, now: datetime) -> dict[str, int]:
    """Issue every draft whose grace period has ended (by its subscription's test clock when it has one)."""
    due = (
        Invoice.objects.filter(status=InvoiceStatus.DRAFT, grace_ends_at__isnull=False)
        .filter(
            Q(subscription__test_clock__isnull=True, grace_ends_at__lte=now)
            | Q(subscription__test_clock__isnull=False, grace_ends_at__lte=F("subscription__test_clock__current_time"))
        )
        .select_related("subscription__test_clock")
    )
    counts = {"issued": 0, "failed": 0}
    for invoice in due.order_by("grace_ends_at", "pk"):
        try:
            invoice_finalize(invoice=invoice, now=subscription_now(invoice.subscription, now))
            counts["issued"] += 1
        except InvoiceError:
            continue  # issued meanwhile by someone else
        except Exception:
            logger.exception("Finalizing %s failed", invoice.pk)
            counts["failed"] += 1
    return counts


def invoice_mark_paid(*, invoice: Invoice, now: datetime) -> Invoice:
    with transaction.atomic():
        invoice = _locked_invoice(invoice)
        if invoice.status != InvoiceStatus.ISSUED:
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; only issued invoices are paid.")
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
        invoice.save(update_fields=["status", "paid_at", "updated_at"])
        if invoice.kind == InvoiceKind.CREDIT_PURCHASE:
            grant_purchase_fulfil(invoice_ref=invoice.pk, now=now)  # a bought entitlement grant, if any
        if invoice.kind == InvoiceKind.OPENING:
            # Paying Invoice 0 activates a subscription that waited for it (the API's pending_payment).
            Subscription.objects.filter(pk=invoice.subscription_id, status=SubscriptionStatus.PENDING_PAYMENT).update(
                status=SubscriptionStatus.ACTIVE, updated_at=now
            )
    return invoice


def invoice_void(*, invoice: Invoice, now: datetime, reason: str = "", reissue: bool = False) -> Invoice | None:
    """Void a draft or an issued (unpaid) invoice. ``reissue`` writes a fresh draft for the same period,
    recomposed from the catalog and the usage as they are now; returns it (else None).

    Its number stays used (a voided invoice keeps its number: the sequence has no gaps)."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice)
        if invoice.status not in (InvoiceStatus.DRAFT, InvoiceStatus.ISSUED):
            raise InvoiceError(f"Invoice {invoice} is {invoice.status}; it cannot be voided.")
        if invoice.credit_notes.exists():
            raise InvoiceError("This invoice has credit notes; credit the rest instead of voiding it.")
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = now
        invoice.void_reason = reason
        invoice.save(update_fields=["status", "voided_at", "void_reason", "updated_at"])
        if not reissue:
            return None
        subscription = _load(invoice.subscription)
        lines = [LineDraft.from_line(line) for line in invoice.lines.select_related("price")]
        replacement = Invoice(
            merchant_id=invoice.merchant_id,
            customer_id=invoice.customer_id,
            subscription_id=invoice.subscription_id,
            plan=invoice.plan,
            kind=invoice.kind,
            currency=invoice.currency,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            tax_behavior=invoice.tax_behavior,
            tax_rate=tax_rate_now(subscription),
            replaces=invoice,
            grace_ends_at=None,
        )
        replacement.save(force_insert=True)
        InvoiceLine.objects.bulk_create(_line_rows(replacement, lines))
        _refresh_lines(replacement)
    return replacement


def tax_rate_now(subscription: Subscription) -> Decimal:
    from .calculation import tax_rate_for

    return tax_rate_for(subscription)


# -- credit notes ----------------------------------------------------------------------------------


def credit_note_issue(
    *, invoice: Invoice, now: datetime, reason: str = "", amounts: dict[int, Decimal] | None = None
) -> CreditNote:
    """Credit an issued or paid invoice, fully (``amounts=None``: every line's remaining amount) or partly
    (``{invoice line id: amount}``). Lines cannot be credited beyond what was billed; tax is credited at
    the invoice's rate and behaviour. The credit note gets its own gap-free number (CN-year-seq)."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice)
        if invoice.status not in (InvoiceStatus.ISSUED, InvoiceStatus.PAID):
            raise InvoiceError("Only issued or paid invoices can be credited.")
        creditable = invoice_creditable_lines(invoice=invoice)
        lines = {item.line.id: item.line for item in creditable}
        credited = {item.line.id: item.credited for item in creditable}
        if amounts is None:
            amounts = {item.line.id: item.remaining for item in creditable if item.remaining > 0}
        rows = []
        for line_id, amount in amounts.items():
            line = lines.get(line_id)
            if line is None:
                raise InvoiceError(f"Line {line_id} is not a creditable line of invoice {invoice}.")
            amount = round_money(Decimal(amount), invoice.currency)
            if amount <= 0 or amount > line.amount - credited[line_id]:
                raise InvoiceError(
                    f"Line “{line.description}” can be credited between 0 and {line.amount - credited[line_id]}."
                )
            rows.append(CreditNoteLine(invoice_line=line, description=line.description, amount=amount))
        if not rows:
            raise InvoiceError("Nothing left to credit on this invoice.")
        base = sum((row.amount for row in rows), Decimal(0))
        rounding = invoice.merchant.rounding_mode
        rate_ = invoice.tax_rate
        if invoice.tax_behavior == "inclusive":
            tax = round_money(
                CTX.divide(CTX.multiply(base, rate_), CTX.add(Decimal(100), rate_)), invoice.currency, rounding
            )
            subtotal = base - tax
        else:
            tax = round_money(CTX.divide(CTX.multiply(base, rate_), Decimal(100)), invoice.currency, rounding)
            subtotal = base
        sequence = _next_number(merchant=invoice.merchant, year=now.year, document_type=DocumentType.CREDIT_NOTE)
        note = CreditNote.objects.create(
            merchant=invoice.merchant,
            customer_id=invoice.customer_id,
            invoice=invoice,
            number=credit_note_number_format(year=now.year, sequence=sequence),
            currency=invoice.currency,
            issued_at=now,
            reason=reason,
            subtotal=subtotal,
            tax=tax,
            total=subtotal + tax,
        )
        for row in rows:
            row.credit_note = note
        CreditNoteLine.objects.bulk_create(rows)
    return note


# -- late usage ------------------------------------------------------------------------------------


def invoice_bill_late_usage(*, invoice: Invoice, now: datetime) -> Invoice | None:
    """Bill usage that arrived after ``invoice`` was issued as a separate adjustment draft (finance's
    decision, from the admin): per metered line, the engine's amount for the usage known now minus what
    was already billed. Returns None when there is nothing late."""
    from .selectors import late_usage_for_invoice

    late = late_usage_for_invoice(invoice=invoice)
    if not late:
        return None
    subscription = _load(invoice.subscription)
    lines = [
        LineDraft(
            kind=LineKind.ADJUSTMENT,
            description=f"Late usage: {item.line.description} (+{decimal_string(item.extra_quantity)})",
            amount=item.extra_amount,
            price=item.line.price,
            quantity=item.current_quantity,
            service_start=item.line.service_start,
            service_end=item.line.service_end,
            explanation={
                "text": f"billed {item.billed_quantity} for {item.billed_amount}; now {item.current_quantity}"
                f" for {item.current_amount}",
                "rating": item.explanation,
            },
        )
        for item in late
    ]
    composed = finish_lines(
        kind=InvoiceKind.ADJUSTMENT,
        lines=lines,
        currency=invoice.currency,
        rounding=subscription.merchant.rounding_mode,
        tax_rate=invoice.tax_rate,
        tax_behavior=invoice.tax_behavior,
        discount_percent=None,
        minimum=None,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
    )
    with transaction.atomic():
        adjustment = _invoice_from_composition(composed, subscription=subscription, plan=invoice.plan, adjusts=invoice)
        _insert_invoice(adjustment, composed.lines)
    return adjustment


# -- REST API: upfront payment, recorded payments, subscription changes, test clocks ---------------


class InvoicePaymentError(InvoiceError):
    """A payment that cannot be recorded; ``code`` names why (the API's business code)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class SubscriptionChangeError(InvoiceError):
    """A refused subscription change; ``field`` is the wire field to blame (None: a state conflict)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class TestClockError(InvoiceError):
    """A refused test clock change; ``conflict`` tells a state conflict (409) from bad input (400)."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, *, conflict: bool = False):
        super().__init__(message)
        self.conflict = conflict


def subscription_opening_invoice(subscription: Subscription) -> Invoice | None:
    """The subscription's live opening invoice ("Invoice 0"), if it has one."""
    return (
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.OPENING)
        .exclude(status=InvoiceStatus.VOID)
        .first()
    )


def subscription_create_with_upfront_payment(
    *,
    customer: Customer,
    plan: Plan,
    started_at: datetime,
    now: datetime,
    name: str = "",
    ending_at: datetime | None = None,
    billing_anchor: datetime | None = None,
    trial_ends_at: datetime | None = None,
    test_clock=None,
    extra_fields: dict | None = None,
) -> Subscription:
    """Start a subscription the way the Paygentic API (and the admin's add page) does: through ``subscription_start``, and when its
    opening invoice ("Invoice 0": in-advance and one-off fees) has an amount due, the subscription waits
    in ``pending_payment`` until that invoice is paid (``invoice_record_payment``). A zero-amount Invoice 0
    is marked paid at once. Without an opening invoice the subscription is active at once.

    A pending subscription is not billed by runs (they bill active and terminated ones), so its periods
    are closed, with catch-up, once it is activated."""
    subscription = subscription_start(
        customer=customer,
        plan=plan,
        started_at=started_at,
        now=now,
        name=name,
        ending_at=ending_at,
        billing_anchor=billing_anchor,
        trial_ends_at=trial_ends_at,
        test_clock=test_clock,
        extra_fields=extra_fields,
    )
    catch_up = subscription.catch_up
    opening = subscription_opening_invoice(subscription)
    if opening is None or opening.status != InvoiceStatus.ISSUED:
        return subscription
    with transaction.atomic():
        _lock_subscription(subscription)
        opening = _locked_invoice(opening)
        if opening.amount_due > 0:
            Subscription.objects.filter(pk=subscription.pk, status=SubscriptionStatus.ACTIVE).update(
                status=SubscriptionStatus.PENDING_PAYMENT, updated_at=now
            )
        else:
            opening.status = InvoiceStatus.PAID
            opening.paid_at = subscription_now(subscription, now)
            opening.save(update_fields=["status", "paid_at", "updated_at"])
    subscription = _load(subscription)
    subscription.catch_up = catch_up
    return subscription


def invoice_record_payment(*, invoice: Invoice, now: datetime) -> Invoice:
    """Record a payment received outside Meterline (bank transfer, cash): ISSUED → PAID. Paying the opening
    invoice of a ``pending_payment`` subscription activates it. Refuses a paid invoice
    (``INVOICE_ALREADY_PAID``) and drafts or void invoices (``INVOICE_NOT_LINKABLE_STATUS``)."""
    with transaction.atomic():
        invoice = _locked_invoice(invoice)
        if invoice.status == InvoiceStatus.PAID:
            raise InvoicePaymentError(f"Invoice {invoice} is already paid.", code="INVOICE_ALREADY_PAID")
        if invoice.status != InvoiceStatus.ISSUED:
            raise InvoicePaymentError(
                f"Invoice {invoice} is {invoice.status}; a payment can be recorded only on an issued invoice.",
                code="INVOICE_NOT_LINKABLE_STATUS",
            )
        subscription = (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("test_clock")
            .get(pk=invoice.subscription_id)
        )
        at = subscription_now(subscription, now)
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = at
        invoice.save(update_fields=["status", "paid_at", "updated_at"])
        if invoice.kind == InvoiceKind.CREDIT_PURCHASE:
            grant_purchase_fulfil(invoice_ref=invoice.pk, now=at)  # a bought entitlement grant, if any
        if invoice.kind == InvoiceKind.OPENING and subscription.status == SubscriptionStatus.PENDING_PAYMENT:
            subscription.status = SubscriptionStatus.ACTIVE
            subscription.save(update_fields=["status", "updated_at"])
    return invoice


SUBSCRIPTION_UPDATABLE = ("name", "auto_charge", "tax_exempt", "payment_term_days", "version_policy", "metadata")


def subscription_update(*, subscription: Subscription, changes: dict, now: datetime) -> Subscription:
    """Change a subscription's terms (``name``, ``auto_charge``, ``tax_exempt``, ``payment_term_days``,
    ``version_policy``, ``metadata``: the API sends the four in between, the admin all six) and its scheduled end (``ending_at``; None clears it). The end must lie after the
    start and not before the subscription's current time; already closed periods are never rebilled."""
    subscription = _load(subscription)
    if subscription.status == SubscriptionStatus.TERMINATED:
        raise SubscriptionChangeError("The subscription is terminated; it can no longer change.")
    at = subscription_now(subscription, now)
    with transaction.atomic():
        _lock_subscription(subscription)
        fields = []
        for name in SUBSCRIPTION_UPDATABLE:
            if name in changes:
                setattr(subscription, name, changes[name])
                fields.append(name)
        if "ending_at" in changes:
            ending_at = changes["ending_at"]
            if ending_at is not None and ending_at <= subscription.started_at:
                raise SubscriptionChangeError("The end must be after the start.", field="endingAt")
            if ending_at is not None and ending_at < at:
                raise SubscriptionChangeError(
                    "The end cannot be in the past; terminate the subscription instead.", field="endingAt"
                )
            subscription.ending_at = ending_at
            fields.append("ending_at")
        if fields:
            subscription.save(update_fields=[*fields, "updated_at"])
    return _load(subscription)


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
    ids = [pk for pk in _candidate_subscription_ids(as_of=to, merchant=clock.merchant) if pk in on_clock]
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
    catch_up = _catch_up_enqueue(subscription_ids=deferred_ids, as_of=to, pending=deferred, now=now, test_clock=clock)
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


# -- real-time billing: the period invoice settles against prepaid debits (REALTIME.md) --------------


def _plan_charged_from(subscription: Subscription, period: Period, *, until: datetime) -> datetime | None:
    """When the plan billed up to ``until`` started charging inside ``period``: the latest plan change
    applied in (period start, ``until``), else None (the whole period). One query."""
    return SubscriptionPlanChange.objects.filter(
        subscription_id=subscription.pk,
        applied_at__isnull=False,
        effective_at__gt=period.start,
        effective_at__lt=until,
    ).aggregate(last=Max("effective_at"))["last"]


@dataclass(frozen=True)
class _Prepaid:
    """The real-time debits an invoice settles: those of its plan's part of the billing period."""

    period: Period
    start: datetime  # the debits' ``period_start``: the period's, or the plan change's moment
    debits: PeriodDebits


def _plan_debits(subscription: Subscription, period: Period, *, plan_from: datetime | None) -> _Prepaid | None:
    start = plan_from or period.start
    segments = period_debits_by_segment(
        subscription_id=subscription.pk, period_start=period.start, period_end=period.end
    )
    debits = segments.get(start)
    return _Prepaid(period, start, debits) if debits is not None else None


def _with_prepaid(
    composed: ComposedInvoice, *, subscription: Subscription, period: Period, plan_from: datetime | None
) -> ComposedInvoice:
    """A recurring or plan-change invoice of a subscription with real-time debits in ``period``: the full
    usage lines, then "Paid from prepaid balance" for what the credit covered of the debits of the plan
    this invoice bills — from ``plan_from`` (an upgrade inside the period) or the period's start."""
    prepaid = _plan_debits(subscription, period, plan_from=plan_from)
    if prepaid is None:
        return composed
    return apply_prepaid(
        composed, covered_by_credit=prepaid.debits.covered_by_credit, rounding=subscription.merchant.rounding_mode
    )


def _invoice_prepaid(invoice: Invoice, subscription: Subscription) -> _Prepaid | None:
    """The debits a recurring or plan-change invoice settles, whatever the subscription's billing mode is
    now (a subscription switched to post-paid still settles what was debited). One query, two when the
    period has debits (which plan part the invoice bills)."""
    if invoice.kind not in (InvoiceKind.RECURRING, InvoiceKind.PLAN_CHANGE):
        return None
    period = subscription_period_at(subscription, invoice.period_start)
    segments = period_debits_by_segment(
        subscription_id=subscription.pk, period_start=period.start, period_end=period.end
    )
    if not segments:
        return None
    until = period.end if invoice.kind == InvoiceKind.RECURRING else invoice.period_end
    start = _plan_charged_from(subscription, period, until=until) or period.start
    debits = segments.get(start)
    return _Prepaid(period, start, debits) if debits is not None else None


def _prepaid_lock(invoice: Invoice) -> None:
    """Before a real-time subscription's recurring or plan-change invoice is refreshed and issued: lock
    the customer's wallet, so a late event of the period is either debited before (and on this
    invoice) or sees it issued."""
    if invoice.kind in (InvoiceKind.RECURRING, InvoiceKind.PLAN_CHANGE) and invoice.subscription.is_real_time:
        wallet_lock(customer=invoice.customer, currency=invoice.currency)


def _prepaid_settle(invoice: Invoice, prepaid: _Prepaid, *, now: datetime) -> None:
    """Record the settlement once per invoice: the overage of the debits it settled (usage the credit did
    not cover) is now billed by this invoice. A reissue of a voided invoice bills the overage its
    predecessor already took over, so it moves nothing."""
    debits = prepaid.debits
    if not debits.debited and not debits.overage:
        return
    invoice_settlement_record(
        customer=invoice.customer,
        currency=invoice.currency,
        invoice_ref=invoice.pk,
        now=now,
        overage_billed=Decimal(0) if invoice.replaces_id else max(debits.overage, Decimal(0)),
        description=f"Real-time usage of {prepaid.start:%Y-%m-%d} – {prepaid.period.end:%Y-%m-%d} settled with {invoice}",
    )

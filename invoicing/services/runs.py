"""Billing runs: record a run, split it into chunks, close every period ended by ``as_of`` (one
transaction per invoice), count each chunk once and close runs a lost worker left running; plus
``billing_run_due``, what a run would write. The run's writer (``close_one_subscription``,
``subscription_lock``, ``plan_change_apply``) is shared with the lifecycle services.

Kept whole because the run's writer, its chunk bookkeeping and its due rule are one statement-count-pinned
unit (tests/invoicing/test_billing_run.py), longer than the package's other modules: a change to one is read
next to the others."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from catalog.models import Customer, Subscription, SubscriptionStatus, SubscriptionVersionChange
from catalog.periods import Period
from wallets.models import WebhookEndpoint
from wallets.selectors import subscriptions_with_debits
from wallets.webhooks import webhook_endpoints_by_merchant

from .. import metrics
from .. import usage as usage_source
from ..calculation import (
    SUBSCRIPTION_RELATED,
    Biller,
    is_in_advance_fee,
    is_one_off,
    manual_lines_due,
    service_window,
    subscription_end,
    subscription_next_period,
    subscription_now,
    subscription_period_at,
    usage_window,
)
from ..models import (
    BillingRun,
    BillingRunChunk,
    BillingRunError,
    BillingRunStatus,
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceStatus,
    ManualLineItem,
    SubscriptionAdjustment,
    SubscriptionPlanChange,
    SubscriptionPriceInterval,
)
from ..pricing_adapter import plan_price_set_for_customer, price_sets_for_subscriptions
from ..thresholds import threshold_billed_lines
from ..webhook_events import invoice_created_emit, subscription_terminated_emit
from .plan_versions import VERSION_FIELDS
from .settlement import with_prepaid
from .writer import invoice_from_composition, invoice_issue, invoice_lines_insert

logger = logging.getLogger(__name__)


DEFAULT_CHUNK_SIZE = 500


@dataclass
class ChunkOutcome:
    created: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[tuple[str, datetime | None, str]] = field(default_factory=list)
    # With ``max_periods``: ended periods left unbilled, and the subscriptions they belong to.
    deferred: int = 0
    deferred_ids: list[str] = field(default_factory=list)


def candidate_subscription_ids(*, as_of: datetime, merchant=None) -> list[str]:
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
    ids = candidate_subscription_ids(as_of=as_of, merchant=merchant) if subscription_ids is None else subscription_ids
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
    for sub_id, prices in price_sets_for_subscriptions(subscriptions).items():
        biller.remember_prices(sub_id, by_id[sub_id].plan_id, prices)
    for change in pending:
        sub = by_id[change.subscription_id]
        prices = plan_price_set_for_customer(plan=change.to_plan, customer=sub.customer)
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
    ids = candidate_subscription_ids(as_of=as_of, merchant=merchant)
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
    # Whether a subscription has adjustments rides on the chunk's one subscription query; the adjustments
    # themselves cost one more query per chunk, only when one of its subscriptions has any.
    subscriptions = list(
        Subscription.objects.filter(pk__in=subscription_ids)
        .select_related(*SUBSCRIPTION_RELATED)
        .annotate(
            has_adjustments=Exists(SubscriptionAdjustment.objects.filter(subscription=OuterRef("pk"))),
            has_price_intervals=Exists(SubscriptionPriceInterval.objects.filter(subscription=OuterRef("pk"))),
        )
    )
    pending = {
        change.subscription_id: change
        for change in SubscriptionPlanChange.objects.filter(
            subscription_id__in=subscription_ids, applied_at__isnull=True, canceled_at__isnull=True
        ).select_related("to_plan")
    }
    biller = Biller()
    hooks = webhook_endpoints_by_merchant(merchant_ids={sub.merchant_id for sub in subscriptions})
    _preload_prices(biller, subscriptions, pending.values())
    adjusted = [sub.id for sub in subscriptions if sub.has_adjustments]
    biller.remember_adjustments(
        [sub.id for sub in subscriptions],
        SubscriptionAdjustment.objects.filter(subscription_id__in=adjusted) if adjusted else (),
    )
    # Subscription-only intervals likewise: one query per chunk, only when one of its subscriptions has any.
    owning = [sub.id for sub in subscriptions if sub.has_price_intervals]
    biller.remember_price_intervals(
        [sub.id for sub in subscriptions],
        SubscriptionPriceInterval.objects.filter(subscription_id__in=owning)
        .select_related("price__billable_metric")
        .order_by("start_date", "price_key")
        if owning
        else (),
    )
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
            for price in biller.cached_prices()
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
    # Dimensional prices: one query per (metric, dimension paths, window), grouped by customer and values.
    dimensional: dict[tuple, dict[str, Customer]] = defaultdict(dict)
    for item in work:
        if item.kind == InvoiceKind.RECURRING:
            for need in biller.dimensional_usage_needs(item.subscription, item.period, charge_from=item.charge_from):
                dimensional[need][item.subscription.customer_id] = item.subscription.customer
    for need, customers in dimensional.items():
        metric = next(p.billable_metric for p in biller.cached_prices() if p.billable_metric_id == need[0])
        biller.remember_dimensional_usage(
            need,
            usage_source.quantities_by_customer_and_values(
                metric=metric, start=need[2], end=need[3], customers=customers.values(), paths=need[1]
            ),
        )
    manual = _pending_manual_items(work)
    for item in work:
        try:
            created = _close_one(biller, item, run=run, pending=pending, hooks=hooks, manual=manual)
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


def _pending_manual_items(work: list[_Work]) -> dict[str, list[ManualLineItem]]:
    """The pending manual line items of the subscriptions whose periods this chunk closes (one query),
    oldest ``invoice_at`` first."""
    ids = {item.subscription.id for item in work if item.kind == InvoiceKind.RECURRING}
    if not ids:
        return {}
    found: dict[str, list[ManualLineItem]] = defaultdict(list)
    for row in ManualLineItem.objects.filter(subscription_id__in=ids, invoice__isnull=True, target_invoice=False):
        found[row.subscription_id].append(row)
    return found


def close_one_subscription(
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


def subscription_lock(subscription: Subscription) -> None:
    current_plan = (
        Subscription.objects.select_for_update().filter(pk=subscription.pk).values_list("plan_id", flat=True).get()
    )
    if current_plan != subscription.plan_id:
        raise InvoiceError(f"{subscription.id} changed plan while being billed; the next run bills it.")


def _close_one(
    biller: Biller,
    item: _Work,
    *,
    run: BillingRun | None,
    pending: dict,
    hooks: dict[str, list[WebhookEndpoint]] | None = None,
    manual: dict[str, list[ManualLineItem]] | None = None,
) -> bool:
    """Write one invoice in its own transaction; False when it already exists. ``hooks``: the chunk's
    webhook endpoints by merchant (loaded once: a merchant without endpoints costs no query here).

    The subscription row is locked first, so a concurrent worker waits here; when it goes on, the
    unique constraint refuses its duplicate, the whole invoice transaction rolls back and the
    ``IntegrityError`` becomes a skip. (The watermark keeps reruns from even trying.)

    A recurring close bills the due pending manual line items (``manual``: the chunk's, by subscription)
    and claims them in the invoice's transaction by an update conditioned on their being unclaimed: a
    concurrent claim rolls the whole invoice back (recorded as a failure; the next run bills the period).
    """
    sub = item.subscription
    endpoints = hooks.get(sub.merchant_id, []) if hooks is not None else None
    try:
        with transaction.atomic():
            subscription_lock(sub)
            if item.kind == InvoiceKind.OPENING:
                composed = biller.compose_opening(sub)
                if composed is None:
                    return False
                invoice = invoice_from_composition(composed, subscription=sub, plan=sub.plan, run=run)
                # No history row for the run's own insert: ``invoice.billing_run`` already records
                # who wrote it, and the run stays at one INSERT per invoice. Later changes are recorded.
                invoice.save_without_historical_record(force_insert=True)
                invoice_lines_insert(invoice, composed.lines)
                invoice.merchant = sub.merchant
                invoice_created_emit(invoice=invoice, now=invoice.created_at, endpoints=endpoints)
                invoice_issue(invoice, now=item.now, endpoints=endpoints)
                return True
            period = item.period
            _, end = service_window(sub, period)
            change = pending.get(sub.id)
            applies = change is not None and change.effective_at <= period.end
            waiting = manual.get(sub.id, []) if manual is not None else []
            due_manual = manual_lines_due(sub, period, waiting)
            composed = biller.compose_recurring(
                sub,
                period,
                charge_from=item.charge_from,
                next_plan=change.to_plan if applies else None,
                manual=due_manual,
                # read under the lock (one query, thresholded subscriptions only): a threshold invoice
                # committed a moment ago is deducted, and none can be written for the period after this one
                threshold_billed=threshold_billed_lines(
                    subscription=sub, period_start=usage_window(sub, period, item.charge_from)[0]
                ),
            )
            if item.debited or sub.is_real_time:
                composed = with_prepaid(composed, subscription=sub, period=period, plan_from=item.charge_from)
            invoice = invoice_from_composition(
                composed,
                subscription=sub,
                plan=sub.plan,
                run=run,
                grace_ends_at=end + sub.merchant.invoice_grace_period,
            )
            invoice.save_without_historical_record(force_insert=True)  # no history row: see above
            invoice_lines_insert(invoice, composed.lines)
            invoice_created_emit(invoice=invoice, now=invoice.created_at, endpoints=endpoints)
            if due_manual:
                claimed = ManualLineItem.objects.filter(
                    pk__in=[row.pk for row in due_manual], invoice__isnull=True
                ).update(invoice=invoice, updated_at=item.now)
                if claimed != len(due_manual):
                    raise InvoiceError(f"Manual line items of {sub.id} were claimed by another close.")
                for row in due_manual:
                    waiting.remove(row)
            if applies:
                plan_change_apply(sub, change, invoice=invoice)
                pending.pop(sub.id, None)
            stop = subscription_end(sub)
            if stop is not None and end >= stop and sub.status != SubscriptionStatus.TERMINATED:
                sub.status = SubscriptionStatus.TERMINATED
                sub.terminated_at = sub.terminated_at or stop
                sub.save(update_fields=["status", "terminated_at", "updated_at"])
                subscription_terminated_emit(subscription=sub, now=item.now, endpoints=endpoints)
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


def plan_change_apply(sub: Subscription, change: SubscriptionPlanChange, *, invoice: Invoice | None) -> None:
    sub.plan = change.to_plan
    sub.plan_changed_at = change.effective_at  # real-time debiting starts the new plan's usage here
    # Versions are the old plan's: a pinned subscription is pinned to the new plan's default, a floating one
    # follows it (its moves are dropped; a subscription never moved has none, and costs no statement).
    if sub.plan_version_from is not None:
        SubscriptionVersionChange.objects.filter(subscription=sub).delete()
    sub.plan_version_id = change.to_plan.default_version_id if sub.version_policy == "pinned" else None
    sub.plan_version_from = sub.previous_plan_version_id = sub.previous_plan_version_from = None
    sub.save(update_fields=["plan", "plan_changed_at", *VERSION_FIELDS, "updated_at"])
    change.applied_at = change.effective_at
    change.invoice = invoice
    change.save(update_fields=["applied_at", "invoice"])

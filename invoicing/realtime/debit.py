"""Real-time billing: usage debited from the prepaid balance as each event is accepted.

A subscription is real-time when its ``billing_mode`` (else its plan's) is ``real_time``. For each
accepted event of such a subscription, the cost of the usage it adds is debited in the same
transaction that stores the event:

    cost = rate(period usage after) − rate(period usage before)        (wallets.costing.incremental_cost)

so tiers, free allowances and volume discounts stay exact and a period's debits add up to its price.
The period-end invoice then bills the full usage and subtracts what prepaid credit already paid
(``calculation.apply_prepaid``), see REALTIME.md.

Order inside the one transaction (``events_ingest_and_debit``):

1. find the real-time subscriptions of the subjects named in the request (one query) and their
   metered prices (a fixed number of queries);
2. lock the wallets of those customers (sorted, so two requests never deadlock) — every later read
   of "usage before" is therefore the usage left by the previous committed debit of that customer;
3. read each period's usage before: the running counters of SUM/COUNT metrics (a dimensional price's
   {values: quantity} map too) in one query, else one grouped query per (metric, window[, paths]) —
   for a percentage or dynamic price the window's event rows (``event_values.py``);
4. ingest through ``metering.services.events_ingest`` (a savepoint);
5. read the usage after, again one grouped query per key — unless a running counter (plus the
   request's events, per combination for a dimensional price), or for event rows the request's own
   events, give it without a query;
6. per customer (a savepoint each), one ``usage_debit`` per (subscription, price, period) for the
   whole request's increment.

Events of a customer whose real-time subscription dunning blocked (an invoice unpaid after its final notice,
``Subscription.usage_blocked_since``, read with the look-up of step 1) or whose reached spend cap refuses
usage (``Customer.spend_blocked_since``: folded into the guarded insert of post-paid events, read from the
look-up's row for real-time ones, else one read of the named customers on this general path) are refused
before step 2 and never stored; the request's other events go on as above.

Under the **block** policy a debit the credit cannot cover raises ``InsufficientBalance``: that
customer's savepoint is rolled back, their events of this request are removed again (they were never
committed) and re-ingested one at a time, each with its own debit in its own savepoint, so the events
that fit are kept and the first that does not — and every later one that still does not — is
refused and not stored.

Kept whole because the six steps above are one transaction of the hot path, with statement counts pinned
by tests/realtime/test_hot_path.py; the look-up, windows, locks, link and outcome are already modules of
their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from django.db import transaction

from catalog.models import BillableMetric, Customer, Merchant, Price, Subscription
from catalog.periods import Period
from catalog.selectors import metric_filters_prefetch
from core.bulk import WriteBatch
from metering import services as metering
from metering.metrics import events_count
from metering.models import UsageEvent
from metering.selectors import usage_aggregate, usage_aggregate_by_customer, usage_aggregate_by_customer_and_values
from wallets.errors import InsufficientBalance
from wallets.models import Wallet
from wallets.services import DebitOutcome, UsageDebitRequest, usage_debit, usage_debits

from .. import metrics
from .. import usage_counters as counters
from ..calculation import service_window, subscription_now, subscription_period_at
from ..pricing_adapter import prices_for_subscriptions
from .event_values import event_rows_after, event_rows_by_customer
from .link import events_link_before_request
from .locks import wallets_lock_all
from .lookup import (
    NO_REALTIME_SUBSCRIPTION,
    realtime_hinted,
    realtime_subscriptions_of_request,
    spend_blocked_customers,
)
from .outcome import Debit, RealtimeOutcome, Refusal, SpendCapReached, UsageBlocked
from .windows import (
    PlanPart,
    UsageWindow,
    debit_amount,
    debited_prices,
    is_dimensional_key,
    is_event_values_key,
    is_quantity_key,
    period_invoiced,
    plan_segment,
    usage_key,
    usage_total,
    usage_window,
)

UsageKey = tuple  # (metric id, window start, window end[, dimension paths]): windows.usage_key
CounterKey = counters.CounterKey  # (usage key, customer id)
_GroupKey = tuple[str, str, int]  # (subscription id, price id, period index): a _DebitGroup

# -- what the debits are priced from (read before the events are stored) ---------------------------


@dataclass
class _DebitGroup:
    """One (subscription, price, period): the events of the request it prices and its usage window."""

    subscription: Subscription
    price: Price
    period: Period  # the current plan's part of the billing period: the debit's period
    window: UsageWindow
    events: list[metering.AcceptedEvent] = field(default_factory=list)

    @property
    def usage_key(self) -> UsageKey:
        return usage_key(self.price, self.window)


@dataclass
class _DebitContext:
    """What the request's debits are priced from, read before its events are stored and under its
    customers' wallet locks: the real-time subscriptions and their debited prices, the plan parts the
    request's events fall in, the locked wallets and every usage before the request."""

    subscriptions: dict[str, list[Subscription]]  # customer id → its real-time subscriptions
    prices: dict[str, list[Price]]  # subscription id → metered quantity prices
    parts: dict[str, list[PlanPart]]  # subscription id → the plan parts of the request's periods
    before: dict[UsageKey, dict[str, Decimal]]  # usage before the request, per customer id
    customers: dict[str, Customer] = field(default_factory=dict)
    metrics: dict[str, BillableMetric] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)  # metric id → counters.definition(metric)
    counted: set[CounterKey] = field(default_factory=set)  # usage kept by a counter (plain or dimensional)
    stored: dict[CounterKey, counters.CounterValue] = field(default_factory=dict)  # fresh counter values read
    present: set[CounterKey] = field(default_factory=set)  # counted keys with a row (fresh or stale)
    wallets: dict[tuple[str, str], Wallet] = field(default_factory=dict)  # (customer, currency) → locked row


class _PeriodPart(NamedTuple):
    """A billing period a request's events fall in, with the current plan's part of it and that
    part's usage window (before the lock tells whether the period is late)."""

    period: Period
    segment: Period
    window: UsageWindow


def _raw_moment(raw: dict, now: datetime) -> datetime | None:
    """The event's timestamp as metering will read it (absent → now); None when unreadable (it will be
    rejected by metering anyway)."""
    value = raw.get("timestamp")
    if value is None:
        return now
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _debit_context(*, subscriptions: list[Subscription], raw_events: Sequence, now: datetime) -> _DebitContext | None:
    """Lock the wallets of the request's real-time customers and read what their debits are priced
    from; None when no subscription has a price debited in real time."""
    # Priced from the plan version of each subscription's current period (no query unless it moved).
    current = {s.pk: subscription_period_at(s, subscription_now(s, now)) for s in subscriptions}
    all_prices = prices_for_subscriptions(subscriptions, at={pk: period.start for pk, period in current.items()})
    by_customer: dict[str, list[Subscription]] = defaultdict(list)
    prices: dict[str, list[Price]] = {}
    for subscription in subscriptions:
        metered = debited_prices(all_prices[subscription.pk])
        if metered:
            by_customer[subscription.customer_id].append(subscription)
            prices[subscription.pk] = metered
    if not by_customer:
        return None
    external_to_customer = {sub.customer.external_id: sub.customer_id for subs in by_customer.values() for sub in subs}

    # The periods the request's events fall in, per subscription (the current one, usually).
    moments: dict[str, set[datetime]] = defaultdict(set)
    for raw in raw_events:
        if not isinstance(raw, dict):
            continue
        subject, external = raw.get("subject"), raw.get("externalSubject")
        customer_id = subject if isinstance(subject, str) and subject else external_to_customer.get(external)
        if customer_id in by_customer and (moment := _raw_moment(raw, now)) is not None:
            moments[customer_id].add(moment)
    periods: dict[str, list[_PeriodPart]] = {}
    for customer_id, subs in by_customer.items():
        for subscription in subs:
            found: dict[int, Period] = {}
            last = current[subscription.pk]  # where the events usually fall: not computed again
            for moment in moments.get(customer_id, ()):
                if not last.contains(moment):
                    last = subscription_period_at(subscription, moment)
                found.setdefault(last.index, last)
            segments = ((period, plan_segment(subscription, period)) for period in found.values())
            parts = (_PeriodPart(period, segment, usage_window(subscription, segment)) for period, segment in segments)
            periods[subscription.pk] = [part for part in parts if part.window[0] < part.window[1]]

    # Everything that needs no lock is ready: the metrics' filters (one query), their fingerprints.
    metrics = {price.billable_metric_id: price.billable_metric for prices_ in prices.values() for price in prices_}
    metric_filters_prefetch(metrics.values())
    definitions = {metric_id: counters.definition(metric) for metric_id, metric in metrics.items()}

    # Lock the wallets first: every read of usage below is then serialised per customer.
    wallets = wallets_lock_all(
        {(sub.customer_id, sub.plan.currency): sub.customer for subs in by_customer.values() for sub in subs}
    )
    # Late = the period's invoice is issued; read under the lock (``invoice_finalize`` takes it too).
    plan_parts: dict[str, list[PlanPart]] = {}
    for subs in by_customer.values():
        for subscription in subs:
            sub_now = subscription_now(subscription, now)
            plan_parts[subscription.pk] = [
                PlanPart(
                    segment=part.segment,
                    window=part.window,
                    late=part.period.end <= sub_now
                    and period_invoiced(subscription, service_window(subscription, part.period)[0]),
                )
                for part in periods[subscription.pk]
            ]
    context = _DebitContext(
        subscriptions=dict(by_customer),
        prices=prices,
        parts=plan_parts,
        before={},
        customers={sub.customer_id: sub.customer for subs in by_customer.values() for sub in subs},
        metrics=metrics,
        definitions=definitions,
        wallets=wallets,
    )
    _usage_before(
        context,
        [
            (usage_key(price, part.window), subscription.customer_id)
            for subs in by_customer.values()
            for subscription in subs
            for part in plan_parts[subscription.pk]
            if not part.late
            for price in prices[subscription.pk]
        ],
    )
    return context


def _usage_before(context: _DebitContext, needs) -> None:
    """Fill ``context.before``: (metric id, window[, paths]) → {customer id: usage}. SUM/COUNT metrics
    from their counters — a dimensional price's whole {values: quantity} map too — in one query for all;
    the rest, and missing or stale counters, by one grouped aggregate per key."""
    wanted: dict[UsageKey, set[str]] = defaultdict(set)
    for key, customer_id in needs:
        wanted[key].add(customer_id)
    context.counted = {
        (key, customer_id)
        for key, customer_ids in wanted.items()
        if _is_counted_key(context, key)
        for customer_id in customer_ids
    }
    context.stored, context.present = counters.counters_read(wanted=context.counted, definitions=context.definitions)
    context.before = {key: {} for key in wanted}
    missing: dict[UsageKey, set[str]] = defaultdict(set)
    for key, customer_ids in wanted.items():
        for customer_id in customer_ids:
            if (key, customer_id) in context.stored:
                context.before[key][customer_id] = context.stored[(key, customer_id)]
            else:
                missing[key].add(customer_id)
    for key, usage in _aggregate(context, missing).items():
        context.before[key].update(usage)


def _is_counted_key(context: _DebitContext, key: UsageKey) -> bool:
    """Whether a running counter keeps this usage: a SUM/COUNT metric's quantity or dimensional map."""
    metric = context.metrics[key[0]]
    if is_quantity_key(key):
        return counters.is_counted(metric)
    return is_dimensional_key(key) and counters.is_dimensional_counted(metric, key[3])


def _aggregate(context: _DebitContext, wanted: dict[UsageKey, set[str]]):
    """(metric id, window[, paths]) → {customer id: usage} from the events, one grouped query per key (a
    dimensional key's usage is {values: quantity}, grouped by the dimension values in the same query)."""
    result = {}
    for key, customer_ids in wanted.items():
        if not customer_ids:
            continue
        customers = [context.customers[customer_id] for customer_id in sorted(customer_ids)]
        metric, start, end = context.metrics[key[0]], key[1], key[2]
        if is_dimensional_key(key):
            result[key] = usage_aggregate_by_customer_and_values(
                metric=metric, start=start, end=end, customers=customers, paths=key[3]
            )
        elif is_event_values_key(key):
            result[key] = event_rows_by_customer(metric=metric, window=(start, end), customers=customers, paths=key[4])
        else:
            result[key] = usage_aggregate_by_customer(metric=metric, start=start, end=end, customers=customers)
    return result


def _usage_after(
    context: _DebitContext,
    groups: dict[_GroupKey, _DebitGroup],
    events_by_customer: dict[str, list[metering.AcceptedEvent]],
) -> dict[UsageKey, dict[str, Decimal]]:
    """Usage after this request's events: counter + the events' values for SUM/COUNT metrics (no query),
    per combination of the dimension values for a dimensional price, else (or when a filter or a
    dimension value cannot be decided in Python) the aggregate again."""
    after: dict[UsageKey, dict[str, Decimal]] = defaultdict(dict)
    rescan: dict[UsageKey, set[str]] = defaultdict(set)
    for key, customer_id in context.counted:
        metric, window = context.metrics[key[0]], (key[1], key[2])
        if is_dimensional_key(key):
            added = counters.dimension_increments(metric, events_by_customer.get(customer_id, ()), window, key[3])
            if added is None:
                rescan[key].add(customer_id)
            else:
                after[key][customer_id] = counters.combinations_add(context.before[key][customer_id], added)
            continue
        total = context.before[key][customer_id]
        for event in events_by_customer.get(customer_id, ()):
            increment = counters.event_increment(metric, event, window)
            if increment is None:
                rescan[key].add(customer_id)
                break
            total += increment
        else:
            after[key][customer_id] = total
    for group in groups.values():
        customer_id, key = group.subscription.customer_id, group.usage_key
        if customer_id in after.get(key, ()) or (key, customer_id) in context.counted:
            continue
        if is_event_values_key(key):
            rows = event_rows_after(
                metric=context.metrics[key[0]],
                window=(key[1], key[2]),
                paths=key[4],
                before=context.before[key][customer_id],
                events=events_by_customer.get(customer_id, ()),
            )
            if rows is not None:
                after[key][customer_id] = rows
                continue
        rescan[key].add(customer_id)
    for key, usage in _aggregate(context, rescan).items():
        after[key].update(usage)
    return after


def _counters_save(
    context: _DebitContext,
    final: dict[CounterKey, counters.CounterValue],
    now: datetime,
    *,
    batch: WriteBatch | None = None,
) -> None:
    changed = {key: usage for key, usage in final.items() if context.stored.get(key) != usage}
    if changed:
        counters.counters_write(
            values=changed, definitions=context.definitions, now=now, batch=batch, present=context.present
        )


def _groups_for(
    context: _DebitContext,
    event: metering.AcceptedEvent,
    groups: dict[_GroupKey, _DebitGroup],
    outcome: RealtimeOutcome,
) -> list[_DebitGroup]:
    """The groups ``event`` adds usage to (one per real-time subscription price of its metrics)."""
    touched = []
    for subscription in context.subscriptions.get(event.customer_id, ()):
        match = next((part for part in context.parts[subscription.pk] if part.segment.contains(event.timestamp)), None)
        if match is None:
            # Outside the service window (before the start, in a trial) or a timestamp read differently
            # than planned: not debited; the period-end invoice bills whatever usage it finds.
            continue
        period, window, late = match  # a PlanPart: the debits' period is the plan's segment
        if not window[0] <= event.timestamp < window[1]:
            continue
        if late:
            outcome.late_event_ids.append(event.id)
            continue
        for price in context.prices[subscription.pk]:
            if price.billable_metric_id not in event.metric_values:
                continue
            key = (subscription.pk, price.pk, period.index)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _DebitGroup(subscription=subscription, price=price, period=period, window=window)
            group.events.append(event)
            touched.append(group)
    return touched


def _debit_request(group: _DebitGroup, *, before, after, wallet: Wallet | None) -> UsageDebitRequest:
    subscription, price = group.subscription, group.price
    amount = debit_amount(price, subscription.plan.currency, before=before, after=after)
    ids = [event.id for event in group.events]
    return UsageDebitRequest(
        wallet=wallet,
        customer=subscription.customer,
        amount=amount,
        subscription_id=subscription.pk,
        metric_id=price.billable_metric_id,
        period_start=group.period.start,
        period_end=group.period.end,
        event_ids=[f"evt_{event_id}" for event_id in ids],
        idempotency_key=f"rt:{min(ids)}:{subscription.pk}:{price.pk}",
    )


def _debit_record(group: _DebitGroup, *, before, after, result: DebitOutcome) -> Debit:
    subscription, price = group.subscription, group.price
    return Debit(
        customer_id=subscription.customer_id,
        subscription_id=subscription.pk,
        price_id=price.pk,
        metric_id=price.billable_metric_id,
        period_start=group.period.start,
        period_end=group.period.end,
        usage_before=usage_total(before),
        usage_after=usage_total(after),
        amount=result.amount,
        covered_by_credit=result.covered_by_credit,
        overage=result.overage,
        balance_after=result.balance_after,
        auto_top_up=result.auto_top_up is not None,
        event_ids=tuple(event.id for event in group.events),
    )


def _debit(group: _DebitGroup, *, before, after, now: datetime, events, wallet: Wallet | None = None) -> Debit:
    group = replace(group, events=list(events))
    request = _debit_request(group, before=before, after=after, wallet=wallet)
    result = usage_debit(
        customer=request.customer,
        currency=group.subscription.plan.currency,
        amount=request.amount,
        now=now,
        subscription_id=request.subscription_id,
        metric_id=request.metric_id,
        period_start=request.period_start,
        period_end=request.period_end,
        event_ids=request.event_ids,
        idempotency_key=request.idempotency_key,
        wallet=wallet,
    )
    return _debit_record(group, before=before, after=after, result=result)


# -- the use case ----------------------------------------------------------------------------------


def events_ingest_and_debit(*, merchant: Merchant, raw_events: Sequence, now: datetime) -> RealtimeOutcome:
    """Store usage events and debit real-time subscriptions' prepaid balances, in one transaction.

    Events of post-paid customers are simply ingested: a single event by one statement that also checks
    that its customer has no real-time subscription; a batch after one query that finds out. For real-time
    subscriptions each (subscription, price, period) touched by the request is debited once with
    ``incremental_cost(before, after)``; the debit's idempotency key is
    ``rt:<first event id>:<subscription id>:<price id>`` (two subscriptions of one plan each pay for the event).
    Duplicates are never debited (metering does not accept them again). Events of a period whose
    invoice is already issued are stored but not debited (``late_event_ids``). An event refused under
    the block policy is in ``results`` as ``rejected`` with ``refusals[index]`` and is not stored.
    Counted once committed (``meterline_events_total``, ``meterline_realtime_debits_total``).
    """
    outcome = _events_ingest_and_debit(merchant=merchant, raw_events=raw_events, now=now)
    counts = outcome.counts
    refused = len(outcome.refusals)
    events_count(
        accepted=counts[metering.ACCEPTED],
        duplicate=counts[metering.DUPLICATE],
        rejected=counts[metering.REJECTED] - refused,
        refused=refused,
    )
    if outcome.debits:
        metrics.REALTIME_DEBITS.inc(len(outcome.debits))
    return outcome


def _events_ingest_and_debit(*, merchant: Merchant, raw_events: Sequence, now: datetime) -> RealtimeOutcome:
    declined = False
    if not _named_realtime_customer_hinted(raw_events):
        # The hot path: ONE statement that resolves the customers and inserts, unless one of them has an
        # active real-time subscription (the check folded into the insert). What it does not take — a
        # real-time customer, external subjects, keys repeated in the batch, an unstored single event —
        # takes the general path below, with nothing stored.
        stored = metering.events_ingest_guarded(
            merchant=merchant, raw_events=raw_events, now=now, guard=NO_REALTIME_SUBSCRIPTION
        )
        if stored is not None:
            return RealtimeOutcome(results=list(stored.results), accepted=list(stored.accepted))
        # A single event declined is most often a real-time customer: ask for its subscriptions straight away.
        declined = len(raw_events) == 1
    subscriptions = realtime_subscriptions_of_request(merchant=merchant, raw_events=raw_events, likely=declined)
    blocked, by_external = _blocked_customers(merchant=merchant, raw_events=raw_events, subscriptions=subscriptions)
    if blocked:
        return _blocked_refused(
            merchant=merchant,
            raw_events=raw_events,
            subscriptions=subscriptions,
            blocked=blocked,
            by_external=by_external,
            now=now,
        )
    return _ingest_and_debit(merchant=merchant, raw_events=raw_events, subscriptions=subscriptions, now=now)


def _blocked_customers(
    *, merchant: Merchant, raw_events: Sequence, subscriptions: list[Subscription]
) -> tuple[dict[str, UsageBlocked | SpendCapReached], dict[str, str]]:
    """The named customers whose usage is refused, with why, and the external ids that name them: dunning's
    block and a reached spend cap, read from the look-up's rows (no query); the customers it did not read
    (post-paid ones) are asked once (``spend_blocked_customers``), and only here, on the general path."""
    blocked: dict[str, UsageBlocked | SpendCapReached] = {}
    by_external = {sub.customer.external_id: sub.customer_id for sub in subscriptions if sub.customer.external_id}
    read = {sub.customer_id for sub in subscriptions}
    for subscription in subscriptions:
        customer = subscription.customer
        if subscription.customer_id in blocked:
            continue
        if customer.is_spend_blocked:
            blocked[customer.pk] = SpendCapReached(customer.pk, customer.spend_blocked_since)
        elif subscription.is_usage_blocked:
            blocked[subscription.customer_id] = UsageBlocked(subscription.pk, subscription.usage_blocked_since)
    subjects: set[str] = set()
    externals: set[str] = set()
    for raw in raw_events:
        subject, external = (raw.get("subject"), raw.get("externalSubject")) if isinstance(raw, dict) else (None, None)
        if isinstance(subject, str) and subject:
            if subject not in read and "\x00" not in subject:
                subjects.add(subject)
        elif isinstance(external, str) and external and external not in by_external and "\x00" not in external:
            externals.add(external)
    capped = spend_blocked_customers(merchant_id=merchant.pk, subjects=subjects, externals=externals)
    for customer_id, (external_id, since) in capped.items():
        blocked[customer_id] = SpendCapReached(customer_id, since)
        if external_id:
            by_external[external_id] = customer_id
    return blocked, by_external


def _blocked_refused(
    *,
    merchant: Merchant,
    raw_events: Sequence,
    subscriptions: list[Subscription],
    blocked: dict[str, UsageBlocked | SpendCapReached],
    by_external: dict[str, str],
    now: datetime,
) -> RealtimeOutcome:
    """Some named customers' usage is refused (``_blocked_customers``: dunning's block, a reached spend cap):
    their events are refused, not stored; the others go through ``_ingest_and_debit`` as a request of their
    own, whose answer is put back at the request's positions."""
    refused: dict[int, UsageBlocked | SpendCapReached] = {}
    kept: list[int] = []  # the request's positions of the events let through, in order
    for index, raw in enumerate(raw_events):
        customer_id = None
        if isinstance(raw, dict):
            # As the look-up reads it: the subject names the customer, else the external subject.
            subject, external = raw.get("subject"), raw.get("externalSubject")
            customer_id = subject if isinstance(subject, str) and subject else by_external.get(external)
        if customer_id in blocked:
            refused[index] = blocked[customer_id]
        else:
            kept.append(index)
    open_ = [subscription for subscription in subscriptions if subscription.customer_id not in blocked]
    inner = (
        _ingest_and_debit(merchant=merchant, raw_events=[raw_events[i] for i in kept], subscriptions=open_, now=now)
        if kept
        else RealtimeOutcome(results=[], accepted=[])
    )
    results: list[metering.EventResult] = [None] * len(raw_events)  # type: ignore[list-item]  # all filled below
    for result in inner.results:
        result.index = kept[result.index]
        results[result.index] = result
    for index, refusal in refused.items():
        key = raw_events[index].get("idempotencyKey")
        results[index] = metering.EventResult(
            index=index,
            status=metering.REJECTED,
            idempotency_key=key if isinstance(key, str) and key else None,
            errors=[{"field": "subject", "message": refusal.message}],
        )
    return RealtimeOutcome(
        results=results,
        accepted=[_reindexed(event, kept[event.index]) for event in inner.accepted],
        debits=inner.debits,
        refusals={**{kept[index]: refusal for index, refusal in inner.refusals.items()}, **refused},
        late_event_ids=inner.late_event_ids,
    )


def _ingest_and_debit(
    *, merchant: Merchant, raw_events: Sequence, subscriptions: list[Subscription], now: datetime
) -> RealtimeOutcome:
    if not subscriptions:
        # No real-time subscription is named: metering's own lean path (one statement for one event).
        ingested = metering.events_ingest(merchant=merchant, raw_events=raw_events, now=now)
        return RealtimeOutcome(results=list(ingested.results), accepted=list(ingested.accepted))
    events_link_before_request(merchant=merchant, raw_events=raw_events, subscriptions=subscriptions, now=now)
    with transaction.atomic():
        context = _debit_context(subscriptions=subscriptions, raw_events=raw_events, now=now)
        # Their customers were read with the subscriptions: metering does not look them up again.
        known = {sub.customer_id: sub.customer.external_id or "" for sub in subscriptions}
        ingested = metering.events_ingest(merchant=merchant, raw_events=raw_events, now=now, known_customers=known)
        outcome = RealtimeOutcome(results=list(ingested.results), accepted=list(ingested.accepted))
        if context is None:
            return outcome

        groups: dict[_GroupKey, _DebitGroup] = {}
        events_by_customer: dict[str, list[metering.AcceptedEvent]] = defaultdict(list)
        for event in ingested.accepted:
            if event.customer_id in context.subscriptions:
                events_by_customer[event.customer_id].append(event)
                _groups_for(context, event, groups, outcome)
        after = _usage_after(context, groups, events_by_customer)
        final = {(key, customer_id): usage for key, by_id in after.items() for customer_id, usage in by_id.items()}
        final = {key: final.get(key, context.before[key[0]][key[1]]) for key in context.counted}

        _debit_and_count(
            merchant=merchant,
            raw_events=raw_events,
            context=context,
            groups=groups,
            after=after,
            final=final,
            events_by_customer=events_by_customer,
            outcome=outcome,
            now=now,
        )
    return outcome


def _named_realtime_customer_hinted(raw_events: Sequence) -> bool:
    """An event names a customer this process found real-time a moment ago: skip the guarded insert,
    which would only decline it (the hint chooses between two exact paths, so it may be stale)."""
    for raw in raw_events:
        subject = raw.get("subject") if raw.__class__ is dict else None
        if subject.__class__ is str and realtime_hinted(subject):
            return True
    return False


def _debit_and_count(
    *,
    merchant: Merchant,
    raw_events: Sequence,
    context: _DebitContext,
    groups: dict[_GroupKey, _DebitGroup],
    after: dict[UsageKey, dict[str, Decimal]],
    final: dict[CounterKey, counters.CounterValue],
    events_by_customer: dict[str, list[metering.AcceptedEvent]],
    outcome: RealtimeOutcome,
    now: datetime,
) -> None:
    """Write the request's debits and its counters (inside ``events_ingest_and_debit``'s transaction,
    under the wallet locks).

    The common debits' writes and the counters' upsert go in one ``WriteBatch``, sent once the counters
    are known (on PostgreSQL one statement). Until then nothing reads them: the other debits below are
    of other customers' wallets and subscriptions, and nothing reads the counters."""
    by_customer: dict[str, list[_DebitGroup]] = defaultdict(list)
    for group in groups.values():
        by_customer[group.subscription.customer_id].append(group)
    # Customers with one debit whose wallet is locked: written together by ``usage_debits`` (a fixed
    # number of queries whatever the number of customers); the others one debit at a time.
    single = {
        customer_id: context.wallets[(customer_id, groups_[0].subscription.plan.currency)]
        for customer_id, groups_ in by_customer.items()
        if len(groups_) == 1 and (customer_id, groups_[0].subscription.plan.currency) in context.wallets
    }
    bulk_ids = sorted(single)
    requests = [
        _debit_request(
            by_customer[customer_id][0],
            **_usage_span(context, after, by_customer[customer_id][0], customer_id),
            wallet=single[customer_id],
        )
        for customer_id in bulk_ids
    ]
    # The keys name events inserted by this very request (``rt:<event id>:<subscription id>:<price id>``): no entry can
    # carry them yet, so wallets skips the replay look-up.
    batch = WriteBatch()
    debited = usage_debits(requests=requests, now=now, new_keys=True, batch=batch) if requests else []
    bulk_results = dict(zip(bulk_ids, debited, strict=True))
    for customer_id in sorted(by_customer):
        customer_groups = by_customer[customer_id]
        try:
            if customer_id in bulk_results:
                result = bulk_results[customer_id]
                if isinstance(result, InsufficientBalance):
                    raise result
                group = customer_groups[0]
                debits = [_debit_record(group, **_usage_span(context, after, group, customer_id), result=result)]
            else:
                with transaction.atomic():
                    debits = [
                        _debit(
                            group,
                            **_usage_span(context, after, group, customer_id),
                            now=now,
                            events=group.events,
                            wallet=context.wallets.get((customer_id, group.subscription.plan.currency)),
                        )
                        for group in customer_groups
                    ]
            outcome.debits.extend(debits)
        except InsufficientBalance:
            # Earlier debits of this customer were rolled back: their in-memory wallets are stale.
            for wallet_key in [k for k in context.wallets if k[0] == customer_id]:
                del context.wallets[wallet_key]
            kept = _one_at_a_time(
                merchant=merchant,
                raw_events=raw_events,
                events=events_by_customer[customer_id],
                context=context,
                now=now,
                outcome=outcome,
            )
            for key in context.counted:
                if key[1] == customer_id:
                    final[key] = kept.get(key[0], context.before[key[0]][customer_id])
    _counters_save(context, final, now, batch=batch)
    batch.execute()  # before the late events' counters are dropped below (they may be among these)
    if outcome.late_event_ids:
        late = set(outcome.late_event_ids)
        counters.counters_forget(events=[event for event in outcome.accepted if event.id in late])


def _usage_span(context: _DebitContext, after: dict, group: _DebitGroup, customer_id: str) -> dict[str, Decimal]:
    """The customer's usage of ``group``'s metric and period before and after this request: the
    ``before=``/``after=`` of its debit."""
    return {"before": context.before[group.usage_key][customer_id], "after": after[group.usage_key][customer_id]}


def _one_at_a_time(
    *,
    merchant: Merchant,
    raw_events: Sequence,
    events: list[metering.AcceptedEvent],
    context: _DebitContext,
    now: datetime,
    outcome: RealtimeOutcome,
) -> dict[UsageKey, Decimal]:
    """The block policy refused the request's increment for one customer: keep the events that fit,
    in request order, and refuse the others (removed again: they were never committed). Returns the
    customer's usage after the kept events, per (metric id, window) they touched."""
    removed = {event.id for event in events}
    UsageEvent.objects.filter(pk__in=removed).delete()
    outcome.accepted = [event for event in outcome.accepted if event.id not in removed]
    outcome.late_event_ids = [event_id for event_id in outcome.late_event_ids if event_id not in removed]
    running = dict()  # group usage key → usage debited up to now
    for event in sorted(events, key=lambda e: e.index):
        try:
            with transaction.atomic():
                single = metering.events_ingest(merchant=merchant, raw_events=[raw_events[event.index]], now=now)
                if not single.accepted:  # not expected: the same item was accepted a moment ago
                    result = single.results[0]
                    result.index = event.index
                    outcome.results[event.index] = result
                    continue
                stored = _reindexed(single.accepted[0], event.index)
                debits, updates = [], {}
                for group in _groups_for(context, stored, {}, outcome):
                    key = group.usage_key
                    before = running.get(key, context.before[key][stored.customer_id])
                    if is_event_values_key(key):
                        usage = _event_rows_one(context, group, before, stored)
                    elif is_dimensional_key(key):
                        usage = usage_aggregate_by_customer_and_values(
                            metric=group.price.billable_metric,
                            start=group.window[0],
                            end=group.window[1],
                            customers=[group.subscription.customer],
                            paths=key[3],
                        )[group.subscription.customer_id]
                    else:
                        usage = usage_aggregate(
                            metric=group.price.billable_metric,
                            customer=group.subscription.customer,
                            start=group.window[0],
                            end=group.window[1],
                        )
                    debits.append(_debit(group, before=before, after=usage, now=now, events=[stored]))
                    updates[key] = usage
        except InsufficientBalance as refused:
            outcome.results[event.index] = metering.EventResult(
                index=event.index,
                status=metering.REJECTED,
                idempotency_key=event.idempotency_key,
                errors=[
                    {
                        "field": "subject",
                        "message": Refusal(refused.currency, refused.available, refused.required).message,
                    }
                ],
            )
            outcome.refusals[event.index] = Refusal(refused.currency, refused.available, refused.required)
            continue
        running.update(updates)
        outcome.debits.extend(debits)
        outcome.accepted.append(stored)
        outcome.results[event.index] = metering.EventResult(
            index=event.index, status=metering.ACCEPTED, id=stored.id, idempotency_key=stored.idempotency_key
        )
    outcome.accepted.sort(key=lambda e: e.index)
    return running


def _event_rows_one(context: _DebitContext, group: _DebitGroup, before, event: metering.AcceptedEvent):
    """A percentage or dynamic price's event rows after one more kept event (the block policy's path)."""
    key = group.usage_key
    metric, window = context.metrics[key[0]], (key[1], key[2])
    rows = event_rows_after(metric=metric, window=window, paths=key[4], before=before, events=[event])
    if rows is not None:
        return rows
    customer = group.subscription.customer
    return event_rows_by_customer(metric=metric, window=window, customers=[customer], paths=key[4])[customer.pk]


def _reindexed(event: metering.AcceptedEvent, index: int) -> metering.AcceptedEvent:
    return replace(event, index=index)

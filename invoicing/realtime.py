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
3. read each period's usage before, one grouped query per (metric, window);
4. ingest through ``metering.services.events_ingest`` (a savepoint);
5. read the usage after, again one grouped query per (metric, window);
6. per customer (a savepoint each), one ``usage_debit`` per (subscription, price, period) for the
   whole request's increment.

Under the **block** policy a debit the credit cannot cover raises ``InsufficientBalance``: that
customer's savepoint is rolled back, their events of this request are removed again (they were never
committed) and re-ingested one at a time, each with its own debit in its own savepoint, so the events
that fit are kept and the first that does not — and every later one that still does not — is
refused and not stored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q

from catalog.bulk import writes_combined
from catalog.db import any_of, instance_from_row, instances_select, joined_columns, planned_once_cursor, rows_select
from catalog.models import (
    BillableMetric,
    BillingMode,
    Customer,
    Merchant,
    Plan,
    Price,
    Subscription,
    SubscriptionStatus,
    TestClock,
)
from catalog.pricing import round_money
from catalog.selectors import metric_filters_prefetch
from metering import services as metering
from metering.metrics import events_count
from metering.models import UsageEvent
from metering.selectors import events_awaiting_link as usage_events_awaiting_link
from metering.selectors import usage_aggregate, usage_aggregate_by_customer
from wallets.costing import incremental_cost
from wallets.entitlements import grant_purchase_find, grant_purchase_record
from wallets.errors import InsufficientBalance
from wallets.models import Entitlement, EntryKind, GrantPurchase, LedgerEntry, Wallet
from wallets.selectors import commitment_true_ups_unbilled, debited_by_metric, period_debits_so_far
from wallets.services import (
    DebitOutcome,
    UsageDebitRequest,
    commitment_true_up_due,
    commitment_true_up_mark_billed,
    credit_top_up,
    usage_debit,
    usage_debits,
    wallet_lock,
)

from . import metrics
from . import usage as usage_source
from . import usage_counters as counters
from .calculation import LineDraft, finish_lines, service_window, subscription_period_at, tax_rate_for
from .models import Invoice, InvoiceError, InvoiceKind, InvoiceLine, InvoiceStatus, LineKind
from .periods import Period
from .pricing_adapter import price_spec_from_price, prices_for_subscriptions
from .services import _issue as issue_invoice  # numbering + issue, inside the caller's transaction

logger = logging.getLogger(__name__)

INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
ZERO = Decimal(0)
SUBSCRIPTION_RELATED = ("customer", "plan", "merchant", "test_clock")


def real_time_subscriptions() -> Q:
    """Subscriptions billed in real time: their own mode, else their plan's."""
    return Q(billing_mode=BillingMode.REAL_TIME) | Q(billing_mode="", plan__billing_mode=BillingMode.REAL_TIME)


def usage_window(subscription: Subscription, period: Period) -> tuple[datetime, datetime]:
    """The part of ``period`` whose usage the recurring invoice bills (service window, after any trial)."""
    start, end = service_window(subscription, period)
    if subscription.trial_ends_at is not None and subscription.trial_ends_at > start:
        start = min(subscription.trial_ends_at, end)
    return start, end


def plan_segment(subscription: Subscription, period: Period) -> Period:
    """The current plan's part of ``period``: from the plan change when it took effect inside the period
    (an upgrade), else the whole period. Its debits carry this start as ``period_start`` — what the
    invoice of this plan settles — and its usage (tiers, allowances) is counted from there, like the
    invoice counts it."""
    changed = subscription.plan_changed_at
    if changed is not None and period.start < changed < period.end:
        return Period(index=period.index, start=changed, end=period.end)
    return period


# -- outcome ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why an event was refused under the block policy (the 402 body's ``details``)."""

    currency: str
    available: Decimal
    required: Decimal

    @property
    def message(self) -> str:
        return (
            f"Insufficient prepaid balance: this event costs {_text(self.required)} {self.currency}, "
            f"{_text(self.available)} {self.currency} is available. Top up the balance and resend it."
        )


@dataclass(frozen=True)
class Debit:
    """One ``usage_debit`` written for a (subscription, price, period) and the events it paid for."""

    customer_id: str
    subscription_id: str
    price_id: str
    metric_id: str
    period_start: datetime
    period_end: datetime
    usage_before: Decimal
    usage_after: Decimal
    amount: Decimal
    covered_by_credit: Decimal
    overage: Decimal
    balance_after: Decimal
    auto_top_up: bool
    event_ids: tuple[int, ...]


@dataclass
class RealtimeOutcome:
    """Metering's per-item results (refused items turned into ``rejected`` with a balance error),
    the events stored, the debits written, and events not debited because their period's invoice
    was already issued (``late_event_ids``: billed as late usage by an adjustment invoice)."""

    results: list[metering.EventResult]
    accepted: list[metering.AcceptedEvent]
    debits: list[Debit] = field(default_factory=list)
    refusals: dict[int, Refusal] = field(default_factory=dict)
    late_event_ids: list[int] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {metering.ACCEPTED: 0, metering.DUPLICATE: 0, metering.REJECTED: 0}
        for result in self.results:
            counts[result.status] += 1
        return counts


def _text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("0", "-0") else text


# -- planning (before the events are stored) -------------------------------------------------------


@dataclass
class _Group:
    """One (subscription, price, period): the events of the request it prices and its usage window."""

    subscription: Subscription
    price: Price
    period: Period
    window: tuple[datetime, datetime]
    events: list[metering.AcceptedEvent] = field(default_factory=list)

    @property
    def usage_key(self) -> tuple[str, datetime, datetime]:
        return (self.price.billable_metric_id, *self.window)


@dataclass
class _Plan:
    subscriptions: dict[str, list[Subscription]]  # customer id → its real-time subscriptions
    prices: dict[str, list[Price]]  # subscription id → metered quantity prices
    # sub id → (the current plan's part of the period, its usage window, late)
    periods: dict[str, list[tuple[Period, tuple[datetime, datetime], bool]]]
    before: dict[tuple[str, datetime, datetime], dict[str, Decimal]]
    customers: dict[str, Customer] = field(default_factory=dict)
    metrics: dict[str, BillableMetric] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)  # metric id → counters.definition(metric)
    counted: set[counters.CounterKey] = field(default_factory=set)  # usage kept by a counter
    stored: dict[counters.CounterKey, Decimal] = field(default_factory=dict)  # counter values read
    wallets: dict[tuple[str, str], Wallet] = field(default_factory=dict)  # (customer, currency) → locked row


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


def _subscription_now(subscription: Subscription, now: datetime) -> datetime:
    clock = subscription.test_clock
    return clock.current_time if clock is not None else now


def _realtime_subscriptions(*, merchant: Merchant, raw_events: Sequence) -> list[Subscription]:
    """The active real-time subscriptions of the customers the request names, with their plan,
    customer, test clock and merchant: a one-column existence check, then (only when it says yes) one
    hand-written statement, or none.

    Every ingestion request asks this first and nearly all answers are "no" (post-paid customers).
    Both statements are prepared (``planned_once_cursor``); the second builds the model instances
    straight from its rows: the ORM's query (four joins) cost more Python than the whole insert. Never cached: a
    subscription switched to real time a moment ago must be debited from its next event on, in every
    process.
    """
    subjects: set[str] = set()
    externals: set[str] = set()
    for raw in raw_events:
        if not isinstance(raw, dict):
            continue
        subject, external = raw.get("subject"), raw.get("externalSubject")
        # Not yet validated: only strings can name a customer, and none holds a null character (which
        # PostgreSQL refuses in a query); metering rejects such events with a field message.
        if isinstance(subject, str) and subject:
            if "\x00" not in subject:
                subjects.add(subject)
        elif isinstance(external, str) and external and "\x00" not in external:
            externals.add(external)
    if not subjects and not externals:
        return []
    # A customer found real-time a moment ago is asked the wide statement straight away (it answers
    # "none" just as well, only slower): the hint chooses between two exact answers, so it may be stale.
    hinted = not subjects.isdisjoint(_SEEN_REAL_TIME)
    if not hinted and not _any_realtime_subscription(merchant_id=merchant.pk, subjects=subjects, externals=externals):
        return []
    found = _realtime_subscriptions_named(
        merchant_id=merchant.pk, subjects=subjects, externals=externals, merchant=merchant
    )
    real_time = {sub.customer_id for sub in found}
    _SEEN_REAL_TIME.difference_update(subjects - real_time)
    if len(_SEEN_REAL_TIME) > _SEEN_REAL_TIME_MAX:
        _SEEN_REAL_TIME.clear()
    _SEEN_REAL_TIME.update(subjects & real_time)
    return found


# Customer ids whose last request found a real-time subscription (per process, bounded).
_SEEN_REAL_TIME: set[str] = set()
_SEEN_REAL_TIME_MAX = 100_000


def _realtime_subscriptions_named(
    *, merchant_id: str, subjects: set[str], externals: set[str], merchant: Merchant | None = None
) -> list[Subscription]:
    """The active real-time subscriptions of the customers named by id or external id, ordered by
    customer then id, with plan, customer and test clock attached (and ``merchant`` when given): one
    prepared statement."""
    columns = joined_columns(_JOINED)
    named, named_params = _named_customers(merchant_id=merchant_id, subjects=subjects, externals=externals)
    params = [merchant_id, SubscriptionStatus.ACTIVE, BillingMode.REAL_TIME, BillingMode.REAL_TIME, *named_params]
    subscription, plan, customer, clock = (model._meta.db_table for model, _ in _JOINED)
    sql = (
        f"SELECT {columns.select} FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id"
        f" JOIN {customer} c ON c.id = s.customer_id LEFT JOIN {clock} t ON t.id = s.test_clock_id"
        " WHERE s.merchant_id = %s AND s.status = %s"
        " AND (s.billing_mode = %s OR (s.billing_mode = '' AND p.billing_mode = %s))"
        f" AND ({named}) ORDER BY s.customer_id, s.id"
    )
    rows = rows_select(sql, params, columns.converters, prepared=True)
    if not rows:
        return []
    alias = connection.alias
    plans: dict[str, Plan] = {}
    customers: dict[str, Customer] = {}
    found = []
    for row in rows:
        values = [row[start:end] for start, end in columns.slices]
        sub = instance_from_row(Subscription, alias, columns.names[0], values[0])
        plan_row = plans.get(values[1][0])
        if plan_row is None:
            plan_row = plans[values[1][0]] = instance_from_row(Plan, alias, columns.names[1], values[1])
        customer_row = customers.get(values[2][0])
        if customer_row is None:
            customer_row = customers[values[2][0]] = instance_from_row(Customer, alias, columns.names[2], values[2])
        test_clock = None if values[3][0] is None else instance_from_row(TestClock, alias, columns.names[3], values[3])
        cache = sub._state.fields_cache
        cache["plan"], cache["customer"], cache["test_clock"] = plan_row, customer_row, test_clock
        if merchant is not None:
            cache["merchant"] = merchant
        found.append(sub)
    return found


_JOINED = ((Subscription, "s"), (Plan, "p"), (Customer, "c"), (TestClock, "t"))


def _named_customers(*, merchant_id: str, subjects: set[str], externals: set[str]) -> tuple[str, list]:
    """``s.customer_id`` is one of the customers named by id (``subjects``) or external id: (SQL,
    params). One subject — the single-event endpoint — is a scalar parameter (no array to dump)."""
    matches, params = [], []
    if len(subjects) == 1:
        matches.append("s.customer_id = %s")
        params.extend(subjects)
    elif subjects:
        named, named_params = any_of("s.customer_id", sorted(subjects))
        matches.append(named)
        params.extend(named_params)
    if externals:
        named, named_params = any_of("x.external_id", sorted(externals))
        customers = Customer._meta.db_table
        matches.append(f"s.customer_id IN (SELECT x.id FROM {customers} x WHERE x.merchant_id = %s AND {named})")
        params.extend([merchant_id, *named_params])
    return " OR ".join(matches), params


def _any_realtime_subscription(*, merchant_id: str, subjects: set[str], externals: set[str]) -> bool:
    """Does any named customer have an active real-time subscription? ``SELECT 1 … LIMIT 1``, prepared.

    Asked before the wide statement of ``_realtime_subscriptions`` because nearly every answer is no:
    psycopg sets up a loader per result column on every execution, and the wide statement's ~80
    columns (and an array parameter) made it cost ~2.5× the event insert itself even when it returned
    no row. A single subject — the single-event endpoint — is a scalar parameter.
    """
    subscription, plan = Subscription._meta.db_table, Plan._meta.db_table
    named, named_params = _named_customers(merchant_id=merchant_id, subjects=subjects, externals=externals)
    params = [merchant_id, SubscriptionStatus.ACTIVE, BillingMode.REAL_TIME, BillingMode.REAL_TIME, *named_params]
    sql = (
        f"SELECT 1 FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id"
        " WHERE s.merchant_id = %s AND s.status = %s"
        " AND (s.billing_mode = %s OR (s.billing_mode = '' AND p.billing_mode = %s))"
        f" AND ({named}) LIMIT 1"
    )
    with planned_once_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _plan(*, subscriptions: list[Subscription], raw_events: Sequence, now: datetime) -> _Plan | None:
    all_prices = prices_for_subscriptions(subscriptions)
    by_customer: dict[str, list[Subscription]] = defaultdict(list)
    prices: dict[str, list[Price]] = {}
    for subscription in subscriptions:
        metered = [
            price
            for price in all_prices[subscription.pk]
            if price.billable_metric_id and not usage_source.needs_event_values(price)
        ]
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
    # (billing period, the current plan's part of it, its usage window)
    periods: dict[str, list[tuple[Period, Period, tuple[datetime, datetime]]]] = {}
    for customer_id, subs in by_customer.items():
        for subscription in subs:
            found: dict[int, Period] = {}
            last: Period | None = None
            for moment in moments.get(customer_id, ()):
                if last is None or not last.contains(moment):
                    last = subscription_period_at(subscription, moment)
                    found.setdefault(last.index, last)
            segments = ((period, plan_segment(subscription, period)) for period in found.values())
            windows = ((period, segment, usage_window(subscription, segment)) for period, segment in segments)
            periods[subscription.pk] = [
                (period, segment, window) for period, segment, window in windows if window[0] < window[1]
            ]

    # Everything that needs no lock is ready: the metrics' filters (one query), their fingerprints.
    metrics = {price.billable_metric_id: price.billable_metric for prices_ in prices.values() for price in prices_}
    metric_filters_prefetch(metrics.values())
    definitions = {metric_id: counters.definition(metric) for metric_id, metric in metrics.items()}

    # Lock the wallets first: every read of usage below is then serialised per customer.
    wallets = _lock_wallets(
        {(sub.customer_id, sub.plan.currency): sub.customer for subs in by_customer.values() for sub in subs}
    )
    # Late = the period's invoice is issued; read under the lock (``invoice_finalize`` takes it too).
    late_periods: dict[str, list[tuple[Period, tuple[datetime, datetime], bool]]] = {}
    for subs in by_customer.values():
        for subscription in subs:
            sub_now = _subscription_now(subscription, now)
            late_periods[subscription.pk] = [
                (
                    segment,
                    window,
                    period.end <= sub_now and _period_invoiced(subscription, service_window(subscription, period)[0]),
                )
                for period, segment, window in periods[subscription.pk]
            ]
    plan = _Plan(
        subscriptions=dict(by_customer),
        prices=prices,
        periods=late_periods,
        before={},
        customers={sub.customer_id: sub.customer for subs in by_customer.values() for sub in subs},
        metrics=metrics,
        definitions=definitions,
        wallets=wallets,
    )
    _usage_before(
        plan,
        [
            (price.billable_metric_id, window, subscription.customer_id)
            for subs in by_customer.values()
            for subscription in subs
            for period, window, late in late_periods[subscription.pk]
            if not late
            for price in prices[subscription.pk]
        ],
    )
    return plan


def _period_invoiced(subscription: Subscription, period_start: datetime) -> bool:
    """The period's recurring invoice (``period_start``: the service window's start) was issued: its
    usage lines can no longer change."""
    return Invoice.objects.filter(
        subscription=subscription,
        kind=InvoiceKind.RECURRING,
        period_start=period_start,
        status__in=(InvoiceStatus.ISSUED, InvoiceStatus.PAID),
    ).exists()


def _lock_wallets(keys: dict[tuple[str, str], Customer]) -> dict[tuple[str, str], Wallet]:
    """Lock (creating when missing) the wallets of ``keys`` in (customer, currency) order: one query for
    the existing ones (hand-written); ``wallet_lock`` creates the few missing. The locked rows are handed to
    ``usage_debit`` so it does not select them again."""
    customer_ids = sorted({customer_id for customer_id, _ in keys})
    currencies = sorted({currency for _, currency in keys})
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    of_customers, customer_params = any_of("w.customer_id", customer_ids)
    of_currencies, currency_params = any_of("w.currency", currencies)
    rows = instances_select(
        f"SELECT {{columns}} FROM {Wallet._meta.db_table} w WHERE {of_customers} AND {of_currencies}"
        f" ORDER BY w.customer_id, w.currency{lock}",
        [*customer_params, *currency_params],
        ((Wallet, "w"),),
        prepared=True,
    )
    found = {(wallet.customer_id, wallet.currency): wallet for (wallet,) in rows}
    for key in sorted(keys):
        if key not in found:
            found[key] = wallet_lock(customer=keys[key], currency=key[1])
    return found


def _usage_before(plan: _Plan, needs) -> None:
    """Fill ``plan.before``: (metric id, window) → {customer id: usage}. SUM/COUNT metrics from their
    counters (one query for all), the rest — and missing or stale counters — by one grouped aggregate
    per metric and window."""
    wanted: dict[tuple[str, datetime, datetime], set[str]] = defaultdict(set)
    for metric_id, window, customer_id in needs:
        wanted[(metric_id, *window)].add(customer_id)
    plan.counted = {
        (key, customer_id)
        for key, customer_ids in wanted.items()
        if counters.is_counted(plan.metrics[key[0]])
        for customer_id in customer_ids
    }
    plan.stored = counters.counters_read(wanted=plan.counted, definitions=plan.definitions)
    plan.before = {key: {} for key in wanted}
    missing: dict[tuple[str, datetime, datetime], set[str]] = defaultdict(set)
    for key, customer_ids in wanted.items():
        for customer_id in customer_ids:
            if (key, customer_id) in plan.stored:
                plan.before[key][customer_id] = plan.stored[(key, customer_id)]
            else:
                missing[key].add(customer_id)
    for key, usage in _aggregate(plan, missing).items():
        plan.before[key].update(usage)


def _aggregate(plan: _Plan, wanted: dict[tuple[str, datetime, datetime], set[str]]):
    """(metric id, window) → {customer id: usage} from the events, one grouped query per key."""
    return {
        key: usage_aggregate_by_customer(
            metric=plan.metrics[key[0]],
            start=key[1],
            end=key[2],
            customers=[plan.customers[customer_id] for customer_id in sorted(customer_ids)],
        )
        for key, customer_ids in wanted.items()
        if customer_ids
    }


def _usage_after(
    plan: _Plan, groups: dict[tuple, _Group], events_by_customer: dict[str, list[metering.AcceptedEvent]]
) -> dict[tuple[str, datetime, datetime], dict[str, Decimal]]:
    """Usage after this request's events: counter + the events' values for SUM/COUNT metrics (no query),
    else (or when a filter cannot be decided in Python) the aggregate again."""
    after: dict[tuple[str, datetime, datetime], dict[str, Decimal]] = defaultdict(dict)
    rescan: dict[tuple[str, datetime, datetime], set[str]] = defaultdict(set)
    for key, customer_id in plan.counted:
        metric, window = plan.metrics[key[0]], (key[1], key[2])
        total = plan.before[key][customer_id]
        for event in events_by_customer.get(customer_id, ()):
            increment = counters.event_increment(metric, event, window)
            if increment is None:
                rescan[key].add(customer_id)
                break
            total += increment
        else:
            after[key][customer_id] = total
    for group in groups.values():
        customer_id = group.subscription.customer_id
        if (group.usage_key, customer_id) not in plan.counted:
            rescan[group.usage_key].add(customer_id)
    for key, usage in _aggregate(plan, rescan).items():
        after[key].update(usage)
    return after


def _counters_save(plan: _Plan, final: dict[counters.CounterKey, Decimal], now: datetime) -> None:
    changed = {key: usage for key, usage in final.items() if plan.stored.get(key) != usage}
    if changed:
        counters.counters_write(values=changed, definitions=plan.definitions, now=now)


def _groups_for(
    plan: _Plan, event: metering.AcceptedEvent, groups: dict[tuple, _Group], outcome: RealtimeOutcome
) -> list[_Group]:
    """The groups ``event`` adds usage to (one per real-time subscription price of its metrics)."""
    touched = []
    for subscription in plan.subscriptions.get(event.customer_id, ()):
        match = next((entry for entry in plan.periods[subscription.pk] if entry[0].contains(event.timestamp)), None)
        if match is None:
            # Outside the service window (before the start, in a trial) or a timestamp read differently
            # than planned: not debited; the period-end invoice bills whatever usage it finds.
            continue
        period, window, late = match
        if not window[0] <= event.timestamp < window[1]:
            continue
        if late:
            outcome.late_event_ids.append(event.id)
            continue
        for price in plan.prices[subscription.pk]:
            if price.billable_metric_id not in event.metric_values:
                continue
            key = (subscription.pk, price.pk, period.index)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(subscription=subscription, price=price, period=period, window=window)
            group.events.append(event)
            touched.append(group)
    return touched


def _debit_request(group: _Group, *, before: Decimal, after: Decimal, wallet: Wallet | None) -> UsageDebitRequest:
    subscription, price = group.subscription, group.price
    currency = subscription.plan.currency
    amount = incremental_cost(
        spec=price_spec_from_price(price, currency=currency), usage_before=before, usage_after=after
    )
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


def _debit_record(group: _Group, *, before: Decimal, after: Decimal, result: DebitOutcome) -> Debit:
    subscription, price = group.subscription, group.price
    return Debit(
        customer_id=subscription.customer_id,
        subscription_id=subscription.pk,
        price_id=price.pk,
        metric_id=price.billable_metric_id,
        period_start=group.period.start,
        period_end=group.period.end,
        usage_before=before,
        usage_after=after,
        amount=result.amount,
        covered_by_credit=result.covered_by_credit,
        overage=result.overage,
        balance_after=result.balance_after,
        auto_top_up=result.auto_top_up is not None,
        event_ids=tuple(event.id for event in group.events),
    )


def _debit(
    group: _Group, *, before: Decimal, after: Decimal, now: datetime, events, wallet: Wallet | None = None
) -> Debit:
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

    Events of post-paid customers are simply ingested (one extra query to find out). For real-time
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
    subscriptions = _realtime_subscriptions(merchant=merchant, raw_events=raw_events)
    if not subscriptions:
        # No real-time subscription is named: metering's own lean path (one statement for one event).
        ingested = metering.events_ingest(merchant=merchant, raw_events=raw_events, now=now)
        return RealtimeOutcome(results=list(ingested.results), accepted=list(ingested.accepted))
    _link_named_customers(merchant=merchant, raw_events=raw_events, subscriptions=subscriptions, now=now)
    with transaction.atomic():
        plan = _plan(subscriptions=subscriptions, raw_events=raw_events, now=now)
        # Their customers were read with the subscriptions: metering does not look them up again.
        known = {sub.customer_id: sub.customer.external_id or "" for sub in subscriptions}
        ingested = metering.events_ingest(merchant=merchant, raw_events=raw_events, now=now, known_customers=known)
        outcome = RealtimeOutcome(results=list(ingested.results), accepted=list(ingested.accepted))
        if plan is None:
            return outcome

        groups: dict[tuple, _Group] = {}
        events_by_customer: dict[str, list[metering.AcceptedEvent]] = defaultdict(list)
        for event in ingested.accepted:
            if event.customer_id in plan.subscriptions:
                events_by_customer[event.customer_id].append(event)
                _groups_for(plan, event, groups, outcome)
        after = _usage_after(plan, groups, events_by_customer)
        final = {(key, customer_id): usage for key, by_id in after.items() for customer_id, usage in by_id.items()}
        final = {key: final.get(key, plan.before[key[0]][key[1]]) for key in plan.counted}

        # The debits' and counters' writes go to PostgreSQL as one statement (catalog.bulk.writes_combined).
        with writes_combined():
            _debit_and_count(
                merchant=merchant,
                raw_events=raw_events,
                plan=plan,
                groups=groups,
                after=after,
                final=final,
                events_by_customer=events_by_customer,
                outcome=outcome,
                now=now,
            )
    return outcome


def _debit_and_count(
    *,
    merchant: Merchant,
    raw_events: Sequence,
    plan: _Plan,
    groups: dict[tuple, _Group],
    after: dict[tuple[str, datetime, datetime], dict[str, Decimal]],
    final: dict[counters.CounterKey, Decimal],
    events_by_customer: dict[str, list[metering.AcceptedEvent]],
    outcome: RealtimeOutcome,
    now: datetime,
) -> None:
    """Write the request's debits and its counters (inside ``events_ingest_and_debit``'s transaction,
    under the wallet locks)."""
    by_customer: dict[str, list[_Group]] = defaultdict(list)
    for group in groups.values():
        by_customer[group.subscription.customer_id].append(group)
    # Customers with one debit whose wallet is locked: written together by ``usage_debits`` (a fixed
    # number of queries whatever the number of customers); the others one debit at a time.
    single = {
        customer_id: plan.wallets[(customer_id, groups_[0].subscription.plan.currency)]
        for customer_id, groups_ in by_customer.items()
        if len(groups_) == 1 and (customer_id, groups_[0].subscription.plan.currency) in plan.wallets
    }
    bulk_ids = sorted(single)
    requests = [
        _debit_request(
            by_customer[customer_id][0],
            **_usage_span(plan, after, by_customer[customer_id][0], customer_id),
            wallet=single[customer_id],
        )
        for customer_id in bulk_ids
    ]
    # The keys name events inserted by this very request (``rt:<event id>:<subscription id>:<price id>``): no entry can
    # carry them yet, so wallets skips the replay look-up.
    debited = usage_debits(requests=requests, now=now, new_keys=True) if requests else []
    bulk_results = dict(zip(bulk_ids, debited, strict=True))
    for customer_id in sorted(by_customer):
        customer_groups = by_customer[customer_id]
        try:
            if customer_id in bulk_results:
                result = bulk_results[customer_id]
                if isinstance(result, InsufficientBalance):
                    raise result
                group = customer_groups[0]
                debits = [_debit_record(group, **_usage_span(plan, after, group, customer_id), result=result)]
            else:
                with transaction.atomic():
                    debits = [
                        _debit(
                            group,
                            **_usage_span(plan, after, group, customer_id),
                            now=now,
                            events=group.events,
                            wallet=plan.wallets.get((customer_id, group.subscription.plan.currency)),
                        )
                        for group in customer_groups
                    ]
            outcome.debits.extend(debits)
        except InsufficientBalance:
            # Earlier debits of this customer were rolled back: their in-memory wallets are stale.
            for wallet_key in [k for k in plan.wallets if k[0] == customer_id]:
                del plan.wallets[wallet_key]
            kept = _one_at_a_time(
                merchant=merchant,
                raw_events=raw_events,
                events=events_by_customer[customer_id],
                plan=plan,
                now=now,
                outcome=outcome,
            )
            for key in plan.counted:
                if key[1] == customer_id:
                    final[key] = kept.get(key[0], plan.before[key[0]][customer_id])
    _counters_save(plan, final, now)
    if outcome.late_event_ids:
        late = set(outcome.late_event_ids)
        counters.counters_forget(events=[event for event in outcome.accepted if event.id in late])


def _usage_span(plan: _Plan, after: dict, group: _Group, customer_id: str) -> dict[str, Decimal]:
    """The customer's usage of ``group``'s metric and period before and after this request: the
    ``before=``/``after=`` of its debit."""
    return {"before": plan.before[group.usage_key][customer_id], "after": after[group.usage_key][customer_id]}


def _link_named_customers(
    *, merchant: Merchant, raw_events: Sequence, subscriptions: list[Subscription], now: datetime
) -> None:
    """Before a request that names real-time customers by ``externalSubject``: link (and debit) their
    events stored before they existed — metering would link them inside the request without a debit.
    One query on the partial index of unlinked events; the link has its own transaction, taken before
    the request's wallet locks (two lock rounds in one transaction could deadlock)."""
    named = {sub.customer.external_id for sub in subscriptions if sub.customer.external_id}
    if not named:
        return
    externals = {
        raw.get("externalSubject")
        for raw in raw_events
        if isinstance(raw, dict)
        and not raw.get("subject")
        and isinstance(raw.get("externalSubject"), str)
        and raw["externalSubject"] in named
    }
    if externals:
        events_link_and_debit(merchant=merchant, external_subjects=externals, now=now)


def _one_at_a_time(
    *,
    merchant: Merchant,
    raw_events: Sequence,
    events: list[metering.AcceptedEvent],
    plan: _Plan,
    now: datetime,
    outcome: RealtimeOutcome,
) -> dict[tuple[str, datetime, datetime], Decimal]:
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
                for group in _groups_for(plan, stored, {}, outcome):
                    key = group.usage_key
                    before = running.get(key, plan.before[key][stored.customer_id])
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


def _reindexed(event: metering.AcceptedEvent, index: int) -> metering.AcceptedEvent:
    return replace(event, index=index)


# -- events linked to their customer later ---------------------------------------------------------


@dataclass(frozen=True)
class LinkOutcome:
    """``events_link_and_debit``: how many events were linked and the catch-up debits written."""

    linked: int
    debits: list[Debit] = field(default_factory=list)


def events_link_and_debit(
    *, now: datetime, merchant: Merchant | None = None, external_subjects: Collection[str] | None = None
) -> LinkOutcome:
    """Link events stored before their customer existed (``metering.services.events_link_external_subjects``)
    and, in the same transaction, debit the usage they add to an active real-time subscription.

    Their usage was never debited: the running debits of a plan part started on top of it. So, per
    (subscription, plan part of a period) a linked event falls in, the catch-up debit brings that part's
    debits to the price of its usage now, per metric::

        Σ over the metric's prices of [rate(usage) − rate(0)]  −  already debited for the metric

    which is exact whatever the order in which events, debits and the link happened (the debits telescope
    to the same sum as if the events had been debited on arrival), and zero when nothing is missing (a
    replay, or a concurrent link that won). The usage delivered cannot be refused: under the block
    policy too, what the credit does not cover is overage. Usage outside the usage window (before the
    start, in a trial), of an old plan's part (before an upgrade), of a period whose invoice is issued
    (late usage), and percentage/dynamic prices are not debited: the invoices bill them as usual.
    The running counters of the windows caught up are rewritten from the same aggregate.
    """
    with transaction.atomic():
        awaiting = usage_events_awaiting_link(merchant=merchant, external_subjects=external_subjects)
        if not awaiting:
            return LinkOutcome(linked=0)
        by_customer: dict[str, list] = defaultdict(list)
        for event in awaiting:
            by_customer[event.customer_id].append(event)
        subscriptions = list(
            Subscription.objects.filter(customer_id__in=list(by_customer), status=SubscriptionStatus.ACTIVE)
            .filter(real_time_subscriptions())
            .select_related(*SUBSCRIPTION_RELATED)
            .order_by("customer_id", "id")
        )
        wallets = (
            _lock_wallets({(sub.customer_id, sub.plan.currency): sub.customer for sub in subscriptions})
            if subscriptions
            else {}
        )
        linked = metering.events_link_external_subjects(merchant=merchant, external_subjects=external_subjects)
        debits = _catch_up(subscriptions, by_customer, wallets, now=now) if subscriptions else []
    return LinkOutcome(linked=linked, debits=debits)


def _catch_up(subscriptions: list[Subscription], events_by_customer: dict[str, list], wallets, *, now) -> list[Debit]:
    all_prices = prices_for_subscriptions(subscriptions)
    debits: list[Debit] = []
    counted: dict[counters.CounterKey, Decimal] = {}
    definitions: dict[str, str] = {}
    for subscription in subscriptions:
        prices = [
            price
            for price in all_prices[subscription.pk]
            if price.billable_metric_id and not usage_source.needs_event_values(price)
        ]
        if not prices:
            continue
        events = events_by_customer[subscription.customer_id]
        sub_now = _subscription_now(subscription, now)
        periods: dict[int, Period] = {}
        for event in events:
            period = subscription_period_at(subscription, event.timestamp)
            periods.setdefault(period.index, period)
        for period in periods.values():
            segment = plan_segment(subscription, period)
            window = usage_window(subscription, segment)
            ids = [event.id for event in events if window[0] <= event.timestamp < window[1]]
            if not ids:
                continue
            if period.end <= sub_now and _period_invoiced(subscription, service_window(subscription, period)[0]):
                continue  # late usage: finance bills it with an adjustment invoice
            done = debited_by_metric(
                subscription_id=subscription.pk, period_start=segment.start, period_end=segment.end
            )
            by_metric: dict[str, list[Price]] = defaultdict(list)
            for price in prices:
                by_metric[price.billable_metric_id].append(price)
            for metric_id, metric_prices in by_metric.items():
                metric = metric_prices[0].billable_metric
                usage = usage_aggregate(metric=metric, customer=subscription.customer, start=window[0], end=window[1])
                if counters.is_counted(metric):
                    definitions[metric_id] = counters.definition(metric)
                    counted[((metric_id, *window), subscription.customer_id)] = usage
                currency = subscription.plan.currency
                price_of_usage = sum(
                    (
                        incremental_cost(
                            spec=price_spec_from_price(price, currency=currency), usage_before=ZERO, usage_after=usage
                        )
                        for price in metric_prices
                    ),
                    ZERO,
                )
                amount = price_of_usage - done.get(metric_id, ZERO)
                if not amount:
                    continue
                result = usage_debit(
                    customer=subscription.customer,
                    currency=currency,
                    amount=amount,
                    now=now,
                    subscription_id=subscription.pk,
                    metric_id=metric_id,
                    period_start=segment.start,
                    period_end=segment.end,
                    event_ids=[f"evt_{event_id}" for event_id in ids],
                    idempotency_key=f"rt-link:{min(ids)}:{subscription.pk}:{metric_id}",
                    wallet=wallets.get((subscription.customer_id, currency)),
                    delivered=True,
                )
                debits.append(
                    Debit(
                        customer_id=subscription.customer_id,
                        subscription_id=subscription.pk,
                        price_id=metric_prices[0].pk,
                        metric_id=metric_id,
                        period_start=segment.start,
                        period_end=segment.end,
                        usage_before=usage,  # a catch-up adds no usage: it prices what is there
                        usage_after=usage,
                        amount=result.amount,
                        covered_by_credit=result.covered_by_credit,
                        overage=result.overage,
                        balance_after=result.balance_after,
                        auto_top_up=result.auto_top_up is not None,
                        event_ids=tuple(ids),
                    )
                )
    if counted:
        counters.counters_write(values=counted, definitions=definitions, now=now)
    return debits


# -- reads -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodUsageCost:
    """A real-time subscription's current period: the usage cost debited so far (exact as of the last
    accepted event), how much prepaid credit covered and what is left for the invoice (overage)."""

    subscription_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    debited: Decimal
    covered_by_credit: Decimal
    overage: Decimal


def customer_usage_cost(*, customer: Customer, now: datetime, currency: str | None = None) -> list[PeriodUsageCost]:
    """The current period's usage cost of each of the customer's active real-time subscriptions, from
    the running debit totals (the debits are the running price): one query for the subscriptions and
    one for their totals, whatever the number of events, debits or subscriptions."""
    # The hot path's prepared statement (no ORM query building: this read must answer in < 10 ms).
    subscriptions = sorted(
        (
            subscription
            for subscription in _realtime_subscriptions_named(
                merchant_id=customer.merchant_id, subjects={customer.pk}, externals=set()
            )
            if not currency or subscription.plan.currency == currency
        ),
        key=lambda subscription: (subscription.started_at, subscription.pk),
    )
    periods = [subscription_period_at(sub, _subscription_now(sub, now)) for sub in subscriptions]
    # Every plan's part of each period (an upgrade splits it): what was debited, from the running
    # totals (one query for all the subscriptions, whatever the number of debits).
    so_far = period_debits_so_far(
        periods=[(sub.pk, period.start, period.end) for sub, period in zip(subscriptions, periods, strict=True)]
    )
    costs = []
    for subscription, period in zip(subscriptions, periods, strict=True):
        debits = so_far[subscription.pk]
        costs.append(
            PeriodUsageCost(
                subscription_id=subscription.pk,
                currency=subscription.plan.currency,
                period_start=period.start,
                period_end=period.end,
                debited=debits.debited,
                covered_by_credit=debits.debited - debits.overage,
                overage=debits.overage,
            )
        )
    return costs


# -- paid top-ups and commitment shortfalls --------------------------------------------------------


def _billing_subscription(*, customer: Customer, currency: str, subscription: Subscription | None) -> Subscription:
    """The subscription a one-off invoice is filed under (an invoice always belongs to one): the given
    one, else the customer's latest active subscription in ``currency`` (real-time ones first)."""
    if subscription is not None:
        return subscription
    candidates = (
        Subscription.objects.filter(customer=customer, plan__currency=currency)
        .select_related(*SUBSCRIPTION_RELATED)
        .order_by("-started_at", "-id")
    )
    found = sorted(
        candidates, key=lambda s: (s.status != SubscriptionStatus.ACTIVE, not s.is_real_time)
    )  # stable: latest first within each class
    if not found:
        raise InvoiceError(f"{customer.pk} has no subscription in {currency} to invoice this under.")
    return found[0]


def _one_off_invoice(*, subscription: Subscription, kind: str, line: LineDraft, now: datetime, taxed: bool) -> Invoice:
    plan = subscription.plan
    composed = finish_lines(
        kind=kind,
        lines=[line],
        currency=plan.currency,
        rounding=subscription.merchant.rounding_mode,
        tax_rate=tax_rate_for(subscription) if taxed else Decimal(0),
        tax_behavior=plan.tax_behavior,
        discount_percent=None,
        minimum=None,
        period_start=now,
        period_end=now,
    )
    invoice = Invoice(
        merchant_id=subscription.merchant_id,
        customer_id=subscription.customer_id,
        subscription=subscription,
        plan=plan,
        kind=kind,
        currency=composed.currency,
        period_start=now,
        period_end=now,
        tax_behavior=composed.tax_behavior,
        tax_rate=composed.tax_rate,
        subtotal=composed.subtotal,
        tax=composed.tax,
        total=composed.total,
        amount_due=composed.amount_due,
    )
    invoice.save(force_insert=True)
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=position,
                kind=draft.kind,
                description=draft.description[:500],
                quantity=draft.quantity,
                unit_price=draft.unit_price,
                amount=draft.amount,
                service_start=draft.service_start,
                service_end=draft.service_end,
                explanation=draft.explanation,
            )
            for position, draft in enumerate(composed.lines, start=1)
        ]
    )
    invoice.merchant = subscription.merchant
    issue_invoice(invoice, now=now)
    return invoice


@dataclass(frozen=True)
class CreditPurchase:
    invoice: Invoice
    entry_id: str
    replayed: bool


def credit_purchase(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    price_paid: Decimal,
    idempotency_key: str,
    now: datetime,
    subscription: Subscription | None = None,
    expires_at: datetime | None = None,
) -> CreditPurchase:
    """Sell ``amount`` of prepaid credit for ``price_paid``: an issued one-off invoice (kind
    ``credit_purchase``, one line, untaxed — a prepayment; the usage it pays for is taxed on the period
    invoice) and the top-up that references it, in one transaction. A replay of ``idempotency_key``
    returns the first purchase without a second invoice."""
    with transaction.atomic():
        wallet_lock(customer=customer, currency=currency)  # serialises replays of the same purchase
        key = f"purchase:{idempotency_key}"
        existing = LedgerEntry.objects.filter(
            wallet__customer=customer, wallet__currency=currency, kind=EntryKind.TOP_UP, idempotency_key=key
        ).first()
        if existing is not None:
            return CreditPurchase(Invoice.objects.get(pk=existing.reference), existing.pk, True)
        subscription = _billing_subscription(customer=customer, currency=currency, subscription=subscription)
        rounding = subscription.merchant.rounding_mode
        line = LineDraft(
            kind=LineKind.FEE,
            description=f"Prepaid credit: {_text(Decimal(amount))} {currency}",
            amount=round_money(Decimal(price_paid), currency, rounding),
            quantity=Decimal(1),
            unit_price=Decimal(price_paid),
            service_start=now,
            service_end=now,
            explanation={"text": f"{_text(Decimal(amount))} {currency} of prepaid credit for {price_paid}"},
        )
        invoice = _one_off_invoice(
            subscription=subscription, kind=InvoiceKind.CREDIT_PURCHASE, line=line, now=now, taxed=False
        )
        result = credit_top_up(
            customer=customer,
            currency=currency,
            amount=amount,
            idempotency_key=key,
            now=now,
            purchase_invoice_ref=invoice.pk,
            expires_at=expires_at,
            description=f"Prepaid credit bought on {invoice}",
        )
    return CreditPurchase(invoice, result.entry.pk, False)


@dataclass(frozen=True)
class GrantPurchaseResult:
    purchase: GrantPurchase
    invoice: Invoice
    replayed: bool


class GrantPurchaseConflict(InvoiceError):
    """A grant purchase refused by the current state (no subscription to bill under, a reused key)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


def grant_purchase_create(
    *,
    entitlement: Entitlement,
    amount: Decimal,
    price: Decimal,
    idempotency_key: str,
    now: datetime,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    payment_expires_at: datetime | None = None,
    reset_max_rollover: Decimal | None = None,
    reset_min_rollover: Decimal | None = None,
) -> GrantPurchaseResult:
    """Sell ``amount`` credits of a metered entitlement for ``price``: an issued one-off invoice (kind
    ``credit_purchase``: prepaid, deferred revenue; taxed like the plan it is filed under) and a pending
    ``GrantPurchase``. The grant is created when the invoice is paid (``invoice_mark_paid`` /
    ``invoice_record_payment`` call ``wallets.entitlements.grant_purchase_fulfil``). A replay of
    ``idempotency_key`` on the entitlement returns the first purchase and its invoice."""
    with transaction.atomic():
        Entitlement.objects.select_for_update().filter(pk=entitlement.pk).first()  # serialises replays
        existing = grant_purchase_find(entitlement=entitlement, idempotency_key=idempotency_key)
        if existing is not None:
            if existing.amount != amount or existing.price != price:
                raise GrantPurchaseConflict(
                    "This idempotency key was used for a purchase of another amount or price.",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            return GrantPurchaseResult(existing, Invoice.objects.get(pk=existing.invoice_ref), True)
        customer = entitlement.customer
        try:
            subscription = _billing_subscription(
                customer=customer, currency=customer.currency, subscription=entitlement.subscription
            )
        except InvoiceError as exc:
            raise GrantPurchaseConflict(str(exc), code="NO_BILLING_SUBSCRIPTION") from None
        currency = subscription.plan.currency
        feature = entitlement.feature
        line = LineDraft(
            kind=LineKind.FEE,
            description=f"Credits for {feature.name}: {_text(amount)} ({entitlement.pk})",
            amount=round_money(price, currency, subscription.merchant.rounding_mode),
            quantity=Decimal(1),
            unit_price=price,
            service_start=now,
            service_end=now,
            explanation={"text": f"{_text(amount)} {feature.key} credits for {_text(price)} {currency}"},
        )
        invoice = _one_off_invoice(
            subscription=subscription, kind=InvoiceKind.CREDIT_PURCHASE, line=line, now=now, taxed=True
        )
        purchase = grant_purchase_record(
            entitlement=entitlement,
            idempotency_key=idempotency_key,
            invoice_ref=invoice.pk,
            amount=amount,
            price=price,
            currency=currency,
            effective_at=effective_at,
            expires_at=expires_at,
            payment_expires_at=payment_expires_at,
            reset_max_rollover=reset_max_rollover,
            reset_min_rollover=reset_min_rollover,
        )
    return GrantPurchaseResult(purchase, invoice, False)


def commitment_true_ups_bill(*, now: datetime) -> list[Invoice]:
    """Beat: true up the commitments whose term ended (``wallets.services.commitment_true_up_due``) and
    bill every unbilled shortfall on an issued adjustment invoice, once per commitment (marked billed
    in the invoice's transaction; a concurrent biller loses the mark and rolls its invoice back)."""
    commitment_true_up_due(now=now)
    invoices = []
    for commitment in commitment_true_ups_unbilled().select_related("customer"):
        try:
            with transaction.atomic():
                subscription = _billing_subscription(
                    customer=commitment.customer, currency=commitment.currency, subscription=None
                )
                line = LineDraft(
                    kind=LineKind.COMMITMENT,
                    description=(
                        f"Commitment shortfall {commitment.term_start:%Y-%m-%d} – {commitment.term_end:%Y-%m-%d}: "
                        f"committed {_text(commitment.amount)}, used {_text(commitment.drawn_amount)}"
                    ),
                    amount=round_money(commitment.shortfall, commitment.currency, subscription.merchant.rounding_mode),
                    service_start=commitment.term_start,
                    service_end=commitment.term_end,
                    explanation={"text": f"{commitment.amount} − {commitment.drawn_amount} = {commitment.shortfall}"},
                )
                invoice = _one_off_invoice(
                    subscription=subscription, kind=InvoiceKind.ADJUSTMENT, line=line, now=now, taxed=True
                )
                if not commitment_true_up_mark_billed(commitment=commitment, invoice_ref=invoice.pk):
                    raise _AlreadyBilled
        except _AlreadyBilled:
            continue
        except InvoiceError:
            logger.warning("Commitment %s has no subscription to bill its shortfall under", commitment.pk)
            continue
        invoices.append(invoice)
    return invoices


class _AlreadyBilled(Exception):
    pass

"""The hot path's hand-written look-up of the real-time subscriptions a request names (with its per-process
hint cache). What "real-time" means is ``catalog.models.SUBSCRIPTION_REAL_TIME_SQL``, beside the ORM's
``Subscription.objects.real_time()``."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Q

from catalog.models import (
    SUBSCRIPTION_REAL_TIME_PARAMS,
    SUBSCRIPTION_REAL_TIME_SQL,
    Customer,
    Merchant,
    Plan,
    Subscription,
    SubscriptionStatus,
    TestClock,
)
from core.db import any_of, instance_from_row, joined_columns, planned_once_cursor, rows_select
from metering.services import CustomerGuard

# Customer ids whose last request found a real-time subscription (per process, bounded). Only a hint:
# it chooses between two exact statements, so a stale entry costs time, never a wrong answer.
SEEN_REAL_TIME: set[str] = set()
SEEN_REAL_TIME_MAX = 100_000


def _no_realtime_subscription_guard() -> CustomerGuard:
    subscription, plan = Subscription._meta.db_table, Plan._meta.db_table
    return CustomerGuard(
        sql=(
            "c.spend_blocked_since IS NULL AND "
            f"NOT EXISTS (SELECT 1 FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id"
            " WHERE s.customer_id = c.id AND s.merchant_id = c.merchant_id AND s.status = %s"
            f" AND {SUBSCRIPTION_REAL_TIME_SQL})"
        ),
        params=(SubscriptionStatus.ACTIVE, *SUBSCRIPTION_REAL_TIME_PARAMS),
    )


# The customer (``c``) has no active real-time subscription and no reached spend cap refusing its usage: the
# question of ``_any_realtime_subscription`` and the cap's flag folded into metering's one-statement insert,
# so a post-paid event costs one statement, a cap included.
NO_REALTIME_SUBSCRIPTION = _no_realtime_subscription_guard()


def spend_blocked_customers(
    *, merchant_id: str, subjects: set[str], externals: set[str]
) -> dict[str, tuple[str | None, object]]:
    """The named customers whose reached spend cap refuses their usage: id → (external id, blocked since).
    One indexed read of the customer rows (by primary key, or the merchant's external-id constraint), asked
    only by the general path, for customers the real-time look-up did not already read."""
    if not subjects and not externals:
        return {}
    named = Q(pk__in=subjects) | Q(external_id__in=externals) if externals else Q(pk__in=subjects)
    rows = Customer.objects.filter(named, merchant_id=merchant_id, spend_blocked_since__isnull=False).values_list(
        "pk", "external_id", "spend_blocked_since"
    )
    return {pk: (external_id, since) for pk, external_id, since in rows}


def realtime_hinted(subject: str) -> bool:
    """Was this customer found real-time by a recent request of this process? (A hint only: see
    ``SEEN_REAL_TIME``.)"""
    return subject in SEEN_REAL_TIME


def realtime_subscriptions_of_request(
    *, merchant: Merchant, raw_events: Sequence, likely: bool = False
) -> list[Subscription]:
    """The active real-time subscriptions of the customers the request names, with their plan,
    customer, test clock and merchant: a one-column existence check, then (only when it says yes) one
    hand-written statement, or none.

    Every ingestion request asks this first and nearly all answers are "no" (post-paid customers).
    Both statements are prepared (``planned_once_cursor``); the second builds the model instances
    straight from its rows: the ORM's query (four joins) cost more Python than the whole insert. Never cached: a
    subscription switched to real time a moment ago must be debited from its next event on, in every
    process. ``likely``: the caller has reason to expect a real-time customer (the guarded one-statement
    insert of a single event declined it): the existence check is skipped.
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
    hinted = likely or not subjects.isdisjoint(SEEN_REAL_TIME)
    if not hinted and not _any_realtime_subscription(merchant_id=merchant.pk, subjects=subjects, externals=externals):
        return []
    found = realtime_subscriptions_named(
        merchant_id=merchant.pk, subjects=subjects, externals=externals, merchant=merchant
    )
    real_time = {sub.customer_id for sub in found}
    SEEN_REAL_TIME.difference_update(subjects - real_time)
    if len(SEEN_REAL_TIME) > SEEN_REAL_TIME_MAX:
        SEEN_REAL_TIME.clear()
    SEEN_REAL_TIME.update(subjects & real_time)
    return found


def realtime_subscriptions_named(
    *, merchant_id: str, subjects: set[str], externals: set[str], merchant: Merchant | None = None
) -> list[Subscription]:
    """The active real-time subscriptions of the customers named by id or external id, ordered by
    customer then id, with plan, customer and test clock attached (and ``merchant`` when given): one
    prepared statement."""
    columns = joined_columns(_JOINED)
    named, named_params = _named_customers(merchant_id=merchant_id, subjects=subjects, externals=externals)
    params = [merchant_id, SubscriptionStatus.ACTIVE, *SUBSCRIPTION_REAL_TIME_PARAMS, *named_params]
    subscription, plan, customer, clock = (model._meta.db_table for model, _ in _JOINED)
    sql = (
        f"SELECT {columns.select} FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id"
        f" JOIN {customer} c ON c.id = s.customer_id LEFT JOIN {clock} t ON t.id = s.test_clock_id"
        " WHERE s.merchant_id = %s AND s.status = %s"
        f" AND {SUBSCRIPTION_REAL_TIME_SQL}"
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
        # The relations' public setters: each sets the id just read and caches the row.
        sub.plan, sub.customer, sub.test_clock = plan_row, customer_row, test_clock
        if merchant is not None:
            sub.merchant = merchant
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

    Asked before the wide statement of ``realtime_subscriptions_of_request`` because nearly every answer is no:
    psycopg sets up a loader per result column on every execution, and the wide statement's ~80
    columns (and an array parameter) made it cost ~2.5× the event insert itself even when it returned
    no row. A single subject — the single-event endpoint — is a scalar parameter.
    """
    subscription, plan = Subscription._meta.db_table, Plan._meta.db_table
    named, named_params = _named_customers(merchant_id=merchant_id, subjects=subjects, externals=externals)
    params = [merchant_id, SubscriptionStatus.ACTIVE, *SUBSCRIPTION_REAL_TIME_PARAMS, *named_params]
    sql = (
        f"SELECT 1 FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id"
        " WHERE s.merchant_id = %s AND s.status = %s"
        f" AND {SUBSCRIPTION_REAL_TIME_SQL}"
        f" AND ({named}) LIMIT 1"
    )
    with planned_once_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None

"""Which prices bill a customer's usage at a moment, as a billing run would rate it: what ingestion asks
before refusing an event a dimensional price has no rate for (metering/refusals.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.db import any_of, instances_select

from .models import Customer, Plan, PlanVersion, PlanVersionPrice, Price, Subscription, SubscriptionStatus
from .periods import period_at
from .selectors import VersionLogs, subscription_version_at


@dataclass(frozen=True)
class UsageAsk:
    """One event's question: which of ``price_ids`` would bill the usage the customer (named by ``subject``,
    else by ``external_subject``) sends for ``moment``."""

    subject: str | None
    external_subject: str
    moment: datetime
    price_ids: frozenset[str]


BILLED_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TERMINATED)


def prices_billing_usage(*, merchant_id: str, asks: list[UsageAsk]) -> list[frozenset[str]]:
    """For each ask, the ids among its ``price_ids`` that bill the customer's usage at its moment, as a
    billing run rates it: a subscription of the customer (active or terminated: a pending one bills nothing)
    that is live then (started, not yet ended or terminated, and its current plan already in force since its
    last plan change), whose prices for the period holding the moment (``prices_for_subscriptions``: the plan
    version of the period's start, a negotiated rate whose window covers that start in place of the plan
    price it overrides) include the price. A customer without such a subscription (or not known yet) is billed
    by none.

    One statement for every ask (the named customers' subscriptions joined to the prices asked about, the
    version lines holding them and the customers' negotiated rates over them), plus the version logs of a
    subscription only for a period older than the change before its latest (``subscription_version_at``).
    Subscription-only intervals (invoicing) bill a price at their own single rate and are not read.
    """
    price_ids = sorted({pid for ask in asks for pid in ask.price_ids})
    subjects = sorted({ask.subject for ask in asks if ask.subject})
    externals = sorted({ask.external_subject for ask in asks if not ask.subject and ask.external_subject})
    if not price_ids or not (subjects or externals):
        return [frozenset() for _ in asks]
    rows = _refusing_price_rows(merchant_id=merchant_id, subjects=subjects, externals=externals, price_ids=price_ids)
    # customer id → its subscriptions; (subscription id, price id) → the price, the versions of the
    # subscription's plan holding the plan price it stands for, the customer's negotiated rates over it.
    subscriptions: dict[str, dict[str, Subscription]] = {}
    by_external: dict[str, str] = {}
    facts: dict[tuple[str, str], tuple[Price, set[str], dict[str, Price]]] = {}
    for subscription, plan, customer, price, negotiated, version_id in rows:
        subscription.plan, subscription.customer = plan, customer
        subscriptions.setdefault(customer.pk, {})[subscription.pk] = subscription
        if customer.external_id:
            by_external[customer.external_id] = customer.pk
        _, versions, rates = facts.setdefault((subscription.pk, price.pk), (price, set(), {}))
        if version_id is not None:
            versions.add(version_id)
        if negotiated is not None:
            rates[negotiated.pk] = negotiated
    logs = VersionLogs()
    answers = []
    for ask in asks:
        customer_id = ask.subject or by_external.get(ask.external_subject)
        billing: set[str] = set()
        for subscription in subscriptions.get(customer_id, {}).values():
            start = _billed_period_start(subscription, ask.moment)
            if start is None:
                continue
            # As ``prices_for_subscriptions`` picks the lines: another version's than the default's, or the plan's.
            version_id = None
            if subscription.plan_version_id is not None or subscription.plan.default_version_since is not None:
                chosen = subscription_version_at(subscription, start, logs)
                if chosen is not None and chosen != subscription.plan.default_version_id:
                    version_id = chosen
            for price_id in ask.price_ids:
                found = facts.get((subscription.pk, price_id))
                if found is not None and _bills(subscription, start, version_id, *found):
                    billing.add(price_id)
        answers.append(frozenset(billing))
    return answers


def _billed_period_start(subscription: Subscription, moment: datetime) -> datetime | None:
    """The start of the subscription's period holding ``moment`` when its current plan bills usage then."""
    ends = [end for end in (subscription.terminated_at, subscription.ending_at) if end is not None]
    if moment < subscription.started_at or (ends and moment >= min(ends)):
        return None
    if subscription.plan_changed_at is not None and moment < subscription.plan_changed_at:
        return None  # the plan before the change billed it
    return period_at(
        anchor=subscription.effective_billing_anchor,
        cadence=subscription.plan.billing_cadence,
        moment=moment,
        time_zone=subscription.customer.time_zone,
    ).start


def _bills(
    subscription: Subscription,
    start: datetime,
    version_id: str | None,
    price: Price,
    versions: set[str],
    rates: dict[str, Price],
) -> bool:
    """Whether ``price`` is among the prices that bill ``subscription``'s period starting at ``start``
    (``PriceSet.at`` over the plan's default lines, or over the lines of ``version_id`` when another version
    bills the period; ``versions``: the versions holding the plan price ``price`` is or overrides; ``rates``:
    the customer's negotiated rates over a plan price)."""
    if version_id is None:
        on_lines = price.customer_id is not None or price.plan_id == subscription.plan_id
    else:
        on_lines = version_id in versions
    if not on_lines:
        return False
    if price.customer_id is not None:
        return price.in_window(start)
    return not any(rate.in_window(start) for rate in rates.values())


def _refusing_price_rows(*, merchant_id: str, subjects: list[str], externals: list[str], price_ids: list[str]):
    """(subscription, plan, customer, price, negotiated rate over it or None, version id holding it or None)
    rows of the named customers' billed subscriptions and the asked prices that may bill them."""
    subscription, plan, customer, price = (model._meta.db_table for model in (Subscription, Plan, Customer, Price))
    lines, versions = PlanVersionPrice._meta.db_table, PlanVersion._meta.db_table
    named, params = [], []
    if subjects:
        sql, values = any_of("c.id", subjects)
        named.append(sql)
        params += values
    if externals:
        sql, values = any_of("c.external_id", externals)
        named.append(sql)
        params += values
    of_prices, price_params = any_of("r.id", price_ids)
    statuses, status_params = any_of("s.status", list(BILLED_STATUSES))
    return instances_select(
        "SELECT {columns}, v.version_id"
        f" FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id JOIN {customer} c ON c.id = s.customer_id"
        f" JOIN {price} r ON {of_prices} AND (r.customer_id IS NULL OR r.customer_id = s.customer_id)"
        f" LEFT JOIN {lines} v ON v.price_id = COALESCE(r.overrides_id, r.id)"
        f" AND v.version_id IN (SELECT pv.id FROM {versions} pv WHERE pv.plan_id = s.plan_id)"
        f" LEFT JOIN {price} n ON r.customer_id IS NULL AND n.overrides_id = r.id AND n.customer_id = s.customer_id"
        f" WHERE s.merchant_id = %s AND {statuses} AND ({' OR '.join(named)})"
        " AND (r.plan_id = s.plan_id OR v.version_id IS NOT NULL)",
        [*price_params, merchant_id, *status_params, *params],
        ((Subscription, "s"), (Plan, "p"), (Customer, "c"), (Price, "r"), (Price, "n")),
    )

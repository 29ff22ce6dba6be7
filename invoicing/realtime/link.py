"""Events linked to their customer later: linking them debits the usage they add (catch-up debits).

An event sent with an ``externalSubject`` no customer carries yet is stored unlinked; its usage was never
debited. ``events_link_and_debit`` links such events (beat, or before a request naming their customer)
and brings each plan part's debits to the price of its usage, see REALTIME.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from catalog.models import Merchant, Price, Subscription, SubscriptionStatus
from catalog.periods import Period
from metering import services as metering
from metering.selectors import events_awaiting_link as usage_events_awaiting_link
from metering.selectors import usage_aggregate, usage_aggregate_by_customer_and_values
from wallets.selectors import debited_by_metric
from wallets.services import usage_debit

from .. import usage_counters as counters
from ..calculation import SUBSCRIPTION_RELATED, service_window, subscription_now, subscription_period_at
from ..pricing_adapter import prices_for_subscriptions
from .event_values import event_rows_by_customer
from .locks import wallets_lock_all
from .outcome import Debit
from .windows import (
    debit_amount,
    debited_prices,
    is_dimensional_key,
    is_event_values_key,
    period_invoiced,
    plan_segment,
    usage_key,
    usage_window,
)

ZERO = Decimal(0)


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
            .real_time()
            .select_related(*SUBSCRIPTION_RELATED)
            .order_by("customer_id", "id")
        )
        wallets = (
            wallets_lock_all({(sub.customer_id, sub.plan.currency): sub.customer for sub in subscriptions})
            if subscriptions
            else {}
        )
        linked = metering.events_link_external_subjects(merchant=merchant, external_subjects=external_subjects)
        debits = _catch_up(subscriptions, by_customer, wallets, now=now) if subscriptions else []
    return LinkOutcome(linked=linked, debits=debits)


def _catch_up(subscriptions: list[Subscription], events_by_customer: dict[str, list], wallets, *, now) -> list[Debit]:
    # Priced from the plan version of each subscription's current period (no query unless it moved).
    all_prices = prices_for_subscriptions(
        subscriptions, at={s.pk: subscription_period_at(s, subscription_now(s, now)).start for s in subscriptions}
    )
    debits: list[Debit] = []
    counted: dict[counters.CounterKey, counters.CounterValue] = {}
    definitions: dict[str, str] = {}
    for subscription in subscriptions:
        prices = debited_prices(all_prices[subscription.pk])
        if not prices:
            continue
        events = events_by_customer[subscription.customer_id]
        sub_now = subscription_now(subscription, now)
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
            if period.end <= sub_now and period_invoiced(subscription, service_window(subscription, period)[0]):
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
                price_of_usage = ZERO
                for price in metric_prices:
                    key = usage_key(price, window)
                    if is_event_values_key(key):  # its events' values, as the invoice rates them
                        rows = event_rows_by_customer(
                            metric=metric, window=window, customers=[subscription.customer], paths=key[4]
                        )[subscription.customer_id]
                        price_of_usage += debit_amount(price, currency, before=(), after=rows)
                    elif is_dimensional_key(key):  # its usage per combination of the dimension values
                        by_values = usage_aggregate_by_customer_and_values(
                            metric=metric,
                            start=window[0],
                            end=window[1],
                            customers=[subscription.customer],
                            paths=key[3],
                        )[subscription.customer_id]
                        if counters.is_dimensional_counted(metric, key[3]):  # rewritten as read, like the plain one
                            definitions[metric_id] = counters.definition(metric)
                            counted[(key, subscription.customer_id)] = by_values
                        price_of_usage += debit_amount(price, currency, before={}, after=by_values)
                    else:
                        price_of_usage += debit_amount(price, currency, before=ZERO, after=usage)
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


def events_link_before_request(
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

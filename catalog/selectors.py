"""Reads of the catalog."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db.models import Q

from .models import ApiKey, Customer, Plan, Price, Subscription


def api_key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The unrevoked key matching ``raw_key``, with its merchant, or None."""
    return (
        ApiKey.objects.select_related("merchant")
        .filter(key_digest=api_key_digest(raw_key), revoked_at__isnull=True)
        .first()
    )


def _priced_rows(queryset):
    return queryset.select_related("billable_metric", "fee").prefetch_related("tiers", "dynamic_rates")


def subscription_prices(subscription: Subscription) -> list[Price]:
    """The prices that bill a subscription: its plan's prices, with the customer's negotiated rates in place."""
    return prices_for_subscriptions([subscription])[subscription.pk]


def prices_for_subscriptions(subscriptions: Iterable[Subscription]) -> dict[str, list[Price]]:
    """Subscription id → its billing prices, for many subscriptions in a fixed number of queries."""
    subscriptions = list(subscriptions)
    table = _billing_prices({(s.plan_id, s.customer_id) for s in subscriptions})
    return {s.pk: table[(s.plan_id, s.customer_id)] for s in subscriptions}


def plan_prices_for_customer(*, plan: Plan, customer: Customer | None = None) -> list[Price]:
    """A plan's prices as ``customer`` would be billed (the plan's own prices when no customer is given)."""
    key = (plan.pk, customer.pk if customer else None)
    return _billing_prices({key})[key]


def _billing_prices(pairs: set[tuple[str, str | None]]) -> dict[tuple[str, str | None], list[Price]]:
    """(plan id, customer id) → billing prices.

    A negotiated rate (a Price with ``customer`` set) replaces the plan price it ``overrides`` for that
    customer only; other customers on the same plan keep the plan price.
    """
    plan_ids = {plan_id for plan_id, _ in pairs}
    customer_ids = {customer_id for _, customer_id in pairs if customer_id}
    plan_prices: dict[str, list[Price]] = {plan_id: [] for plan_id in plan_ids}
    negotiated: dict[tuple[str, str], Price] = {}
    rows = _priced_rows(
        Price.objects.filter(plan_id__in=plan_ids).filter(Q(customer__isnull=True) | Q(customer_id__in=customer_ids))
    ).order_by("plan_id", "invoice_display_name", "id")
    for price in rows:
        if price.customer_id is None:
            plan_prices[price.plan_id].append(price)
        else:
            negotiated[(price.customer_id, price.overrides_id)] = price
    return {
        (plan_id, customer_id): [negotiated.get((customer_id, price.pk), price) for price in plan_prices[plan_id]]
        for plan_id, customer_id in pairs
    }

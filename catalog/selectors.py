"""Reads of the catalog."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Prefetch, QuerySet

from core.db import any_of, instance_from_row, instances_select, prefetched

from .models import (
    ApiKey,
    BillableMetric,
    Customer,
    DynamicRate,
    Feature,
    Fee,
    Merchant,
    MetricFilter,
    Plan,
    PlanDefaultChange,
    PlanVersion,
    PlanVersionPrice,
    Price,
    PriceTier,
    Product,
    StaffMerchantAccess,
    Subscription,
    SubscriptionStatus,
    SubscriptionVersionChange,
)


def staff_merchant_ids(*, user) -> frozenset[str] | None:
    """The merchants a staff user may work on in the admin, or None when they may work on every merchant.

    Superusers and staff without any ``StaffMerchantAccess`` row are unrestricted (None); anyone else is
    limited to the merchants of their rows (one query).
    """
    if not user.is_authenticated:
        return frozenset()
    if user.is_superuser:
        return None
    ids = frozenset(StaffMerchantAccess.objects.filter(user_id=user.pk).values_list("merchant_id", flat=True))
    return ids or None


def api_key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The unrevoked key matching ``raw_key``, with its merchant, or None."""
    return (
        ApiKey.objects.select_related("merchant")
        .filter(key_digest=api_key_digest(raw_key), revoked_at__isnull=True)
        .first()
    )


@dataclass(frozen=True)
class PriceSet:
    """A plan's (or a plan version's) prices and a customer's negotiated rates over them, every window:
    ``at`` resolves the prices that bill one period. Resolving costs no query, so a billing run reads a
    subscription's set once and resolves it for each period it rates."""

    plan_prices: tuple[Price, ...]
    negotiated: tuple[Price, ...] = ()

    def at(self, period_start: datetime | None) -> list[Price]:
        """The prices that bill the period starting at ``period_start``: each plan price, or the customer's
        negotiated rate over it whose window covers that period (``Price.in_window``). None: the prices
        after every window has started (an open-ended rate, else the plan price)."""
        if not self.negotiated:
            return list(self.plan_prices)
        rates = {rate.overrides_id: rate for rate in self.negotiated if rate.in_window(period_start)}
        return [rates.get(price.pk, price) for price in self.plan_prices]


def subscription_prices(subscription: Subscription, *, at: datetime | None = None) -> list[Price]:
    """The prices that bill a subscription: its plan's prices, with the customer's negotiated rates in place
    (those whose window covers the period starting at ``at``; see ``PriceSet.at`` for None)."""
    return prices_for_subscriptions([subscription], at={subscription.pk: at} if at else None)[subscription.pk]


def prices_for_subscriptions(
    subscriptions: Iterable[Subscription], *, at: dict[str, datetime] | None = None
) -> dict[str, list[Price]]:
    """Subscription id → its billing prices, for many subscriptions in a fixed number of queries.

    ``at`` (subscription id → the start of the period to rate) picks each subscription's plan version for
    that period, and the negotiated rates whose window covers it; without it, or when that version is its
    plan's default, the plan's default lines (and, without it, the rates in force after every window has
    started). Only a subscription on another version costs its own price read (as many statements as the
    plan's lines; the logs only for a period older than the change before the latest).
    """
    subscriptions = list(subscriptions)
    at = at or {}
    other: dict[str, str] = {}
    if at:
        logs = VersionLogs()
        for s in subscriptions:
            if s.pk in at and (s.plan_version_id is not None or s.plan.default_version_since is not None):
                version_id = subscription_version_at(s, at[s.pk], logs)
                if version_id is not None and version_id != s.plan.default_version_id:
                    other[s.pk] = version_id
    sets = price_sets_for_subscriptions([s for s in subscriptions if s.pk not in other])
    result = {pk: price_set.at(at.get(pk)) for pk, price_set in sets.items()}
    for s in subscriptions:
        if s.pk in other:
            result[s.pk] = version_prices_for_customer(
                version_id=other[s.pk], plan_id=s.plan_id, customer_id=s.customer_id, at=at[s.pk]
            )
    return result


def price_sets_for_subscriptions(subscriptions: Iterable[Subscription]) -> dict[str, PriceSet]:
    """Subscription id → its plan's default lines and its customer's negotiated rates over them (every
    window), in the statements of one price read."""
    subscriptions = list(subscriptions)
    table = _billing_price_sets({(s.plan_id, s.customer_id) for s in subscriptions})
    return {s.pk: table[(s.plan_id, s.customer_id)] for s in subscriptions}


def plan_prices_for_customer(
    *, plan: Plan, customer: Customer | None = None, at: datetime | None = None
) -> list[Price]:
    """A plan's prices as ``customer`` would be billed for the period starting at ``at`` (the plan's own prices
    when no customer is given; ``PriceSet.at`` for None)."""
    return plan_price_set_for_customer(plan=plan, customer=customer).at(at)


def plan_price_set_for_customer(*, plan: Plan, customer: Customer | None = None) -> PriceSet:
    key = (plan.pk, customer.pk if customer else None)
    return _billing_price_sets({key})[key]


# --- Plan versions: which price set bills a period ---------------------------------------------------
#
# A period is rated from one version: the subscription's, as it stood when the period started. The
# subscription row (``plan_version``, ``plan_version_from``) and its plan row (``default_version``,
# ``default_version_since``) answer for every period that started after the latest move, with no query;
# only a period that started before a move reads the logs (``SubscriptionVersionChange``, ``PlanDefaultChange``).


class VersionLogs:
    """The version logs of some subscriptions and plans, read once (a billing run reuses one)."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, list[tuple[object, str | None]]] = {}
        self._plans: dict[str, list[tuple[object, str]]] = {}

    def subscription_rows(self, subscription_id: str) -> list[tuple[object, str | None]]:
        if subscription_id not in self._subscriptions:
            rows = SubscriptionVersionChange.objects.filter(subscription_id=subscription_id).order_by(
                "effective_at", "id"
            )
            # "From the start" (no time) first, whichever way the database orders NULLs.
            ordered = sorted(rows, key=lambda r: (r.effective_at is not None, r.effective_at or 0, r.pk))
            self._subscriptions[subscription_id] = [(r.effective_at, r.version_id) for r in ordered]
        return self._subscriptions[subscription_id]

    def preload(self, *, subscription_ids: Iterable[str] = (), plan_ids: Iterable[str] = ()) -> None:
        """Read the logs of many subscriptions and plans at once (a page of subscriptions): one query each."""
        subscription_ids = [pk for pk in subscription_ids if pk not in self._subscriptions]
        plan_ids = [pk for pk in plan_ids if pk not in self._plans]
        if subscription_ids:
            rows = SubscriptionVersionChange.objects.filter(subscription_id__in=subscription_ids)
            found: dict[str, list] = {pk: [] for pk in subscription_ids}
            for row in sorted(rows, key=lambda r: (r.effective_at is not None, r.effective_at or 0, r.pk)):
                found[row.subscription_id].append((row.effective_at, row.version_id))
            self._subscriptions.update(found)
        if plan_ids:
            plans: dict[str, list] = {pk: [] for pk in plan_ids}
            for row in PlanDefaultChange.objects.filter(plan_id__in=plan_ids).order_by("effective_at", "id"):
                plans[row.plan_id].append((row.effective_at, row.version_id))
            self._plans.update(plans)

    def plan_rows(self, plan_id: str) -> list[tuple[object, str]]:
        if plan_id not in self._plans:
            rows = PlanDefaultChange.objects.filter(plan_id=plan_id).order_by("effective_at", "id")
            self._plans[plan_id] = [(r.effective_at, r.version_id) for r in rows]
        return self._plans[plan_id]


def plan_default_version_at(plan: Plan, moment: datetime, logs: VersionLogs | None = None) -> str | None:
    """The id of the version that was ``plan``'s default at ``moment`` (its first one before any)."""
    since = plan.default_version_since
    if since is None or moment >= since:
        return plan.default_version_id
    previous_since = plan.previous_default_since
    if previous_since is not None and moment >= previous_since:
        return plan.previous_default_version_id
    rows = (logs or VersionLogs()).plan_rows(plan.pk)
    chosen = rows[0][1] if rows else plan.default_version_id
    for effective_at, version_id in rows:
        if effective_at <= moment:
            chosen = version_id
    return chosen


def subscription_version_at(
    subscription: Subscription, moment: datetime, logs: VersionLogs | None = None
) -> str | None:
    """The id of the plan version that bills ``subscription``'s period starting at ``moment`` (None only for a
    plan without versions). A floating subscription bills from the version that was the plan's default when
    the period started, so a new default reaches it at its next period; a pinned one from its own."""
    logs = logs or VersionLogs()
    since = subscription.plan_version_from
    if since is None or moment >= since:
        pinned = subscription.plan_version_id
    elif subscription.previous_plan_version_from is None or moment >= subscription.previous_plan_version_from:
        pinned = subscription.previous_plan_version_id
    else:
        pinned = None
        for effective_at, version_id in logs.subscription_rows(subscription.pk):
            if effective_at is None or effective_at <= moment:
                pinned = version_id
    if pinned is not None:
        return pinned
    # Floating: a subscription started inside a period follows the default of its start, not the period's.
    return plan_default_version_at(subscription.plan, max(moment, subscription.started_at), logs)


def subscription_initial_versions(*, subscriptions: Iterable[Subscription]) -> dict[str, tuple[str, int]]:
    """Each subscription's plan version as of its creation (the version that billed its first period) and that
    version's number, by subscription id (absent for a plan without versions): at most three statements for
    all of them, none for a subscription whose rows answer (``subscription_version_at``)."""
    subscriptions = list(subscriptions)
    logs = VersionLogs()
    moved = [
        s.pk
        for s in subscriptions
        if s.plan_version_from is not None
        and s.started_at < s.plan_version_from
        and s.previous_plan_version_from is not None
        and s.started_at < s.previous_plan_version_from
    ]
    defaults = {
        s.plan_id
        for s in subscriptions
        if s.plan.default_version_since is not None
        and s.started_at < s.plan.default_version_since
        and (s.plan.previous_default_since is None or s.started_at < s.plan.previous_default_since)
    }
    logs.preload(subscription_ids=moved, plan_ids=defaults)
    versions = {s.pk: subscription_version_at(s, s.started_at, logs) for s in subscriptions}
    wanted = {version_id for version_id in versions.values() if version_id}
    numbers = dict(PlanVersion.objects.filter(pk__in=wanted).values_list("pk", "number")) if wanted else {}
    return {pk: (version_id, numbers[version_id]) for pk, version_id in versions.items() if version_id in numbers}


def version_prices_for_customer(
    *, version_id: str, plan_id: str, customer_id: str | None, at: datetime | None = None
) -> list[Price]:
    """A version's prices as ``customer_id`` is billed for the period starting at ``at`` (``PriceSet.at``)."""
    return version_price_set_for_customer(version_id=version_id, plan_id=plan_id, customer_id=customer_id).at(at)


def version_price_set_for_customer(*, version_id: str, plan_id: str, customer_id: str | None) -> PriceSet:
    """A version's prices and ``customer_id``'s negotiated rates over them: the same statements as the plan's
    default lines (one on PostgreSQL), the version's lines read by a subquery."""
    rows = _priced_rows({plan_id}, {customer_id} if customer_id else set(), version_id=version_id)
    return PriceSet(
        tuple(p for p in rows if p.customer_id is None), tuple(p for p in rows if p.customer_id is not None)
    )


def plan_version_list(*, plan: Plan) -> QuerySet[PlanVersion]:
    """A plan's versions, newest first, with their committed-subscription counts."""
    from django.db.models import Count, Q

    live = ~Q(subscriptions__status=SubscriptionStatus.TERMINATED)
    return (
        PlanVersion.objects.filter(plan=plan)
        .annotate(subscription_count=Count("subscriptions", filter=live & Q(subscriptions__isnull=False)))
        .order_by("-number")
    )


def plan_version_get(*, plan: Plan, number: int) -> PlanVersion:
    return _get_or_404(plan_version_list(plan=plan), number=number)


def plan_version_lines(version: PlanVersion) -> list[PlanVersionPrice]:
    """The version's lines with their prices (tiers and rates prefetched), by key."""
    return list(
        version.lines.select_related("price", "price__plan")
        .prefetch_related("price__tiers", "price__dynamic_rates")
        .order_by("key")
    )


def _billing_price_sets(pairs: set[tuple[str, str | None]]) -> dict[tuple[str, str | None], PriceSet]:
    """(plan id, customer id) → the plan's prices and that customer's negotiated rates over them.

    A negotiated rate (a Price with ``customer`` set) replaces the plan price it ``overrides`` for that
    customer only, in its window; other customers on the same plan keep the plan price.
    """
    plan_ids = {plan_id for plan_id, _ in pairs}
    customer_ids = {customer_id for _, customer_id in pairs if customer_id}
    plan_prices: dict[str, list[Price]] = {plan_id: [] for plan_id in plan_ids}
    negotiated: dict[tuple[str, str], list[Price]] = {}
    for price in _priced_rows(plan_ids, customer_ids):
        if price.customer_id is None:
            plan_prices[price.plan_id].append(price)
        else:
            negotiated.setdefault((price.plan_id, price.customer_id), []).append(price)
    return {
        (plan_id, customer_id): PriceSet(
            tuple(plan_prices[plan_id]), tuple(negotiated.get((plan_id, customer_id), ())) if customer_id else ()
        )
        for plan_id, customer_id in pairs
    }


def _priced_rows(plan_ids: set[str], customer_ids: set[str], version_id: str | None = None) -> list[Price]:
    """The prices of ``plan_ids`` (the plans' own and the negotiated rates of ``customer_ids``) with their
    metric or fee, tiers and dynamic rates (and, on PostgreSQL, the metrics' filters): hand-written
    queries, one on PostgreSQL, three elsewhere. Every real-time event request reads them, and the ORM's
    select_related/prefetch_related cost several times the queries."""
    if not plan_ids:
        return []
    plan_ids, customer_ids = sorted(plan_ids), sorted(customer_ids)
    price, metric, fee = (model._meta.db_table for model in (Price, BillableMetric, Fee))
    of_plans, params = any_of("pr.plan_id", plan_ids)
    negotiated = ""
    if customer_ids:
        of_customers, customer_params = any_of("pr.customer_id", customer_ids)
        negotiated, params = f" OR {of_customers}", [*params, *customer_params]
    where = f"{of_plans} AND (pr.customer_id IS NULL{negotiated})"
    if version_id is not None:
        # A version's own prices (some no longer on the plan's default lines), and the negotiated rates.
        lines = PlanVersionPrice._meta.db_table
        where = f"(pr.id IN (SELECT v.price_id FROM {lines} v WHERE v.version_id = %s) AND pr.customer_id IS NULL)"
        params = [version_id]
        if customer_ids:
            where += f" OR ({of_plans} AND {of_customers})"
            params = [version_id, *any_of("pr.plan_id", plan_ids)[1], *customer_params]
    nested = connection.vendor == "postgresql"
    rows = instances_select(
        f"SELECT {{columns}}{_NESTED if nested else ''} FROM {price} pr"
        f" LEFT JOIN {metric} m ON m.id = pr.billable_metric_id LEFT JOIN {fee} f ON f.id = pr.fee_id"
        f" WHERE {where}"
        " ORDER BY pr.plan_id, pr.invoice_display_name, pr.id",
        params,
        ((Price, "pr"), (BillableMetric, "m"), (Fee, "f")),
        prepared=True,
    )
    prices = []
    for price_row, metric_row, fee_row, *rest in rows:
        # The relations' public setters: the id is the one just read, and the row is cached.
        price_row.billable_metric, price_row.fee = metric_row, fee_row
        prices.append(price_row)
        if nested:
            _nested_rows(price_row, metric_row, *rest)
    if prices and not nested:
        of_prices, params = any_of("price_id", [price.pk for price in prices])
        tiers = instances_select(
            f"SELECT {{columns}} FROM {PriceTier._meta.db_table} t WHERE t.{of_prices}"
            " ORDER BY t.up_to IS NULL, t.up_to, t.id",
            params,
            ((PriceTier, "t"),),
            prepared=True,
        )
        rates = instances_select(
            f"SELECT {{columns}} FROM {DynamicRate._meta.db_table} r WHERE r.{of_prices}"
            " ORDER BY r.effective_from, r.id",
            params,
            ((DynamicRate, "r"),),
            prepared=True,
        )
        prefetched(prices, "tiers", [tier for (tier,) in tiers], "price_id")
        prefetched(prices, "dynamic_rates", [rate for (rate,) in rates], "price_id")
    return prices


# PostgreSQL: each price row brings its tiers, dynamic rates and metric filters as JSON text (one
# statement instead of four). Numbers are parsed as Decimals from their exact text, times from ISO text
# and a filter's values by its field, like the ORM reads them.
_NESTED = (
    ", (SELECT json_agg(json_build_array(t.id, t.up_to, t.unit_price, t.flat_fee)"
    f" ORDER BY t.up_to IS NULL, t.up_to, t.id)::text FROM {PriceTier._meta.db_table} t WHERE t.price_id = pr.id)"
    ", (SELECT json_agg(json_build_array(r.id, r.effective_from, r.unit_price)"
    f" ORDER BY r.effective_from, r.id)::text FROM {DynamicRate._meta.db_table} r WHERE r.price_id = pr.id)"
    ", (SELECT json_agg(json_build_array(f.id, f.property_path, f.operator, f.values::text) ORDER BY f.id)::text"
    f" FROM {MetricFilter._meta.db_table} f WHERE f.metric_id = pr.billable_metric_id)"
)


def _nested_rows(price: Price, metric: BillableMetric | None, tiers: str | None, rates: str | None, filters):
    alias = connection.alias
    exact = functools.partial(json.loads, parse_float=Decimal)
    tier_rows = [
        instance_from_row(PriceTier, alias, _TIER_FIELDS, (tier_id, price.pk, up_to, unit_price, flat_fee))
        for tier_id, up_to, unit_price, flat_fee in (exact(tiers) if tiers else ())
    ]
    rate_rows = [
        instance_from_row(
            DynamicRate, alias, _RATE_FIELDS, (rate_id, price.pk, datetime.fromisoformat(start), unit_price)
        )
        for rate_id, start, unit_price in (exact(rates) if rates else ())
    ]
    prefetched([price], "tiers", tier_rows, "price_id")
    prefetched([price], "dynamic_rates", rate_rows, "price_id")
    if metric is not None and "filters" not in getattr(metric, "_prefetched_objects_cache", {}):
        values_field = MetricFilter._meta.get_field("values")
        filter_rows = [
            instance_from_row(
                MetricFilter,
                alias,
                _FILTER_FIELDS,
                (filter_id, metric.pk, path, operator, values_field.from_db_value(values, None, connection)),
            )
            for filter_id, path, operator, values in (json.loads(filters) if filters else ())
        ]
        prefetched([metric], "filters", filter_rows, "metric_id")


# Every concrete column of each model, in ``_meta`` order, as ``_NESTED`` selects them: a column missing here
# would come back deferred (tests/catalog/test_subscription_prices.py checks each row is complete).
_TIER_FIELDS = ("id", "price_id", "up_to", "unit_price", "flat_fee")
_RATE_FIELDS = ("id", "price_id", "effective_from", "unit_price")
_FILTER_FIELDS = ("id", "metric_id", "property_path", "operator", "values")


def metric_filters_prefetch(metrics: Iterable[BillableMetric]) -> None:
    """Read the filters of ``metrics`` (``metric.filters.all()``) in one hand-written query; none for
    metrics whose filters are read already (on PostgreSQL the prices' query brings them)."""
    metrics = [m for m in metrics if "filters" not in getattr(m, "_prefetched_objects_cache", {})]
    ids = sorted({metric.pk for metric in metrics})
    if not ids:
        return
    of_metrics, params = any_of("f.metric_id", ids)
    rows = instances_select(
        f"SELECT {{columns}} FROM {MetricFilter._meta.db_table} f WHERE {of_metrics} ORDER BY f.id",
        params,
        ((MetricFilter, "f"),),
        prepared=True,
    )
    prefetched(metrics, "filters", [row for (row,) in rows], "metric_id")


# --- API reads. Every read is scoped to one merchant: another merchant's id is "not found". ---


def _get_or_404(queryset, **lookup):
    from django.http import Http404

    try:
        return queryset.get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404(f"No {queryset.model._meta.verbose_name} with id {lookup.get('pk')!r}.") from None


def product_list(*, merchant: Merchant) -> QuerySet[Product]:
    return Product.objects.filter(merchant=merchant).order_by("created_at", "id")


def product_get(*, merchant: Merchant, product_id: str) -> Product:
    return _get_or_404(product_list(merchant=merchant), pk=product_id)


def billable_metric_list(
    *, merchant: Merchant, product_id: str | None = None, item_id: str | None = None
) -> QuerySet[BillableMetric]:
    metrics = BillableMetric.objects.filter(merchant=merchant).order_by("created_at", "id")
    if product_id:
        metrics = metrics.filter(product_id=product_id)
    if item_id:
        metrics = metrics.filter(item_id=item_id)
    return metrics


def billable_metric_get(*, merchant: Merchant, metric_id: str) -> BillableMetric:
    return _get_or_404(billable_metric_list(merchant=merchant), pk=metric_id)


def fee_list(*, merchant: Merchant, product_id: str | None = None, item_id: str | None = None) -> QuerySet[Fee]:
    fees = Fee.objects.filter(merchant=merchant).order_by("created_at", "id")
    if product_id:
        fees = fees.filter(product_id=product_id)
    if item_id:
        fees = fees.filter(item_id=item_id)
    return fees


def fee_get(*, merchant: Merchant, fee_id: str) -> Fee:
    return _get_or_404(fee_list(merchant=merchant), pk=fee_id)


def price_list(*, merchant: Merchant, billable_metric_id: str | None = None) -> QuerySet[Price]:
    """The merchant's prices with their tiers and rate schedule prefetched (negotiated rates included)."""
    prices = (
        Price.objects.filter(merchant=merchant)
        .select_related("plan")
        .prefetch_related("tiers", "dynamic_rates")
        .order_by("created_at", "id")
    )
    if billable_metric_id:
        prices = prices.filter(billable_metric_id=billable_metric_id)
    return prices


def price_get(*, merchant: Merchant, price_id: str) -> Price:
    return _get_or_404(price_list(merchant=merchant), pk=price_id)


def plan_list(*, merchant: Merchant, product_id: str | None = None) -> QuerySet[Plan]:
    """The merchant's plans with their plan prices (not negotiated rates) prefetched."""
    plan_prices = (
        Price.objects.filter(customer__isnull=True)
        .prefetch_related("tiers", "dynamic_rates")
        .order_by("created_at", "id")
    )
    plans = (
        Plan.objects.filter(merchant=merchant)
        .prefetch_related(Prefetch("prices", queryset=plan_prices, to_attr="plan_prices"))
        .order_by("created_at", "id")
    )
    if product_id:
        plans = plans.filter(product_id=product_id)
    return plans


def plan_get(*, merchant: Merchant, plan_id: str) -> Plan:
    return _get_or_404(plan_list(merchant=merchant), pk=plan_id)


def plan_list_available(
    *, merchant: Merchant, customer: Customer, product_id: str | None = None, search: str | None = None
) -> QuerySet[Plan]:
    """Live plans of products in which the customer has no subscription that is still running.

    A terminated subscription does not count, so a former customer can subscribe again.
    """
    subscribed_products = Subscription.objects.filter(customer=customer).exclude(status=SubscriptionStatus.TERMINATED)
    plans = plan_list(merchant=merchant, product_id=product_id).filter(archived_at__isnull=True)
    plans = plans.exclude(product_id__in=subscribed_products.values("plan__product_id"))
    if search:
        plans = plans.filter(name__icontains=search)
    return plans


def plan_live_subscription_count(*, plan: Plan) -> int:
    """Subscriptions that bill the plan now or will once paid (not terminated)."""
    return Subscription.objects.filter(plan=plan).exclude(status=SubscriptionStatus.TERMINATED).count()


def customer_list(
    *,
    merchant: Merchant,
    name: str | None = None,
    email: str | None = None,
    external_id: str | None = None,
) -> QuerySet[Customer]:
    customers = Customer.objects.filter(merchant=merchant).order_by("created_at", "id")
    if name:
        customers = customers.filter(name__icontains=name)
    if email:
        customers = customers.filter(email__icontains=email)
    if external_id:
        customers = customers.filter(external_id=external_id)
    return customers


def customer_get(*, merchant: Merchant, customer_id: str) -> Customer:
    return _get_or_404(customer_list(merchant=merchant), pk=customer_id)


def feature_list(*, merchant: Merchant, product_id: str | None = None, key: str | None = None) -> QuerySet[Feature]:
    features = Feature.objects.filter(merchant=merchant).order_by("created_at", "id")
    if product_id is not None:
        features = features.filter(product_id=product_id)
    if key is not None:
        features = features.filter(key=key)
    return features


def feature_get(*, merchant: Merchant, feature_id: str) -> Feature:
    return _get_or_404(feature_list(merchant=merchant), pk=feature_id)

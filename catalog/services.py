"""Writes to the catalog: ``<entity>_<verb>`` functions with keyword-only arguments.

Kept whole for now because each entity's writes are short and grep by their prefix (``price_``, ``plan_``…)
finds them; the seam when it grows is a ``services/`` package by entity, as invoicing's and wallets' are
(plans and prices, the longest, first)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError, Q
from django.utils.text import slugify

from core.errors import Conflict

from .api.auth import api_key_cache_forget
from .models import (
    ApiKey,
    BillableMetric,
    Customer,
    DynamicRate,
    Feature,
    Fee,
    Merchant,
    Plan,
    PlanDefaultChange,
    PlanVersion,
    PlanVersionPrice,
    PlanVersionStatus,
    Price,
    PriceModel,
    PriceTier,
    Product,
)
from .selectors import api_key_digest, plan_live_subscription_count
from .validation import tier_table_errors

API_KEY_PREFIX = "ml_live_"


@transaction.atomic
def api_key_create(*, merchant: Merchant, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored and cannot be shown again."""
    raw_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        merchant=merchant, name=name, prefix=raw_key[: len(API_KEY_PREFIX) + 6], key_digest=api_key_digest(raw_key)
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey, now: datetime) -> ApiKey:
    """Revoke a key; revoking twice keeps the first revocation time."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    api_key_cache_forget(api_key.key_digest)  # the ingestion endpoints' per-process key cache
    return api_key


# --- Catalog writes used by the REST API (and usable from the admin, commands and tests). ---
#
# Each service validates with the model rules (full_clean, catalog.validation) and runs in one
# transaction. Business conflicts (deleting something still in use, repricing a billed price) raise
# CatalogConflict; the API answers them with 409.


class CatalogConflict(Conflict):
    """A write refused because other objects depend on the current state (the API answers 409)."""


UNCHANGED: Any = object()  # marks "leave this field as it is" in update services

PRICE_PROPERTY_FIELDS = (
    "unit_price",
    "package_size",
    "package_rounding",
    "percentage_rate",
    "fixed_fee_per_event",
    "min_charge_per_event",
    "max_charge_per_event",
    "min_charge_per_period",
    "max_charge_per_period",
    "dynamic_mode",
    "event_price_property",
    "min_unit_price",
    "max_unit_price",
)
# Fields that only change how a price is shown; everything else changes what subscriptions pay.
# ``rate_per`` is the scale rates are typed and printed in (per 1K…): the stored per-unit rate is unchanged.
PRICE_DISPLAY_FIELDS = {"invoice_display_name", "invoice_display_group", "rate_type", "rate_per"}


@dataclass(frozen=True)
class TierRow:
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True)
class RateRow:
    effective_from: datetime
    unit_price: Decimal


def _apply(instance, changes: dict[str, Any]) -> list[str]:
    changed = []
    for field, value in changes.items():
        if value is UNCHANGED:
            continue
        if getattr(instance, field) != value:
            changed.append(field)
        setattr(instance, field, value)
    return changed


def _blocker(kind: str, rows: list[dict], count: int) -> dict:
    return {"type": kind, "count": count, "items": rows}


def _delete_or_conflict(instance, what: str, blockers: list[dict]) -> None:
    blockers = [b for b in blockers if b["count"]]
    if blockers:
        names = ", ".join(f"{b['count']} {b['type']}" for b in blockers)
        raise CatalogConflict(
            f"This {what} is still in use ({names}); remove those first.",
            code="RESOURCE_IN_USE",
            details={"blockers": blockers},
        )
    try:
        instance.delete()
    except ProtectedError as exc:
        # Objects of other apps (invoices, usage events…) that keep a reference.
        counts: dict[str, list] = {}
        for obj in exc.protected_objects:
            counts.setdefault(obj._meta.verbose_name_plural.replace(" ", "_"), []).append({"id": str(obj.pk)})
        found = [_blocker(kind, items[:10], len(items)) for kind, items in counts.items()]
        raise CatalogConflict(
            f"This {what} is still referenced by other records.", code="RESOURCE_IN_USE", details={"blockers": found}
        ) from None


# Products


@transaction.atomic
def product_create(*, merchant: Merchant, name: str, description: str = "", metadata: dict | None = None) -> Product:
    """Create a product of ``merchant``."""
    product = Product(merchant=merchant, name=name, description=description, metadata=metadata or {})
    product.full_clean()
    product.save()
    return product


PRODUCT_UPDATE_FIELDS = {"name", "description", "metadata"}


@transaction.atomic
def product_update(*, product: Product, changes: dict[str, Any]) -> Product:
    """Change ``name``, ``description`` or ``metadata`` of a product."""
    _apply(product, {k: v for k, v in changes.items() if k in PRODUCT_UPDATE_FIELDS})
    product.full_clean()
    product.save()
    return product


@transaction.atomic
def product_delete(*, product: Product) -> None:
    """Delete a product that no metric, fee or plan uses; otherwise raise CatalogConflict with blockers."""
    metrics = list(product.billable_metrics.order_by("created_at").values("id", "name"))
    fees = list(product.fees.order_by("created_at").values("id", "name"))
    plans = list(product.plans.order_by("created_at").values("id", "name"))
    _delete_or_conflict(
        product,
        "product",
        [
            _blocker("billableMetrics", metrics[:10], len(metrics)),
            _blocker("fees", fees[:10], len(fees)),
            _blocker("plans", plans[:10], len(plans)),
        ],
    )


# Billable metrics

BILLABLE_METRIC_FIELDS = {
    "name",
    "description",
    "unit",
    "aggregation",
    "event_type",
    "value_property",
    "group_by",
    "event_from",
    "item_id",
}
# The aggregation and product are fixed once created: usage was already counted that way.
BILLABLE_METRIC_UPDATE_FIELDS = BILLABLE_METRIC_FIELDS - {"aggregation"}


@transaction.atomic
def billable_metric_create(*, merchant: Merchant, product: Product, **fields: Any) -> BillableMetric:
    """Create a metric of ``product``; fields are BillableMetric model fields."""
    unknown = set(fields) - BILLABLE_METRIC_FIELDS
    if unknown:
        raise TypeError(f"Unknown billable metric fields: {sorted(unknown)}")
    metric = BillableMetric(merchant=merchant, product=product, **fields)
    metric.full_clean()
    metric.save()
    return metric


@transaction.atomic
def billable_metric_update(*, metric: BillableMetric, changes: dict[str, Any]) -> BillableMetric:
    """Change a metric. The aggregation and product are fixed once created (usage already counted)."""
    _apply(metric, {k: v for k, v in changes.items() if k in BILLABLE_METRIC_UPDATE_FIELDS})
    metric.full_clean()
    metric.save()
    return metric


@transaction.atomic
def billable_metric_delete(*, metric: BillableMetric) -> None:
    """Delete a metric no price charges for; otherwise raise CatalogConflict with the prices."""
    prices = list(metric.prices.order_by("created_at").values("id", "invoice_display_name"))
    items = [{"id": p["id"], "invoiceDisplayName": p["invoice_display_name"]} for p in prices[:10]]
    _delete_or_conflict(metric, "billable metric", [_blocker("prices", items, len(prices))])


# Fees


@transaction.atomic
def fee_create(*, merchant: Merchant, product: Product, name: str, description: str = "", item_id: str = "") -> Fee:
    """Create a fee of ``product``; its amount and cadence live on a price."""
    fee = Fee(merchant=merchant, product=product, name=name, description=description, item_id=item_id)
    fee.full_clean()
    fee.save()
    return fee


FEE_UPDATE_FIELDS = {"name", "description", "item_id"}


@transaction.atomic
def fee_update(*, fee: Fee, changes: dict[str, Any]) -> Fee:
    """Change ``name``, ``description`` or ``item_id`` of a fee."""
    _apply(fee, {k: v for k, v in changes.items() if k in FEE_UPDATE_FIELDS})
    fee.full_clean()
    fee.save()
    return fee


@transaction.atomic
def fee_delete(*, fee: Fee) -> None:
    """Delete a fee no price charges; otherwise raise CatalogConflict listing the prices."""
    prices = list(fee.prices.order_by("created_at").values("id", "invoice_display_name"))
    items = [{"id": p["id"], "invoiceDisplayName": p["invoice_display_name"]} for p in prices[:10]]
    _delete_or_conflict(fee, "fee", [_blocker("prices", items, len(prices))])


# Prices


def _price_validate(price: Price, tiers: list[TierRow]) -> None:
    errors: dict[str, list[str]] = {}
    try:
        price.full_clean()
    except ValidationError as exc:
        errors.update(exc.message_dict)
    tier_messages = tier_table_errors([(t.up_to, t.unit_price) for t in tiers], model=price.model)
    for number, tier in enumerate(tiers, start=1):
        row = PriceTier(price=price, up_to=tier.up_to, unit_price=tier.unit_price, flat_fee=tier.flat_fee)
        tier_messages.extend(_row_errors(row, f"Tier {number}"))
    if tier_messages:
        errors["tiers"] = tier_messages
    if not errors and price.customer_id and price.overrides_id:
        overlap = _window_overlap(price)
        if overlap:
            errors["effective_from"] = [overlap]
    if errors:
        raise ValidationError(errors)


def _window_overlap(price: Price) -> str | None:
    """What the negotiated rate's window overlaps, if anything: another window of the same customer over the
    same plan price (each period is rated by at most one). Checked under the customer's row lock, so two
    writers cannot both pass; PostgreSQL's exclusion constraint (migration 0019) backs it."""
    Customer.objects.select_for_update().filter(pk=price.customer_id).values_list("pk", flat=True).first()
    others = Price.objects.filter(customer_id=price.customer_id, overrides_id=price.overrides_id).exclude(pk=price.pk)
    if price.effective_until is not None:
        others = others.filter(Q(effective_from__isnull=True) | Q(effective_from__lt=price.effective_until))
    if price.effective_from is not None:
        others = others.filter(Q(effective_until__isnull=True) | Q(effective_until__gt=price.effective_from))
    other = others.order_by("effective_from", "id").first()
    if other is None:
        return None
    return (
        f"The window overlaps the customer's rate {other.pk} over this price "
        f"({_window_text(other)}); each billing period is rated by one rate. End that one first."
    )


def _window_text(price: Price) -> str:
    start = price.effective_from.isoformat() if price.effective_from else "the start"
    end = price.effective_until.isoformat() if price.effective_until else "open-ended"
    return f"from {start}, until {end}"


def _row_errors(row, label: str) -> list[str]:
    """Field-level problems (digits, sign) of a tier or rate row, which bulk_create would not check."""
    try:
        row.clean_fields(exclude=["price"])
    except ValidationError as exc:
        return [f"{label}: {field.replace('_', ' ')}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()]
    return []


def _price_write_schedule(price: Price, tiers: list[TierRow] | None, rates: list[RateRow] | None) -> None:
    if tiers is not None:
        price.tiers.all().delete()
        PriceTier.objects.bulk_create(
            PriceTier(price=price, up_to=t.up_to, unit_price=t.unit_price, flat_fee=t.flat_fee) for t in tiers
        )
    if rates is not None:
        price.dynamic_rates.all().delete()
        DynamicRate.objects.bulk_create(
            DynamicRate(price=price, effective_from=r.effective_from, unit_price=r.unit_price) for r in rates
        )


def _price_schedule(price: Price) -> tuple[list[TierRow], list[RateRow]]:
    tiers = [TierRow(t.up_to, t.unit_price, t.flat_fee) for t in price.tiers.all()]
    rates = [RateRow(r.effective_from, r.unit_price) for r in price.dynamic_rates.all()]
    return tiers, rates


@transaction.atomic
def price_create(
    *,
    merchant: Merchant,
    fields: dict[str, Any],
    tiers: list[TierRow] | None = None,
    rates: list[RateRow] | None = None,
) -> Price:
    """Create an unattached price (no plan) for a metric or a fee; plans attach it later.

    ``fields`` are Price model fields (``billable_metric`` or ``fee``, ``model``, ``unit_price``…);
    ``tiers`` are the graduated/volume rows in entry order, ``rates`` a dynamic rate schedule.
    """
    tiers = list(tiers or [])
    price = Price(merchant=merchant, **fields)
    _price_validate(price, tiers)
    _rate_schedule_errors(price, rates or [])
    price.save()
    _price_write_schedule(price, tiers, list(rates or []))
    return price


# Fields a negotiated rate does not copy from the plan price it replaces.
_NOT_NEGOTIATED = {"id", "created_at", "updated_at", "merchant", "customer", "overrides", "unit_price"}


@transaction.atomic
def negotiated_rate_create(
    *,
    plan_price: Price,
    customer: Customer,
    unit_price: Decimal,
    effective_from: datetime | None = None,
    effective_until: datetime | None = None,
) -> Price:
    """``customer``'s negotiated ``unit_price`` over ``plan_price`` (a copy of it but for the rate), rating the
    billing periods that start in [effective_from, effective_until) (``Price.in_window``). A window that
    overlaps another of the customer's rates over that price is refused (ValidationError on
    ``effective_from``), as ``price_create`` refuses it."""
    fields = {f.name: getattr(plan_price, f.name) for f in Price._meta.concrete_fields if f.name not in _NOT_NEGOTIATED}
    fields.update(
        customer=customer,
        overrides=plan_price,
        unit_price=unit_price,
        effective_from=effective_from,
        effective_until=effective_until,
    )
    return price_create(merchant=plan_price.merchant, fields=fields)


def _rate_schedule_errors(price: Price, rates: list[RateRow]) -> None:
    if rates and price.model != PriceModel.DYNAMIC:
        raise ValidationError({"rates": "Only dynamic prices have a rate schedule."})
    starts = [r.effective_from for r in rates]
    if len(set(starts)) != len(starts):
        raise ValidationError({"rates": "Two rates start at the same moment."})
    messages = []
    for number, rate in enumerate(rates, start=1):
        row = DynamicRate(price=price, effective_from=rate.effective_from, unit_price=rate.unit_price)
        messages.extend(_row_errors(row, f"Rate {number}"))
    if messages:
        raise ValidationError({"rates": messages})


@transaction.atomic
def price_update(
    *,
    price: Price,
    changes: dict[str, Any],
    tiers: list[TierRow] | None = None,
    rates: list[RateRow] | None = None,
) -> Price:
    """Change a price. ``tiers``/``rates`` of None leave the schedule as it is.

    Changing what a price charges (anything but its display name, group and rate type) while
    subscriptions bill it raises CatalogConflict with code PRICE_IN_USE: create a new price and
    attach it to the plan instead, so running periods keep the price they started with.
    """
    price = Price.objects.select_for_update().get(pk=price.pk)
    old_tiers, old_rates = _price_schedule(price)
    changed = _apply(price, changes)
    new_tiers = old_tiers if tiers is None else list(tiers)
    new_rates = old_rates if rates is None else list(rates)
    if new_tiers != old_tiers:
        changed.append("tiers")
    if new_rates != old_rates:
        changed.append("rates")
    conflict = price_update_conflict(price=price, changed=changed)
    if conflict is not None:
        raise conflict
    _price_validate(price, new_tiers)
    _rate_schedule_errors(price, new_rates)
    price.save()
    _price_write_schedule(price, None if tiers is None else new_tiers, None if rates is None else new_rates)
    return price


def price_update_conflict(*, price: Price, changed: Iterable[str]) -> CatalogConflict | None:
    """The PRICE_IN_USE conflict ``price_update`` raises when ``changed`` fields of ``price`` change, or None.

    ``price`` carries the new values (its plan is the plan after the change); ``changed`` names model
    fields, plus ``tiers`` and ``rates`` for its schedule. Only display fields may change while
    subscriptions bill a plan price. The admin asks this before it saves, to put the refusal on the form.
    """
    pricing_changes = [field for field in changed if field not in PRICE_DISPLAY_FIELDS]
    if not pricing_changes or price.customer_id is not None:
        return None
    plan = price.plan if price.plan_id else None
    if plan is None and price.pk:
        # Off the default's lines, but an older version may still bill it (a pinned subscription).
        held = PlanVersionPrice.objects.filter(price_id=price.pk).select_related("version__plan").first()
        plan = held.version.plan if held is not None else None
    if plan is None:
        return None
    count = plan_live_subscription_count(plan=plan)
    if not count:
        return None
    fields = sorted({_price_api_field(field) for field in pricing_changes})
    return CatalogConflict(
        f"{count} subscription(s) bill this price; create a new price and attach it to the plan instead "
        f"of changing {', '.join(fields)}.",
        code="PRICE_IN_USE",
        details={"priceId": price.id, "fields": fields, "subscriptionCount": count},
    )


def _price_api_field(field: str) -> str:
    if field in PRICE_PROPERTY_FIELDS or field in {"tiers", "rates"}:
        return "properties"
    return {"billable_metric": "billableMetricId", "fee": "feeId"}.get(field, _camel(field))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@transaction.atomic
def price_delete(*, price: Price) -> None:
    """Delete a price that no live plan references; otherwise raise CatalogConflict naming the plan."""
    _delete_or_conflict(price, "price", price_delete_blockers(price=price))


def price_delete_blockers(*, price: Price) -> list[dict]:
    """What keeps ``price_delete`` from deleting ``price`` (the live plan it belongs to), as blockers."""
    if price.plan_id and price.plan.archived_at is None:
        return [_blocker("plans", [{"id": price.plan_id, "name": price.plan.name}], 1)]
    return []


# Plans

PLAN_FIELDS = {
    "name",
    "description",
    "invoice_display_name",
    "billing_cadence",
    "billing_anchor",
    "tax_behavior",
    "default_tax_code",
    "default_tax_rate",
    "minimum_commitment",
    "discount_percent",
    "threshold_amount",
    "threshold_ladder",
    "threshold_recurring",
    "renewal_reminder_enabled",
    "renewal_reminder_days",
}
PLAN_BILLING_FIELDS = {"billing_cadence", "billing_anchor"}
_PLAN_LINE_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _plan_check_anchor(plan: Plan, now: datetime) -> None:
    if plan.billing_anchor and plan.billing_anchor > now:
        raise ValidationError({"billing_anchor": "The billing anchor cannot be in the future."})


def _plan_attach(plan: Plan, lines: list[tuple[Price, str | None]]) -> None:
    """Attach ``lines`` (price, key) to ``plan`` and detach its other plan prices."""
    errors: dict[str, str] = {}
    seen_prices: set[str] = set()
    keys: dict[str, int] = {}
    for index, (price, key) in enumerate(lines):
        where = f"prices[{index}]"
        if price.id in seen_prices:
            errors[where] = f"The price {price.id} is listed twice."
        seen_prices.add(price.id)
        if key is not None and not _PLAN_LINE_KEY.match(key):
            errors[f"{where}.key"] = (
                "A key starts with a lowercase letter or digit and has at most 64 of a-z, 0-9, _ and -."
            )
        if key:
            if key in keys:
                errors[f"{where}.key"] = f"The key “{key}” is used twice in this plan."
            keys[key] = index
    if errors:
        raise ValidationError(errors)

    locked = {p.pk: p for p in Price.objects.select_for_update().filter(pk__in=[p.pk for p, _ in lines]).order_by("pk")}
    for index, (given, _) in enumerate(lines):
        price = locked[given.pk]
        if price.customer_id:
            errors[f"prices[{index}]"] = "A negotiated rate cannot be attached to a plan as a plan price."
        elif price.plan_id and price.plan_id != plan.pk:
            raise CatalogConflict(
                f"The price {price.id} belongs to the plan {price.plan_id}; create a new price for this plan.",
                code="PRICE_ATTACHED_TO_OTHER_PLAN",
                details={"priceId": price.id, "planId": price.plan_id},
            )
    if errors:
        raise ValidationError(errors)

    keep = {price.pk for price, _ in lines}
    detached = plan.prices.filter(customer__isnull=True).exclude(pk__in=keep)
    if Price.objects.filter(overrides__in=detached).exists():
        raise CatalogConflict(
            "A price you are removing has negotiated customer rates; remove those rates first.",
            code="PRICE_HAS_NEGOTIATED_RATES",
        )
    for price in detached:  # one save per price keeps its change history
        price.plan, price.plan_line_key = None, ""
        price.save(update_fields=["plan", "plan_line_key", "updated_at"])

    used_keys = {key for _, key in lines if key}
    used_keys |= {locked[p.pk].plan_line_key for p, key in lines if not key and locked[p.pk].plan_id == plan.pk}
    for index, (given, key) in enumerate(lines):
        price = locked[given.pk]
        if not key:
            if price.plan_id == plan.pk and price.plan_line_key:
                key = price.plan_line_key
            else:
                key = _free_line_key(price, used_keys)
                used_keys.add(key)
        price.plan = plan
        price.plan_line_key = key
        try:
            price.full_clean()
        except ValidationError as exc:
            messages = [m for field_messages in exc.message_dict.values() for m in field_messages]
            errors[f"prices[{index}]"] = " ".join(messages)
    if errors:
        raise ValidationError(errors)
    for price in locked.values():
        price.save(update_fields=["plan", "plan_line_key", "updated_at"])


def _free_line_key(price: Price, used: set[str]) -> str:
    base = (slugify(price.invoice_display_name).replace("-", "_") or "line")[:56]
    if not base[0].isalnum():
        base = "line_" + base
    key, n = base, 2
    while key in used:
        key, n = f"{base}_{n}", n + 1
    return key


@transaction.atomic
def plan_create(
    *,
    merchant: Merchant,
    product: Product,
    name: str,
    currency: str,
    lines: list[tuple[Price, str | None]] | None = None,
    now: datetime,
    **fields: Any,
) -> Plan:
    """Create a plan and attach the given unattached prices to it as its lines (``(price, key)`` pairs).

    A price of another plan raises CatalogConflict; a price of another product a ValidationError
    naming ``prices[i]``.
    """
    unknown = set(fields) - PLAN_FIELDS
    if unknown:
        raise TypeError(f"Unknown plan fields: {sorted(unknown)}")
    plan = Plan(merchant=merchant, product=product, name=name, currency=currency, **fields)
    plan.full_clean()
    _plan_check_anchor(plan, now)
    plan.save()
    if lines:
        _plan_attach(plan, lines)
    _version_add(plan, based_on=None, created_by="", now=now)
    return plan


@transaction.atomic
def plan_update(
    *,
    plan: Plan,
    changes: dict[str, Any],
    lines: list[tuple[Price, str | None]] | None = None,
    now: datetime,
) -> Plan:
    """Change a plan; ``lines`` (when given) replaces its set of prices.

    While subscriptions bill the plan, its cadence, anchor and price set are fixed (CatalogConflict
    PLAN_IN_USE): what a running period charges must not change under it.
    """
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    changed = _apply(plan, {k: v for k, v in changes.items() if k in PLAN_FIELDS})
    touches_billing = [f for f in changed if f in PLAN_BILLING_FIELDS]
    if lines is not None:
        current = set(plan.prices.filter(customer__isnull=True).values_list("pk", flat=True))
        if current != {price.pk for price, _ in lines}:
            touches_billing.append("prices")
    conflict = plan_update_conflict(plan=plan, changed=touches_billing)
    if conflict is not None:
        raise conflict
    plan.full_clean()
    if "billing_anchor" in changed:
        _plan_check_anchor(plan, now)
    plan.save()
    if lines is not None:
        _plan_attach(plan, lines)
        if "prices" in touches_billing:  # no subscription bills it (else PLAN_IN_USE): a new version
            _version_add(plan, based_on=plan.default_version, created_by="", now=now)
    return plan


def plan_update_conflict(*, plan: Plan, changed: Iterable[str]) -> CatalogConflict | None:
    """The PLAN_IN_USE conflict ``plan_update`` raises when ``changed`` fields of ``plan`` change, or None.

    ``changed`` names model fields, plus ``prices`` when the plan's set of (non-negotiated) prices
    changes. While subscriptions bill the plan its cadence, anchor and price set are fixed. The admin
    asks this before it saves, to put the refusal on the form.
    """
    touches_billing = [field for field in changed if field in PLAN_BILLING_FIELDS or field == "prices"]
    if not touches_billing:
        return None
    count = plan_live_subscription_count(plan=plan)
    if not count:
        return None
    fields = [_camel(f) for f in touches_billing]
    return CatalogConflict(
        f"{count} subscription(s) bill this plan; its {', '.join(fields)} cannot change. Create a new plan instead.",
        code="PLAN_IN_USE",
        details={"planId": plan.id, "fields": fields, "subscriptionCount": count},
    )


# Plan versions


@dataclass(frozen=True)
class VersionLine:
    """One line of a version to mint: a price id, with the key naming its line (None: a generated key)."""

    price_id: str
    key: str | None = None


def _version_add(plan: Plan, *, based_on: PlanVersion | None, created_by: str, now: datetime) -> PlanVersion:
    """Record the plan's attached lines as its next version and make it the default (the plan row is locked
    or new). ``Price.plan`` then keeps meaning "a line of the default version" for every reader of it."""
    last = PlanVersion.objects.filter(plan=plan).order_by("-number").values_list("number", flat=True).first()
    version = PlanVersion.objects.create(
        plan=plan,
        number=(last or 0) + 1,
        based_on=based_on,
        created_by=created_by,
        created_at=now,
        published_at=now,
        updated_at=now,
    )
    PlanVersionPrice.objects.bulk_create(
        PlanVersionPrice(version=version, price_id=pk, key=key)
        for pk, key in plan.prices.filter(customer__isnull=True).values_list("pk", "plan_line_key")
    )
    _default_set(plan, version, now)
    return version


def _default_set(plan: Plan, version: PlanVersion, now: datetime) -> None:
    PlanDefaultChange.objects.create(plan=plan, version=version, effective_at=now)
    plan.previous_default_version_id, plan.previous_default_since = plan.default_version_id, plan.default_version_since
    plan.default_version, plan.default_version_since = version, now
    plan.save(
        update_fields=[
            "default_version",
            "default_version_since",
            "previous_default_version",
            "previous_default_since",
            "updated_at",
        ]
    )


@transaction.atomic
def plan_version_mint(
    *,
    plan: Plan,
    lines: list[VersionLine],
    based_on_version_id: str | None = None,
    created_by: str = "",
    now: datetime,
) -> PlanVersion:
    """Mint the plan's next version from the complete price set it holds, and make it the default.

    The change against the current default follows from the keys: a key on both sides with another price
    replaces that line, a key only in ``lines`` adds one, a key the default holds and ``lines`` omits is
    removed; a line without a key gets a generated one (never matched by price). A ``based_on_version_id``
    that is no longer the default raises CatalogConflict VERSION_STALE. Floating subscriptions bill from the
    new version from their next period (``catalog.selectors.subscription_version_at``); pinned ones stay.
    """
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    current = plan.default_version
    if based_on_version_id is not None and (current is None or current.pk != based_on_version_id):
        raise CatalogConflict(
            "The plan has moved on since that version was read: read its current version and build the set again.",
            code="VERSION_STALE",
            details={"basedOnVersionId": based_on_version_id, "currentVersionId": current.pk if current else None},
        )
    if not lines:
        raise ValidationError({"prices": "A version must carry at least one price."})
    current_keys = set(current.lines.values_list("key", flat=True)) if current else set()
    prices = {p.pk: p for p in Price.objects.filter(merchant_id=plan.merchant_id, pk__in=[x.price_id for x in lines])}
    errors: dict[str, str] = {}
    for index, line in enumerate(lines):
        if line.price_id not in prices:
            errors[f"prices[{index}].priceId"] = f"No price with id {line.price_id!r}."
        if line.key is not None and line.key not in current_keys and not _PLAN_LINE_KEY.match(line.key):
            errors[f"prices[{index}].key"] = (
                "A new key starts with a lowercase letter or digit and has at most 64 of a-z, 0-9, _ and -."
            )
    if errors:
        raise ValidationError(errors)
    other_plans = (
        PlanVersionPrice.objects.filter(price_id__in=list(prices))
        .exclude(version__plan=plan)
        .values_list("price_id", flat=True)
    )
    for price_id in other_plans[:1]:
        raise CatalogConflict(
            f"The price {price_id} is billed by another plan's version; create a new price for this plan.",
            code="PRICE_ATTACHED_TO_OTHER_PLAN",
            details={"priceId": price_id},
        )
    used = {line.key for line in lines if line.key}
    keyed: list[tuple[Price, str | None]] = []
    for line in lines:
        key = line.key
        if not key:
            key = _free_line_key(prices[line.price_id], used | current_keys)
            used.add(key)
        keyed.append((prices[line.price_id], key))
    _plan_attach(plan, keyed)
    return _version_add(plan, based_on=current, created_by=created_by, now=now)


@transaction.atomic
def plan_version_make_default(*, version: PlanVersion, now: datetime) -> PlanVersion:
    """Point the plan's default at ``version`` (either direction: a roll-back or forward). Idempotent.

    Floating subscriptions bill from it from their next period; periods already started keep theirs."""
    plan = Plan.objects.select_for_update().get(pk=version.plan_id)
    version = PlanVersion.objects.select_for_update().get(pk=version.pk)
    if plan.default_version_id == version.pk:
        return version
    if version.status != PlanVersionStatus.PUBLISHED:
        raise CatalogConflict("An archived version cannot become the default.", code="VERSION_ARCHIVED")
    _plan_attach(plan, [(line.price, line.key) for line in version.lines.select_related("price").order_by("key")])
    _default_set(plan, version, now)
    version.updated_at = now
    version.save(update_fields=["updated_at"])
    return version


# Fields a price copied into a new version does not take over from the price it replaces.
_PRICE_COPY_EXCLUDED = {"id", "merchant", "plan", "plan_line_key", "customer", "overrides", "created_at", "updated_at"}


@transaction.atomic
def price_save_as_new_version(
    *,
    price: Price,
    changes: dict[str, Any],
    tiers: list[TierRow] | None = None,
    rates: list[RateRow] | None = None,
    created_by: str = "",
    now: datetime,
) -> tuple[Price, PlanVersion]:
    """Change a plan price that live subscriptions bill without re-pricing a running period: a copy of
    ``price`` with ``changes`` (and ``tiers``/``rates`` when given) replaces it on its line in a new plan
    version (``plan_version_mint``). ``price`` itself stays as it is, billed by the versions that hold it."""
    price = Price.objects.select_related("plan").get(pk=price.pk)
    plan = price.plan
    if plan is None or price.customer_id is not None:
        raise ValidationError("Only a price on a plan's lines can be saved as a new plan version.")
    old_tiers, old_rates = _price_schedule(price)
    fields = {
        field.name: getattr(price, field.name)
        for field in Price._meta.concrete_fields
        if field.name not in _PRICE_COPY_EXCLUDED
    }
    fields.update({k: v for k, v in changes.items() if k not in _PRICE_COPY_EXCLUDED and v is not UNCHANGED})
    copy = price_create(
        merchant=price.merchant,
        fields=fields,
        tiers=old_tiers if tiers is None else tiers,
        rates=old_rates if rates is None else rates,
    )
    current = plan.default_version
    if current is not None:
        held = list(current.lines.order_by("key").values_list("price_id", "key"))
    else:  # a plan from before versions were recorded
        held = list(plan.prices.filter(customer__isnull=True).values_list("pk", "plan_line_key"))
    lines = [VersionLine(copy.pk if pk == price.pk else pk, key or None) for pk, key in held]
    version = plan_version_mint(
        plan=plan,
        lines=lines,
        based_on_version_id=current.pk if current is not None else None,
        created_by=created_by,
        now=now,
    )
    return copy, version


# Customers

CUSTOMER_FIELDS = {
    "name",
    "email",
    "billing_emails",
    "phone",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "tax_id",
    "tax_rate",
    "external_id",
    "currency",
    "time_zone",
    "credit_before_payment",
}


@transaction.atomic
def customer_create(*, merchant: Merchant, name: str, email: str, **fields: Any) -> tuple[Customer, bool]:
    """Create a customer, or return the existing one and False.

    The same customer is one with the same ``external_id`` in the merchant; without an external id,
    one with the same e-mail address (ignoring case) and no external id. Creation is serialised per
    merchant (row lock), so two concurrent creates of the same customer make one row.
    """
    unknown = set(fields) - CUSTOMER_FIELDS
    if unknown:
        raise TypeError(f"Unknown customer fields: {sorted(unknown)}")
    Merchant.objects.select_for_update().filter(pk=merchant.pk).first()
    external_id = fields.get("external_id") or None
    existing = Customer.objects.filter(merchant=merchant)
    if external_id:
        existing = existing.filter(external_id=external_id)
    else:
        existing = existing.filter(email__iexact=email, external_id__isnull=True)
    found = existing.order_by("created_at").first()
    if found is not None:
        return found, False
    customer = Customer(merchant=merchant, name=name, email=email, **fields)
    customer.full_clean()
    customer.save()
    return customer, True


@transaction.atomic
def customer_update(*, customer: Customer, changes: dict[str, Any]) -> Customer:
    """Change a customer's contact, tax and identity fields."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    _apply(customer, {k: v for k, v in changes.items() if k in CUSTOMER_FIELDS})
    if (
        customer.external_id
        and Customer.objects.filter(merchant_id=customer.merchant_id, external_id=customer.external_id)
        .exclude(pk=customer.pk)
        .exists()
    ):
        raise ValidationError({"external_id": "Another customer of this merchant has this external ID."})
    customer.full_clean()
    customer.save()
    return customer


@transaction.atomic
def customer_delete(*, customer: Customer) -> None:
    """Delete a customer without subscriptions; otherwise raise CatalogConflict listing them.

    The customer row is locked first (FOR UPDATE): usage events have no database foreign key
    (metering migration 0004), and event ingestion locks the customers it stores events for (FOR KEY
    SHARE), so an event stored concurrently either commits before the PROTECT check sees it, or waits
    and then finds no customer."""
    list(Customer.objects.select_for_update().filter(pk=customer.pk).values_list("pk", flat=True))
    subscriptions = list(customer.subscriptions.order_by("-started_at").values("id", "status"))
    _delete_or_conflict(customer, "customer", [_blocker("subscriptions", subscriptions[:10], len(subscriptions))])


# Features


FEATURE_FIELDS = {"key", "name", "type", "metadata", "billable_metric"}


def _feature_save(feature: Feature) -> Feature:
    # The key is unique per product: say so on the field, not as a non-field error of the constraint.
    clash = Feature.objects.filter(product_id=feature.product_id, key=feature.key).exclude(pk=feature.pk)
    if feature.key and clash.exists():
        raise ValidationError({"key": [f"The product already has a feature with key “{feature.key}”."]})
    feature.full_clean()
    feature.save()
    return feature


@transaction.atomic
def feature_create(
    *,
    merchant: Merchant,
    product: Product,
    key: str,
    name: str,
    type: str = "boolean",
    metadata: dict | None = None,
    billable_metric: BillableMetric | None = None,
) -> Feature:
    """Create a feature of ``product`` (``key`` unique within the product)."""
    feature = Feature(
        merchant=merchant,
        product=product,
        key=key,
        name=name,
        type=type,
        metadata=metadata or {},
        billable_metric=billable_metric,
    )
    return _feature_save(feature)


@transaction.atomic
def feature_update(*, feature: Feature, changes: dict[str, Any]) -> Feature:
    """Change ``key``, ``name``, ``type``, ``metadata`` or ``billable_metric`` of a feature."""
    _apply(feature, {k: v for k, v in changes.items() if k in FEATURE_FIELDS})
    return _feature_save(feature)


@transaction.atomic
def feature_delete(*, feature: Feature) -> None:
    """Delete a feature no entitlement refers to (otherwise CatalogConflict)."""
    _delete_or_conflict(feature, "feature", [])

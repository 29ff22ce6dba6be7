"""Entitlements and grants: services (writes) and selectors (reads). See wallets/ENTITLEMENTS.md.

A metered entitlement's balance is computed when read, never stored:
``granted`` = ``issue_after_reset`` (the per-period allowance, if any) + the amounts of the grants active
at ``at`` (effective, not expired, not voided); ``usage`` = the feature's billable metric aggregated
over the current usage period up to ``at`` (one SQL query, ``metering.selectors.usage_aggregate``);
``balance = granted − usage``, ``overage = max(0, usage − granted)``,
``has_access = is_soft_limit or balance > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from catalog.durations import Duration, add_duration, parse_duration
from catalog.models import Customer, Feature, FeatureType, Merchant, Subscription
from metering.selectors import usage_aggregate

from .models import Entitlement, EntitlementGrant, GrantPurchase

ZERO = Decimal(0)
# The client's default for direct and purchased grants: "effectively unlimited".
UNLIMITED_ROLLOVER = Decimal("999999999999")


class EntitlementConflict(Exception):
    """A write refused by the current state (answered 409 with ``code``)."""

    def __init__(self, message: str, *, code: str, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


# -- ISO 8601 usage periods -------------------------------------------------------------------------


def parse_interval(text: str) -> Duration:
    """A usage period's ISO 8601 duration (``P1M``, ``P7D``, ``PT1H``), one minute to 100 years."""
    try:
        interval = parse_duration(text)
    except ValueError:
        raise ValueError("Give an ISO 8601 duration such as P1M, P1W, P7D or PT1H.") from None
    if interval.months == 0 and interval.exact < timedelta(minutes=1):
        raise ValueError("The usage period must be at least one minute long.")
    if interval.months > 1200 or interval.exact > timedelta(days=36600):
        raise ValueError("The usage period must be at most 100 years long.")
    return interval


def usage_period_at(*, anchor: datetime, interval: Duration, at: datetime) -> tuple[datetime, datetime]:
    """The half-open period [start, end) of the series anchored at ``anchor`` that contains ``at``."""
    if interval.months:
        count = ((at.year - anchor.year) * 12 + at.month - anchor.month) // interval.months
    else:
        count = int((at - anchor) // interval.exact)
    while add_duration(anchor, interval, count) > at:
        count -= 1
    while add_duration(anchor, interval, count + 1) <= at:
        count += 1
    return add_duration(anchor, interval, count), add_duration(anchor, interval, count + 1)


# -- selectors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntitlementState:
    status: str  # active | expired
    has_access: bool
    balance: Decimal | None = None
    usage_in_period: Decimal | None = None
    overage: Decimal | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


def active_grants(entitlement: Entitlement, *, at: datetime) -> QuerySet[EntitlementGrant]:
    """Grants that count at ``at``: effective, not expired, not voided (by then)."""
    return entitlement.grants.filter(
        Q(effective_at__lte=at),
        Q(expires_at__isnull=True) | Q(expires_at__gt=at),
        Q(voided_at__isnull=True) | Q(voided_at__gt=at),
    )


def entitlement_state(entitlement: Entitlement, *, at: datetime) -> EntitlementState:
    """Status, access and (metered) balance of an entitlement at ``at``."""
    expired = entitlement.active_to is not None and entitlement.active_to <= at
    in_force = entitlement.active_from <= at and not expired
    status = "expired" if expired else "active"
    feature = entitlement.feature
    if feature.type != FeatureType.METERED:
        return EntitlementState(status=status, has_access=in_force)
    if entitlement.usage_period:
        anchor = entitlement.usage_period_anchor or entitlement.active_from
        start, end = usage_period_at(anchor=anchor, interval=parse_interval(entitlement.usage_period), at=at)
    else:
        start, end = entitlement.active_from, entitlement.active_to
    window_start = max(start, entitlement.active_from)
    window_end = min(x for x in (end, entitlement.active_to, at) if x is not None)
    usage = ZERO
    if feature.billable_metric_id and window_end > window_start:
        usage = usage_aggregate(
            metric=feature.billable_metric, customer=entitlement.customer, start=window_start, end=window_end
        )
    granted = sum((g.amount for g in active_grants(entitlement, at=at)), entitlement.issue_after_reset or ZERO)
    balance = granted - usage
    return EntitlementState(
        status=status,
        has_access=in_force and (entitlement.is_soft_limit or balance > 0),
        balance=balance,
        usage_in_period=usage,
        overage=max(ZERO, usage - granted),
        period_start=start,
        period_end=end,
    )


def entitlement_list(
    *,
    merchant: Merchant,
    customer: Customer | None = None,
    product_id: str | None = None,
    feature_key: str | None = None,
    subscription_id: str | None = None,
) -> QuerySet[Entitlement]:
    entitlements = Entitlement.objects.filter(merchant=merchant).select_related(
        "feature", "feature__billable_metric", "customer"
    )
    if customer is not None:
        entitlements = entitlements.filter(customer=customer)
    if product_id is not None:
        entitlements = entitlements.filter(feature__product_id=product_id)
    if feature_key is not None:
        entitlements = entitlements.filter(feature__key=feature_key)
    if subscription_id is not None:
        entitlements = entitlements.filter(subscription_id=subscription_id)
    return entitlements.order_by("created_at", "id")


def entitlement_get(*, merchant: Merchant, entitlement_id: str) -> Entitlement:
    """The merchant's entitlement; ``Entitlement.DoesNotExist`` for any other id."""
    return entitlement_list(merchant=merchant).get(pk=entitlement_id)


def grant_list(*, entitlement: Entitlement, include_voided: bool = False) -> QuerySet[EntitlementGrant]:
    grants = entitlement.grants.all()
    if not include_voided:
        grants = grants.filter(voided_at__isnull=True)
    return grants.order_by("created_at", "id")


def grant_get(*, entitlement: Entitlement, grant_id: str) -> EntitlementGrant:
    """A grant of ``entitlement``; ``EntitlementGrant.DoesNotExist`` otherwise."""
    return entitlement.grants.get(pk=grant_id)


# -- services ----------------------------------------------------------------------------------------


def entitlement_issue(
    *,
    merchant: Merchant,
    customer: Customer,
    feature: Feature,
    template: dict,
    now: datetime,
    active_from: datetime | None = None,
    active_to: datetime | None = None,
    subscription: Subscription | None = None,
    metadata: dict | None = None,
) -> Entitlement:
    """Give ``customer`` access to ``feature`` per ``template`` (``{type, config?, usagePeriod?, isSoftLimit?,
    issueAfterReset?}``; its ``type`` must be the feature's). One entitlement per customer and feature may
    be in force: issuing a second one while the first has not ended raises ``EntitlementConflict``."""
    active_from = active_from or now
    errors: dict[str, list[str]] = {}
    if template.get("type") != feature.type:
        errors["template.type"] = [f"The feature {feature.key} is {feature.type}; the template must be too."]
    if active_to is not None and active_to <= active_from:
        errors["activeTo"] = ["activeTo must be after activeFrom."]
    if subscription is not None and subscription.customer_id != customer.pk:
        errors["subscriptionId"] = ["The subscription belongs to another customer."]
    usage_period = template.get("usagePeriod") or {}
    if usage_period:
        try:
            parse_interval(usage_period.get("interval"))
        except ValueError as exc:
            errors["template.usagePeriod.interval"] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer.pk).first()  # serialises issues per customer
        live = Entitlement.objects.filter(customer=customer, feature=feature).filter(
            Q(active_to__isnull=True) | Q(active_to__gt=now)
        )
        existing = live.first()
        if existing is not None:
            raise EntitlementConflict(
                f"{customer.pk} already has an entitlement to {feature.key} in force.",
                code="ENTITLEMENT_EXISTS",
                details={"entitlementId": existing.pk},
            )
        return Entitlement.objects.create(
            merchant=merchant,
            customer=customer,
            feature=feature,
            subscription=subscription,
            active_from=active_from,
            active_to=active_to,
            metadata=metadata or {},
            config=template.get("config") if feature.type == FeatureType.STATIC else None,
            is_soft_limit=bool(template.get("isSoftLimit", False)),
            usage_period=usage_period.get("interval", ""),
            usage_period_anchor=usage_period.get("anchor"),
            issue_after_reset=template.get("issueAfterReset"),
            template={k: str(v) if isinstance(v, (Decimal, datetime)) else v for k, v in template.items()},
        )


def _require_metered(entitlement: Entitlement) -> None:
    if entitlement.feature.type != FeatureType.METERED:
        raise EntitlementConflict(
            f"Grants add credits to metered entitlements; {entitlement.pk} is {entitlement.feature.type}.",
            code="ENTITLEMENT_NOT_METERED",
        )


def _same_grant(grant: EntitlementGrant, amount: Decimal) -> EntitlementGrant:
    if grant.amount != amount:
        raise EntitlementConflict(
            "This idempotency key was used for a grant of another amount.",
            code="IDEMPOTENCY_KEY_REUSED",
            details={"grantId": grant.pk},
        )
    return grant


def entitlement_grant_create(
    *,
    entitlement: Entitlement,
    amount: Decimal,
    idempotency_key: str,
    now: datetime,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    priority: int | None = None,
    reset_max_rollover: Decimal | None = None,
    reset_min_rollover: Decimal | None = None,
) -> tuple[EntitlementGrant, bool]:
    """Add ``amount`` credits to a metered entitlement. Returns (grant, created); a replay of
    ``idempotency_key`` on the same entitlement returns the first grant (a different amount: conflict)."""
    _require_metered(entitlement)
    effective_at = effective_at or now
    if expires_at is not None and expires_at <= effective_at:
        raise ValidationError({"expiresAt": ["expiresAt must be after effectiveAt."]})
    with transaction.atomic():
        Entitlement.objects.select_for_update().filter(pk=entitlement.pk).first()
        existing = entitlement.grants.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_grant(existing, amount), False
        try:
            with transaction.atomic():
                grant = EntitlementGrant.objects.create(
                    entitlement=entitlement,
                    amount=amount,
                    idempotency_key=idempotency_key,
                    priority=1 if priority is None else priority,
                    effective_at=effective_at,
                    expires_at=expires_at,
                    reset_max_rollover=UNLIMITED_ROLLOVER if reset_max_rollover is None else reset_max_rollover,
                    reset_min_rollover=reset_min_rollover,
                )
        except IntegrityError:  # a concurrent replay won the unique key
            return _same_grant(entitlement.grants.get(idempotency_key=idempotency_key), amount), False
    return grant, True


def entitlement_grant_void(*, grant: EntitlementGrant, now: datetime) -> EntitlementGrant:
    """Void a grant (it stops counting from ``now``); voiding a voided grant changes nothing."""
    with transaction.atomic():
        grant = EntitlementGrant.objects.select_for_update().get(pk=grant.pk)
        if grant.voided_at is None:
            grant.voided_at = now
            grant.save(update_fields=["voided_at"])
    return grant


def grant_purchase_find(*, entitlement: Entitlement, idempotency_key: str) -> GrantPurchase | None:
    return entitlement.purchases.filter(idempotency_key=idempotency_key).first()


def grant_purchase_record(
    *,
    entitlement: Entitlement,
    idempotency_key: str,
    invoice_ref: str,
    amount: Decimal,
    price: Decimal,
    currency: str,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    payment_expires_at: datetime | None = None,
    reset_max_rollover: Decimal | None = None,
    reset_min_rollover: Decimal | None = None,
) -> GrantPurchase:
    """Record a pending grant purchase billed on invoice ``invoice_ref``; called by invoicing inside the
    transaction that writes the invoice (the caller holds the entitlement's row lock)."""
    _require_metered(entitlement)
    return GrantPurchase.objects.create(
        entitlement=entitlement,
        idempotency_key=idempotency_key,
        invoice_ref=invoice_ref,
        amount=amount,
        price=price,
        currency=currency,
        effective_at=effective_at,
        expires_at=expires_at,
        payment_expires_at=payment_expires_at,
        reset_max_rollover=reset_max_rollover,
        reset_min_rollover=reset_min_rollover,
    )


def grant_purchase_fulfil(*, invoice_ref: str, now: datetime) -> EntitlementGrant | None:
    """The invoice ``invoice_ref`` was paid: create the grant its purchase bought (once), effective at
    the purchase's ``effective_at`` or ``now``. None when no grant purchase is billed on that invoice."""
    with transaction.atomic():
        purchase = (
            GrantPurchase.objects.select_for_update().select_related("entitlement").filter(invoice_ref=invoice_ref)
        ).first()
        if purchase is None:
            return None
        if purchase.grant_id is not None:
            return purchase.grant
        effective_at = purchase.effective_at or now
        if purchase.expires_at is not None and purchase.expires_at <= effective_at:
            # Paid after the credits' expiry: record the grant as bought (it never counts again).
            effective_at = purchase.created_at
        grant, _ = entitlement_grant_create(
            entitlement=purchase.entitlement,
            amount=purchase.amount,
            idempotency_key=f"purchase:{purchase.idempotency_key}",
            now=now,
            effective_at=effective_at,
            expires_at=purchase.expires_at,
            reset_max_rollover=purchase.reset_max_rollover,
            reset_min_rollover=purchase.reset_min_rollover,
        )
        purchase.grant = grant
        purchase.save(update_fields=["grant"])
    return grant

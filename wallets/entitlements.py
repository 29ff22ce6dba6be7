"""Entitlements and grants: services (writes) and selectors (reads). See wallets/ENTITLEMENTS.md.

A metered entitlement's balance is computed when read, never stored: the feature's billable metric is
aggregated in SQL over every phase of every usage period the walk needs, all in one query
(``metering.selectors.usage_aggregate_windows``), and ``wallets.burndown`` burns the allowance and the grants down period by period in Python, with rollover
at each reset. ``balance`` = credits left − overage, ``has_access = is_soft_limit or balance > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from catalog.models import Customer, Feature, FeatureType, Merchant, Subscription
from core.durations import Duration, add_duration, parse_duration
from metering.selectors import usage_aggregate_windows

from .burndown import (
    ALLOWANCE,
    MAX_PERIODS,
    Allowance,
    BurnDown,
    GrantTerms,
    PeriodResult,
    PeriodUsage,
    SourceBalance,
    TooManyPeriods,
    burn_down,
    checkpoints,
    period_index,
    walk_start,
)
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
    count = period_index(anchor=anchor, interval=interval, moment=at)
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
    granted: Decimal | None = None  # credits the current period had (after its reset, plus grants started in it)
    grants: dict[str, SourceBalance] = field(default_factory=dict)  # grant id → its account
    allowance: SourceBalance | None = None
    periods: tuple[PeriodResult, ...] = ()  # every usage period walked, oldest first


def grant_terms(grant: EntitlementGrant) -> GrantTerms:
    return GrantTerms(
        key=grant.pk,
        amount=grant.amount,
        effective_at=grant.effective_at,
        created_at=grant.created_at,
        priority=grant.priority,
        expires_at=grant.expires_at,
        voided_at=grant.voided_at,
        max_rollover=grant.reset_max_rollover,
        min_rollover=grant.reset_min_rollover or ZERO,
    )


def entitlement_allowance(entitlement: Entitlement) -> Allowance | None:
    if not entitlement.issue_after_reset:
        return None
    return Allowance(
        amount=entitlement.issue_after_reset,
        priority=entitlement.issue_after_reset_priority,
        max_rollover=entitlement.reset_max_rollover or ZERO,
        min_rollover=entitlement.reset_min_rollover or ZERO,
    )


def _walked_windows(
    entitlement: Entitlement, *, until: datetime, grants: list[GrantTerms], allowance: Allowance | None
) -> list[tuple[datetime, datetime, bool]]:
    """The usage windows [start, end) to walk up to ``until`` (oldest first) and whether each opens with a
    reset. History before the current period is walked only as far back as it can change today's balances."""
    active_from = entitlement.active_from
    if until <= active_from:
        return [(until, until, False)]
    if not entitlement.usage_period:
        return [(active_from, until, False)]
    interval = parse_interval(entitlement.usage_period)
    anchor = entitlement.usage_period_anchor or active_from

    def index(moment: datetime) -> int:
        return period_index(anchor=anchor, interval=interval, moment=moment)

    def period_start(moment: datetime) -> datetime:
        return max(add_duration(anchor, interval, index(moment)), active_from)

    current = index(until)
    carries = entitlement.preserve_overage_at_reset or (
        allowance is not None and (allowance.max_rollover > 0 or allowance.min_rollover > 0)
    )
    if carries:
        first = active_from
    else:
        first = period_start(until)
        while True:  # back to the period of every grant in force when the walk starts
            earlier = period_start(walk_start(grants=grants, current_start=first))
            if earlier == first:
                break
            first = earlier
    first_index = index(max(first, active_from))
    if current - first_index + 1 > MAX_PERIODS:
        raise TooManyPeriods(
            f"The balance would be computed over {current - first_index + 1} usage periods of "
            f"{entitlement.usage_period}; at most {MAX_PERIODS} are walked. Ask for an earlier `at`, or end "
            f"old grants (expire or void them)."
        )
    windows = []
    for number in range(first_index, current + 1):
        start = max(add_duration(anchor, interval, number), active_from)
        end = min(add_duration(anchor, interval, number + 1), until)
        windows.append((start, end, number > first_index))
    return windows


def entitlement_burn_down(entitlement: Entitlement, *, until: datetime) -> BurnDown:
    """Burn the allowance and the grants down over every usage period that matters, up to ``until``: one
    query for the grants and one for the usage of every phase (a period, cut where grants start or end)."""
    feature = entitlement.feature
    # .all(), filtered here: lists and admin pages prefetch the grants (one query for every row).
    grants = [grant_terms(g) for g in entitlement.grants.all() if g.effective_at <= until]
    allowance = entitlement_allowance(entitlement)
    walked = [
        (start, end, resets, checkpoints(start=start, end=end, grants=grants))
        for start, end, resets in _walked_windows(entitlement, until=until, grants=grants, allowance=allowance)
    ]
    # Every period-to-date value the walk needs, in one query (per 400 windows).
    windows = [(start, moment) for start, _, _, moments in walked for moment in moments]
    usages = (
        usage_aggregate_windows(metric=feature.billable_metric, customer=entitlement.customer, windows=windows)
        if feature.billable_metric_id
        else [ZERO] * len(windows)
    )
    periods, position = [], 0
    for start, end, resets, moments in walked:
        to_date = tuple(zip(moments, usages[position : position + len(moments)], strict=True))
        position += len(moments)
        periods.append(PeriodUsage(start=start, end=end, resets=resets, to_date=to_date))
    return burn_down(
        periods=periods, grants=grants, allowance=allowance, preserve_overage=entitlement.preserve_overage_at_reset
    )


def entitlement_state(entitlement: Entitlement, *, at: datetime) -> EntitlementState:
    """Status, access and (metered) balance of an entitlement at ``at``; an ended entitlement keeps the
    balance it had at ``activeTo``. Raises ``TooManyPeriods`` when the walk is too long to compute."""
    expired = entitlement.active_to is not None and entitlement.active_to <= at
    in_force = entitlement.active_from <= at and not expired
    status = "expired" if expired else "active"
    if entitlement.feature.type != FeatureType.METERED:
        return EntitlementState(status=status, has_access=in_force)
    if entitlement.usage_period:
        anchor = entitlement.usage_period_anchor or entitlement.active_from
        start, end = usage_period_at(anchor=anchor, interval=parse_interval(entitlement.usage_period), at=at)
    else:
        start, end = entitlement.active_from, entitlement.active_to
    until = at if entitlement.active_to is None else min(at, entitlement.active_to)
    burn = entitlement_burn_down(entitlement, until=until)
    last = burn.periods[-1]
    same_period = last.start == max(start, entitlement.active_from) or not entitlement.usage_period
    balance = burn.balance
    return EntitlementState(
        status=status,
        has_access=in_force and (entitlement.is_soft_limit or balance > 0),
        balance=balance,
        usage_in_period=last.usage if same_period else ZERO,
        overage=burn.overage,
        period_start=start,
        period_end=end,
        granted=last.granted,
        grants={key: account for key, account in burn.sources.items() if key != ALLOWANCE},
        allowance=burn.sources.get(ALLOWANCE),
        periods=tuple(burn.periods),
    )


def entitlement_list(
    *,
    merchant: Merchant,
    customer: Customer | None = None,
    product_id: str | None = None,
    feature_key: str | None = None,
    subscription_id: str | None = None,
) -> QuerySet[Entitlement]:
    entitlements = (
        Entitlement.objects.filter(merchant=merchant)
        .select_related("feature", "feature__billable_metric", "customer")
        .prefetch_related("grants")  # each metered row's balance reads them: one query for the page
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
    rollover_error = _rollover_error(template.get("resetMinRollover"), template.get("resetMaxRollover"))
    if rollover_error:
        errors["template.resetMinRollover"] = [rollover_error]
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
            issue_after_reset_priority=template.get("issueAfterResetPriority"),
            preserve_overage_at_reset=bool(template.get("preserveOverageAtReset", False)),
            reset_max_rollover=template.get("resetMaxRollover"),
            reset_min_rollover=template.get("resetMinRollover"),
            template=_jsonable(template),
        )


def _jsonable(value):
    """The template as JSON for the audit column: decimals and datetimes as text, at any depth (the
    usage period's anchor is a datetime inside ``usagePeriod``)."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rollover_error(minimum: Decimal | None, maximum: Decimal | None) -> str | None:
    if minimum is not None and maximum is not None and minimum > maximum:
        return f"resetMinRollover ({minimum}) must not be more than resetMaxRollover ({maximum})."
    return None


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
    rollover_error = _rollover_error(reset_min_rollover, reset_max_rollover)
    if rollover_error:
        raise ValidationError({"resetMinRollover": [rollover_error]})
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
                    priority=0 if priority is None else priority,
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


def grant_purchase_reinvoice(*, invoice_ref: str, new_invoice_ref: str) -> GrantPurchase | None:
    """The invoice ``invoice_ref`` a grant purchase is billed on was voided and reissued as ``new_invoice_ref``:
    the purchase now names the reissue, so paying the reissue creates the grant (once). None when no grant
    purchase is billed on ``invoice_ref``."""
    with transaction.atomic():
        purchase = GrantPurchase.objects.select_for_update().filter(invoice_ref=invoice_ref).first()
        if purchase is not None:
            purchase.invoice_ref = new_invoice_ref
            purchase.save(update_fields=["invoice_ref"])
    return purchase


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
        low, high = purchase.reset_min_rollover, purchase.reset_max_rollover
        if low is not None and high is not None and low > high:
            low = high  # a purchase recorded before the check: the maximum wins at resets either way
        grant, _ = entitlement_grant_create(
            entitlement=purchase.entitlement,
            amount=purchase.amount,
            idempotency_key=f"purchase:{purchase.idempotency_key}",
            now=now,
            effective_at=effective_at,
            expires_at=purchase.expires_at,
            reset_max_rollover=high,
            reset_min_rollover=low,
        )
        purchase.grant = grant
        purchase.save(update_fields=["grant"])
    return grant

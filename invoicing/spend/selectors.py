"""Spend reads: the accrued usage cost of a customer's (or one subscription's) current period, the alerts,
firings and cap of a customer, and the customers the sweep evaluates next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Q, QuerySet

from catalog.models import Customer, Subscription, SubscriptionStatus
from metering.models import UsageEvent

from ..models import LineKind, SpendAlert, SpendAlertFiring, SpendCap, SpendWatch
from ..selectors import invoice_preview

ZERO = Decimal(0)


@dataclass(frozen=True)
class AccruedSpend:
    """The usage cost accrued in the current period (the usage lines of the invoice that would close it now,
    before tax, what prepaid credit paid included), of the subscriptions summed; the period is the first
    subscription's (the one started first)."""

    currency: str
    period_start: datetime
    period_end: datetime
    amount: Decimal
    subscription_ids: tuple[str, ...]
    usage: dict[str, Decimal]  # metric id → the usage billed in the period (its unit)

    def measure(self, metric_id: str | None) -> Decimal:
        """What an alert watches: the usage cost, or with ``metric_id`` that metric's usage."""
        return self.amount if metric_id is None else self.usage.get(metric_id, ZERO)


def spend_accrued(
    *, customer: Customer, currency: str, now: datetime, subscription: Subscription | None = None
) -> AccruedSpend | None:
    """The accrued usage cost of ``subscription`` (else of every active subscription of the customer billed in
    ``currency``) for its current period, rated by the billing run's own composition (one usage query per
    metric of each subscription); None when no such subscription has a current period."""
    if subscription is not None:
        subscriptions = [subscription] if subscription.status == SubscriptionStatus.ACTIVE else []
    else:
        subscriptions = list(
            Subscription.objects.filter(customer=customer, status=SubscriptionStatus.ACTIVE)
            .select_related("plan")
            .order_by("started_at", "pk")
        )
    period: tuple[datetime, datetime] | None = None
    amount, counted = ZERO, []
    usage: dict[str, Decimal] = {}
    for sub in subscriptions:
        if sub.plan.currency != currency:
            continue
        composed = invoice_preview(subscription=sub, now=now)
        if composed is None:
            continue
        if period is None:
            period = (composed.period_start, composed.period_end)
        usage_lines = [line for line in composed.lines if line.kind == LineKind.USAGE]
        amount += sum((line.amount for line in usage_lines), ZERO)
        # A metric's usage: the quantity its price billed (the plan parts of a period add up); when two prices
        # of a plan bill one metric, each saw the same usage, so the larger is taken, not their sum.
        by_price: dict[tuple[str, str], Decimal] = {}
        for line in usage_lines:
            if line.price is not None and line.quantity is not None:
                key = (line.price.billable_metric_id, line.price.pk)
                by_price[key] = by_price.get(key, ZERO) + line.quantity
        per_metric: dict[str, Decimal] = {}
        for (metric_id, _), quantity in by_price.items():
            per_metric[metric_id] = max(per_metric.get(metric_id, ZERO), quantity)
        for metric_id, quantity in per_metric.items():
            usage[metric_id] = usage.get(metric_id, ZERO) + quantity
        counted.append(sub.pk)
    if period is None:
        return None
    return AccruedSpend(currency, period[0], period[1], amount, tuple(counted), usage)


def spend_customer_get(*, merchant, customer_id: str) -> Customer | None:
    """The merchant's customer (another merchant's is none)."""
    return Customer.objects.filter(merchant=merchant, pk=customer_id).first()


def spend_alert_list(*, customer: Customer) -> QuerySet[SpendAlert]:
    return SpendAlert.objects.filter(customer=customer).order_by("created_at", "id")


def spend_alert_firing_list(*, alert: SpendAlert) -> QuerySet[SpendAlertFiring]:
    return SpendAlertFiring.objects.filter(alert=alert).order_by("-fired_at", "-id")


def spend_cap_get(*, customer: Customer) -> SpendCap | None:
    return SpendCap.objects.filter(customer=customer).first()


def spend_cap_flagged_events(*, cap: SpendCap) -> int:
    """Events accepted over a flag-mode cap: the customer's events received in the cap's period since it was
    reached (and before it was lifted). One indexed count (the customer's events of the period)."""
    if cap.reached_at is None or cap.period_start is None:
        return 0
    events = UsageEvent.objects.filter(
        customer_id=cap.customer_id,
        timestamp__gte=cap.period_start,
        timestamp__lt=cap.period_end,
        received_at__gte=cap.reached_at,
    )
    if cap.lifted_at is not None:
        events = events.filter(received_at__lt=cap.lifted_at)
    return events.count()


def spend_watches_due(*, now: datetime, limit: int) -> list[str]:
    """The watched customers to evaluate now, never evaluated first, then the longest unevaluated: those
    whose events arrived since their last evaluation, and those refused by a cap whose period has ended
    (no event arrives to wake them). At most ``limit`` customer ids."""
    arrived = Exists(
        UsageEvent.objects.filter(customer_id=OuterRef("customer_id"), received_at__gte=OuterRef("evaluated_at"))
    )
    period_over = Q(customer__spend_blocked_since__isnull=False, customer__spend_cap__period_end__lte=now)
    return list(
        SpendWatch.objects.filter(Q(evaluated_at__isnull=True) | arrived | period_over)
        .order_by(F("evaluated_at").asc(nulls_first=True), "customer_id")
        .values_list("customer_id", flat=True)[:limit]
    )

"""Subscription lifecycle: start (with bounded catch-up), terminate, upgrade now, downgrade at period
end, and change terms (``subscription_update``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from catalog.models import SUBSCRIPTION_TERMS_FIELDS, Customer, Plan, Subscription, SubscriptionStatus
from wallets.services import wallet_lock

from ..calculation import (
    SUBSCRIPTION_RELATED,
    Biller,
    subscription_now,
    subscription_period_at,
    usage_window,
)
from ..models import (
    Invoice,
    InvoiceError,
    PlanChangeKind,
    SubscriptionPlanChange,
)
from ..thresholds import threshold_billed_lines
from ..webhook_events import subscription_created_emit, subscription_terminated_emit
from .catch_up import catch_up_enqueue, subscription_start_check_bounds
from .plan_versions import VERSION_FIELDS, subscription_version_policy_apply
from .runs import close_one_subscription, plan_change_apply, subscription_lock
from .settlement import plan_charged_from, with_prepaid
from .writer import invoice_from_composition, invoice_insert_or_skip


class SubscriptionChangeError(InvoiceError):
    """A refused subscription change; ``field`` is the wire field to blame (None: a state conflict)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class SubscriptionTerminatedError(SubscriptionChangeError):
    """The subscription is already terminated: nothing about it can change any more."""


def subscription_load(subscription: Subscription) -> Subscription:
    return Subscription.objects.select_related(*SUBSCRIPTION_RELATED).get(pk=subscription.pk)


def subscription_start(
    *,
    customer: Customer,
    plan: Plan,
    started_at: datetime,
    now: datetime,
    name: str = "",
    billing_anchor: datetime | None = None,
    trial_ends_at: datetime | None = None,
    ending_at: datetime | None = None,
    test_clock=None,
    extra_fields: dict | None = None,
) -> Subscription:
    """Start ``customer`` on ``plan`` (``started_at`` may be in the past: a backdated start).

    In-advance and one-off fees are invoiced at once (an opening invoice, issued immediately); a
    backdated start also closes the periods that already ended by ``now``: the oldest
    ``METERLINE_INLINE_CATCHUP_PERIODS`` at once, the rest by a background billing run (``catch_up``),
    which the returned subscription's ``catch_up`` (a ``CatchUp``, else None) names. The start must lie
    within the bounds of ``subscription_start_check_bounds`` (``TimeBoundError``). ``extra_fields`` sets
    other subscription fields before anything is billed (``tax_exempt``, ``payment_term_days``, ``metadata``…).
    """
    if plan.merchant_id != customer.merchant_id:
        raise InvoiceError("The plan and the customer belong to different merchants.")
    subscription_start_check_bounds(
        started_at=started_at, at=test_clock.current_time if test_clock is not None else now
    )
    with transaction.atomic():
        subscription = Subscription(
            merchant_id=plan.merchant_id,
            customer=customer,
            plan=plan,
            name=name or f"{customer.name} · {plan.name}",
            status=SubscriptionStatus.ACTIVE,
            started_at=started_at,
            billing_anchor=billing_anchor,
            trial_ends_at=trial_ends_at,
            ending_at=ending_at,
            test_clock=test_clock,
            **(extra_fields or {}),
        )
        if subscription.version_policy == "pinned":  # pinned to the version it starts on
            subscription.plan_version_id = plan.default_version_id
        subscription.full_clean()
        subscription.save()
        subscription_created_emit(subscription=subscription, now=now)
    subscription = subscription_load(subscription)
    sub_now = subscription_now(subscription, now)
    catch_up = None
    if started_at <= sub_now:
        _, deferred = close_one_subscription(
            subscription, now=now, trigger="subscription_start", max_periods=settings.METERLINE_INLINE_CATCHUP_PERIODS
        )
        if deferred:
            catch_up = catch_up_enqueue(subscription_ids=[subscription.pk], as_of=now, pending=deferred, now=now)
    subscription = subscription_load(subscription)
    subscription.catch_up = catch_up
    return subscription


# A requested termination time this much before the subscription's current time still means "now": the
# caller's clock and ours differ by a few seconds, and the request took some time to arrive.
TERMINATION_CLOCK_SKEW = timedelta(seconds=60)


def _check_termination(subscription: Subscription, *, now: datetime, requested_at: datetime | None) -> None:
    if requested_at is not None:
        if requested_at <= subscription.started_at:
            raise SubscriptionChangeError("Must be after startedAt.", field="terminatedAt")
        if requested_at < subscription_now(subscription, now) - TERMINATION_CLOCK_SKEW:
            raise SubscriptionChangeError(
                "A backdated termination is not supported; terminate now or set endingAt.", field="terminatedAt"
            )
    if subscription.status == SubscriptionStatus.TERMINATED:
        raise SubscriptionTerminatedError("The subscription is already terminated.")


def subscription_terminate(
    *,
    subscription: Subscription,
    now: datetime,
    at_period_end: bool = False,
    reason: str = "",
    by: str = "",
    change_reason: str | None = None,
    requested_at: datetime | None = None,
) -> Subscription:
    """End a subscription now or at the end of its current period.

    Now: the final invoice bills the partial period (usage and in-arrears fees up to ``now``) and
    credits in-advance fees pro rata for the unused days (from the termination day; obligations are
    never credited). At period end: ``ending_at`` is set and the regular close bills the last period.
    A ``pending_payment`` subscription was never billed beyond its opening invoice: it ends now with
    nothing to close. ``change_reason`` (the API's ``changeReason``) is kept in the subscription's
    metadata as ``terminationChangeReason``, in the same transaction as the termination fields.

    ``requested_at`` is the moment the caller asked for (the API's ``terminatedAt``): it must lie after
    the start and not before the subscription's current time (no backdated termination; up to
    ``TERMINATION_CLOCK_SKEW`` earlier counts as now); a later one is clamped to now. Refusals are
    ``SubscriptionChangeError`` naming ``terminatedAt``; an already terminated subscription is
    ``SubscriptionTerminatedError``.
    """
    _check_termination(subscription, now=now, requested_at=requested_at)  # no statement for a refusal
    subscription = subscription_load(subscription)
    _check_termination(subscription, now=now, requested_at=requested_at)  # the fresh row
    sub_now = subscription_now(subscription, now)
    period = subscription_period_at(subscription, sub_now)
    fields = ["termination_reason", "terminated_by", "updated_at"]
    with transaction.atomic():
        subscription_lock(subscription)
        subscription.termination_reason = reason
        subscription.terminated_by = by
        if change_reason:
            subscription.metadata = {**(subscription.metadata or {}), "terminationChangeReason": change_reason}
            fields.append("metadata")
        if subscription.status == SubscriptionStatus.PENDING_PAYMENT:
            subscription.status = SubscriptionStatus.TERMINATED
            subscription.terminated_at = sub_now
            subscription.save(update_fields=["status", "terminated_at", *fields])
            subscription_terminated_emit(subscription=subscription, now=now)
            return subscription_load(subscription)
        if at_period_end:
            subscription.ending_at = period.end
            subscription.save(update_fields=["ending_at", *fields])
            return subscription
        subscription.terminated_at = sub_now
        subscription.save(update_fields=["terminated_at", *fields])
    close_one_subscription(subscription, now=now, trigger="termination")  # every period: the final close
    subscription = subscription_load(subscription)
    if subscription.status != SubscriptionStatus.TERMINATED:
        with transaction.atomic():
            Subscription.objects.filter(pk=subscription.pk).update(status=SubscriptionStatus.TERMINATED)
            subscription.refresh_from_db()
            subscription_terminated_emit(subscription=subscription, now=now)
    return subscription


def _check_plan_change(subscription: Subscription, new_plan: Plan) -> None:
    old = subscription.plan
    if new_plan.pk == old.pk:
        raise InvoiceError("The subscription is already on this plan.")
    if new_plan.merchant_id != old.merchant_id:
        raise InvoiceError("The new plan belongs to another merchant.")
    if new_plan.currency != old.currency or new_plan.billing_cadence != old.billing_cadence:
        raise InvoiceError("A plan change keeps the currency and the billing cadence; start a new subscription.")


def subscription_upgrade(*, subscription: Subscription, new_plan: Plan, now: datetime) -> Invoice:
    """Move to ``new_plan`` now. A plan-change invoice settles the old plan's usage and in-arrears fees up
    to now, credits its unused in-advance fees and charges the new plan's for the rest of the period,
    both prorated by day. The period's recurring invoice then bills the new plan from now."""
    subscription = subscription_load(subscription)
    _check_plan_change(subscription, new_plan)
    at = subscription_now(subscription, now)
    with transaction.atomic():
        subscription_lock(subscription)
        SubscriptionPlanChange.objects.filter(
            subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True
        ).update(canceled_at=at)
        period = subscription_period_at(subscription, at)
        plan_from = plan_charged_from(subscription, period, until=at)
        if subscription.is_real_time:
            # Events of the old plan are debited under this lock: the invoice below sees all of them,
            # and the next request reads the new plan (REALTIME.md, "Plan changes").
            wallet_lock(customer=subscription.customer, currency=subscription.plan.currency)
        composed = Biller().compose_plan_change(
            subscription,
            new_plan=new_plan,
            at=at,
            charge_from=plan_from,
            threshold_billed=threshold_billed_lines(
                subscription=subscription, period_start=usage_window(subscription, period, plan_from)[0]
            ),
        )
        composed = with_prepaid(composed, subscription=subscription, period=period, plan_from=plan_from)
        invoice = invoice_from_composition(
            composed,
            subscription=subscription,
            plan=subscription.plan,
            grace_ends_at=at + subscription.merchant.invoice_grace_period,
        )
        invoice_insert_or_skip(invoice, composed.lines)
        change = SubscriptionPlanChange.objects.create(
            subscription=subscription,
            from_plan=subscription.plan,
            to_plan=new_plan,
            kind=PlanChangeKind.UPGRADE,
            requested_at=at,
            effective_at=at,
        )
        plan_change_apply(subscription, change, invoice=invoice)
    return invoice


def subscription_downgrade(*, subscription: Subscription, new_plan: Plan, now: datetime) -> SubscriptionPlanChange:
    """Schedule ``new_plan`` for the end of the current period; the closing invoice of the period bills
    the old plan and the next period's in-advance fees of the new plan."""
    subscription = subscription_load(subscription)
    _check_plan_change(subscription, new_plan)
    at = subscription_now(subscription, now)
    period = subscription_period_at(subscription, at)
    with transaction.atomic():
        subscription_lock(subscription)
        SubscriptionPlanChange.objects.filter(
            subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True
        ).update(canceled_at=at)
        return SubscriptionPlanChange.objects.create(
            subscription=subscription,
            from_plan=subscription.plan,
            to_plan=new_plan,
            kind=PlanChangeKind.DOWNGRADE,
            requested_at=at,
            effective_at=period.end,
        )


def subscription_reactivate(*, subscription: Subscription) -> Subscription:
    """Ask for an active subscription (the API's ``status: active``). Meterline never reactivates: an active
    subscription stays as it is (nothing is written), a ``pending_payment`` one becomes active only when its
    Invoice 0 is paid, and a terminated one cannot come back (start a new one). The last two are a
    ``SubscriptionChangeError`` without a field (a state conflict). Reads the given instance's status, so no
    time is needed and no statement is run."""
    if subscription.status == SubscriptionStatus.ACTIVE:
        return subscription
    if subscription.status == SubscriptionStatus.PENDING_PAYMENT:
        raise SubscriptionChangeError(
            f"The subscription is {subscription.status}; it becomes active when Invoice 0 is paid"
        )
    raise SubscriptionChangeError("A terminated subscription cannot be reactivated; start a new one.")


SUBSCRIPTION_UPDATABLE = SUBSCRIPTION_TERMS_FIELDS


def subscription_update(*, subscription: Subscription, changes: dict, now: datetime) -> Subscription:
    """Change a subscription's terms (``name``, ``auto_charge``, ``tax_exempt``, ``payment_term_days``,
    ``version_policy``, ``metadata``: the API sends the four in between, the admin all six) and its scheduled end (``ending_at``; None clears it). The end must lie after the
    start and not before the subscription's current time; already closed periods are never rebilled."""
    subscription = subscription_load(subscription)
    if subscription.status == SubscriptionStatus.TERMINATED:
        raise SubscriptionChangeError("The subscription is terminated; it can no longer change.")
    at = subscription_now(subscription, now)
    with transaction.atomic():
        subscription_lock(subscription)
        fields = []
        if "version_policy" in changes and changes["version_policy"] != subscription.version_policy:
            subscription_version_policy_apply(subscription=subscription, policy=changes["version_policy"], now=now)
            fields += list(VERSION_FIELDS)
        for name in SUBSCRIPTION_UPDATABLE:
            if name in changes:
                setattr(subscription, name, changes[name])
                fields.append(name)
        if "ending_at" in changes:
            ending_at = changes["ending_at"]
            if ending_at is not None and ending_at <= subscription.started_at:
                raise SubscriptionChangeError("The end must be after the start.", field="endingAt")
            if ending_at is not None and ending_at < at:
                raise SubscriptionChangeError(
                    "The end cannot be in the past; terminate the subscription instead.", field="endingAt"
                )
            subscription.ending_at = ending_at
            fields.append("ending_at")
        if fields:
            subscription.save(update_fields=[*fields, "updated_at"])
    return subscription_load(subscription)

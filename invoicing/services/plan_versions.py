"""Moves of subscriptions between the versions of their plan (the client's ``versionMigration``, and a
change of ``versionPolicy``).

A move takes effect at a period boundary — the end of the current period (``next_period``) or, for
``immediate``, the start of the current one, so in-arrears prices bill the whole current period from the
target and in-advance prices (already billed for it) change from the next. It never reaches a period that
started before the current one, so a closed period is never re-rated. Each move is a
``SubscriptionVersionChange`` row (later rows it supersedes are deleted, "a second migration before the
boundary replaces the first") cached on the subscription; ``catalog.selectors.subscription_version_at``
reads them per period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from catalog.models import PlanVersion, PlanVersionStatus, Subscription, SubscriptionStatus, SubscriptionVersionChange

from ..calculation import SUBSCRIPTION_RELATED, subscription_end, subscription_now, subscription_period_at
from ..models import InvoiceError, SubscriptionPriceInterval
from ..pricing_adapter import subscription_version_at

TIMINGS = ("next_period", "immediate")
# The subscription fields a move writes.
VERSION_FIELDS = ("plan_version", "plan_version_from", "previous_plan_version", "previous_plan_version_from")


class VersionMigrationConflict(InvoiceError):
    """A migration the subscription's state refuses (the API answers 409 with ``code``)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class VersionNotFound(InvoiceError):
    """No published version of that number on the subscription's plan (the API answers 404)."""


@dataclass(frozen=True)
class VersionMigration:
    subscription: Subscription
    from_version_number: int | None
    to_version_number: int
    effective_at: datetime | None
    entitlements_effective_at: datetime | None
    changed: bool


def _version_move(subscription: Subscription, version_id: str | None, effective_at: datetime, now: datetime) -> None:
    """From ``effective_at`` bill ``subscription`` (locked) from ``version_id`` (None: its plan's default)."""
    rows = SubscriptionVersionChange.objects.filter(subscription=subscription)
    if subscription.plan_version_from is None and subscription.plan_version_id is not None and not rows.exists():
        # Pinned from the start: keep that for the periods before the move.
        SubscriptionVersionChange.objects.create(
            subscription=subscription, version_id=subscription.plan_version_id, effective_at=None, created_at=now
        )
    rows.filter(effective_at__gte=effective_at).delete()
    # The state before this move (the latest row it keeps; none: floating from the start).
    before = sorted(rows, key=lambda r: (r.effective_at is not None, r.effective_at or effective_at, r.pk))
    previous = before[-1] if before else None
    SubscriptionVersionChange.objects.create(
        subscription=subscription, version_id=version_id, effective_at=effective_at, created_at=now
    )
    subscription.previous_plan_version_id = previous.version_id if previous else None
    subscription.previous_plan_version_from = previous.effective_at if previous else None
    subscription.plan_version_id, subscription.plan_version_from = version_id, effective_at


def _load_locked(subscription: Subscription) -> Subscription:
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related(*SUBSCRIPTION_RELATED)
        .get(pk=subscription.pk)
    )


@transaction.atomic
def subscription_version_migrate(
    *, subscription: Subscription, target_version_number: int, timing: str | None = None, now: datetime
) -> VersionMigration:
    """Pin ``subscription`` to version ``target_version_number`` of its plan, at the end of its current period
    (``next_period``, the default) or for its whole current period (``immediate``). Migrating to the version
    it already holds, pinned, changes nothing. Raises VersionNotFound (no such published version) and
    VersionMigrationConflict (not live; ends at or before the boundary)."""
    if timing is None:
        timing = "next_period"  # the plan's versionTransition: end_of_current_period, the only one kept
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}")
    subscription = _load_locked(subscription)
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise VersionMigrationConflict("Only a live subscription can move to another version.", code="NOT_LIVE")
    target = PlanVersion.objects.filter(
        plan_id=subscription.plan_id, number=target_version_number, status=PlanVersionStatus.PUBLISHED
    ).first()
    if target is None:
        raise VersionNotFound(f"The plan has no published version {target_version_number}.")
    at = subscription_now(subscription, now)
    period = subscription_period_at(subscription, max(at, subscription.started_at))
    boundary = period.end if timing == "next_period" else period.start
    stop = subscription_end(subscription)
    if timing == "next_period" and stop is not None and stop <= boundary:
        raise VersionMigrationConflict(
            "The subscription ends at or before the end of its current period; there is no period to move.",
            code="ENDS_BEFORE_BOUNDARY",
        )
    _refuse_owned_key_clash(subscription, target, boundary)
    current_id = subscription_version_at(subscription, period.start)
    numbers = dict(PlanVersion.objects.filter(plan_id=subscription.plan_id).values_list("pk", "number"))
    already = (
        subscription.version_policy == "pinned"
        and subscription.plan_version_id == target.pk
        and (subscription.plan_version_from is None or subscription.plan_version_from <= boundary)
    )
    if already:
        return VersionMigration(subscription, numbers.get(current_id), target.number, None, None, False)
    _version_move(subscription, target.pk, boundary, now)
    subscription.version_policy = "pinned"
    subscription.save(update_fields=[*VERSION_FIELDS, "version_policy", "updated_at"])
    return VersionMigration(
        subscription=subscription,
        from_version_number=numbers.get(current_id),
        to_version_number=target.number,
        effective_at=period.end,
        entitlements_effective_at=period.end if timing == "next_period" else at,
        changed=True,
    )


def _refuse_owned_key_clash(subscription: Subscription, target: PlanVersion, boundary: datetime) -> None:
    """A subscription-only interval keeps its key across version moves (the client's add op): a target version
    with a line of the same key would bill it twice, so the move waits until the plan drops the key or the
    interval ends on or before the boundary."""
    clashes = sorted(
        SubscriptionPriceInterval.objects.filter(subscription=subscription, price_key__in=target.lines.values("key"))
        .filter(Q(end_date__isnull=True) | Q(end_date__gt=boundary))
        .values_list("price_key", flat=True)
    )
    if clashes:
        raise VersionMigrationConflict(
            f"Version {target.number} has a line {', '.join(clashes)}, which this subscription bills as a "
            "subscription-only interval after the move; end that interval on or before "
            f"{boundary.isoformat()} first.",
            code="INTERVAL_KEY_CONFLICT",
        )


def subscription_version_policy_apply(*, subscription: Subscription, policy: str, now: datetime) -> None:
    """A change of ``version_policy`` (inside the caller's transaction, subscription locked and loaded):
    ``floating`` follows the plan's default from the next period; ``pinned`` keeps the version of the
    current period. Neither changes a period already started."""
    at = subscription_now(subscription, now)
    period = subscription_period_at(subscription, max(at, subscription.started_at))
    if policy == "floating" and subscription.plan_version_id is not None:
        _version_move(subscription, None, period.end, now)
    elif policy == "pinned" and subscription.plan_version_id is None:
        _version_move(subscription, subscription_version_at(subscription, period.start), period.start, now)

"""Spend writes: alerts and caps managed (API and admin call these), the evaluation that fires alerts and
enforces caps, and the cap lifted by finance. Each public service is one transaction.

Exactly once: a threshold fires when its ``SpendAlertFiring`` row is created, and the row is unique per
(alert, period start, threshold); evaluations of one customer are serialised by the lock of its
``SpendWatch`` row, so the constraint is the backstop, never the common path. The webhook is recorded in
the same transaction (keyed by the firing, so delivered once per endpoint) and the e-mail is sent after
commit (``spend_alert_email_send``), retried by the sweep while queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import partial

from django.core.exceptions import ValidationError
from django.db import transaction

from catalog.models import BillableMetric, Customer, Subscription
from catalog.pricing import is_known_currency
from core.formatting import decimal_string, iso_utc
from wallets.models import WebhookEventType
from wallets.webhooks import webhook_event_emit

from ..models import (
    SPEND_AMOUNT_MAX,
    SPEND_PERCENT_MAX,
    SPEND_THRESHOLDS_MAX,
    SpendAlert,
    SpendAlertFiring,
    SpendCap,
    SpendCapMode,
    SpendThresholdKind,
    SpendWatch,
)
from .selectors import AccruedSpend, spend_accrued, spend_watches_due

SPEND_EVALUATE_BATCH = 200  # customers evaluated per sweep: bounded work per run


class SpendError(Exception):
    """A refused alert or cap (bad input): ``field`` names what is wrong (the API's 400)."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


# -- input ------------------------------------------------------------------------------------------


def _decimal(value, *, field: str, maximum: Decimal) -> Decimal:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise SpendError("A decimal number.", field=field) from None
    if not number.is_finite() or number <= 0 or number > maximum:
        raise SpendError(f"Above 0 and at most {decimal_string(maximum)}.", field=field)
    if number != number.quantize(Decimal("0.0001")):
        raise SpendError("At most 4 decimal places.", field=field)
    return number


@dataclass(frozen=True)
class SpendAlertInput:
    currency: str
    threshold_kind: str
    thresholds: tuple
    budget: object = None
    name: str = ""
    recipients: str = ""
    subscription_id: str | None = None
    active: bool = True
    metric_id: str | None = None  # a usage alert: thresholds on this metric's usage (amounts in its unit)


def spend_alert_validate(*, customer: Customer, data: SpendAlertInput) -> dict:
    """The alert's model fields from ``data``, bounds checked; ``SpendError`` naming the field otherwise."""
    currency = (data.currency or "").upper()
    if not is_known_currency(currency):
        raise SpendError(f"Unknown currency “{data.currency}”.", field="currency")
    if data.threshold_kind not in SpendThresholdKind.values:
        raise SpendError(f"One of {', '.join(SpendThresholdKind.values)}.", field="thresholdKind")
    percent = data.threshold_kind == SpendThresholdKind.PERCENT
    budget = None
    if data.budget is not None:
        budget = _decimal(data.budget, field="budget", maximum=SPEND_AMOUNT_MAX)
    elif percent:
        raise SpendError("Percentages are of a budget: give the budget.", field="budget")
    if not data.thresholds or len(data.thresholds) > SPEND_THRESHOLDS_MAX:
        raise SpendError(f"From 1 to {SPEND_THRESHOLDS_MAX} thresholds.", field="thresholds")
    maximum = SPEND_PERCENT_MAX if percent else SPEND_AMOUNT_MAX
    thresholds = sorted({_decimal(t, field="thresholds", maximum=maximum) for t in data.thresholds})
    subscription = None
    if data.subscription_id:
        subscription = Subscription.objects.filter(pk=data.subscription_id, customer=customer).first()
        if subscription is None:
            raise SpendError("No such subscription of this customer.", field="subscriptionId")
    metric = None
    if data.metric_id:
        metric = BillableMetric.objects.filter(pk=data.metric_id, merchant_id=customer.merchant_id).first()
        if metric is None:
            raise SpendError("No such billable metric.", field="metricId")
    return {
        "currency": currency,
        "metric": metric,
        "threshold_kind": data.threshold_kind,
        "thresholds": [decimal_string(t) for t in thresholds],
        "budget": budget,
        "name": data.name or "",
        "recipients": data.recipients or "",
        "subscription": subscription,
        "active": data.active,
    }


def _saved(row):
    try:
        row.full_clean()
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise SpendError(" ".join(messages), field=field) from None
    row.save()
    return row


# -- alerts and caps managed ------------------------------------------------------------------------


@transaction.atomic
def spend_alert_create(*, customer: Customer, data: SpendAlertInput) -> SpendAlert:
    """A spend alert on the customer (or one of its subscriptions); the customer is watched from now on."""
    alert = _saved(
        SpendAlert(
            merchant_id=customer.merchant_id, customer=customer, **spend_alert_validate(customer=customer, data=data)
        )
    )
    SpendWatch.objects.get_or_create(customer=customer)
    return alert


@transaction.atomic
def spend_alert_update(*, alert: SpendAlert, data: SpendAlertInput) -> SpendAlert:
    """The alert's settings replaced; thresholds already fired this period stay fired."""
    for name, value in spend_alert_validate(customer=alert.customer, data=data).items():
        setattr(alert, name, value)
    return _saved(alert)


@transaction.atomic
def spend_alert_delete(*, alert: SpendAlert) -> None:
    alert.delete()


def spend_cap_validate(*, currency: str, amount, on_reach: str) -> tuple[str, Decimal]:
    """The cap's currency and amount, bounds checked; ``SpendError`` naming the field otherwise."""
    currency = (currency or "").upper()
    if not is_known_currency(currency):
        raise SpendError(f"Unknown currency “{currency}”.", field="currency")
    if on_reach not in SpendCapMode.values:
        raise SpendError(f"One of {', '.join(SpendCapMode.values)}.", field="onReach")
    return currency, _decimal(amount, field="amount", maximum=SPEND_AMOUNT_MAX)


@transaction.atomic
def spend_cap_set(*, customer: Customer, currency: str, amount, on_reach: str, now: datetime) -> SpendCap:
    """Set (create or replace) the customer's spend cap; the next evaluation applies it to the current period
    (a cap raised above the accrued cost lets the customer's usage through again then)."""
    currency, amount = spend_cap_validate(currency=currency, amount=amount, on_reach=on_reach)
    cap = SpendCap.objects.select_for_update().filter(customer=customer).first()
    if cap is None:
        cap = SpendCap(customer=customer, merchant_id=customer.merchant_id)
    changed = cap.pk is None or (cap.currency, cap.amount, cap.on_reach) != (currency, amount, on_reach)
    cap.currency, cap.amount, cap.on_reach = currency, amount, on_reach
    if changed:  # a new cap is judged afresh: reached again only if the accrued cost reaches it
        cap.reached_at = None
    _saved(cap)
    if changed:
        _customer_block(customer_id=customer.pk, since=None)
    SpendWatch.objects.update_or_create(customer=customer, defaults={"evaluated_at": None})
    return cap


@transaction.atomic
def spend_cap_delete(*, customer: Customer) -> bool:
    """Remove the customer's cap and the refusal it caused; False when there was none."""
    deleted, _ = SpendCap.objects.filter(customer=customer).delete()
    _customer_block(customer_id=customer.pk, since=None)
    return bool(deleted)


@transaction.atomic
def spend_cap_lift(*, customer: Customer, now: datetime, lifted_by: str) -> SpendCap:
    """Finance lifts the customer's cap for the rest of the current period: its usage is accepted (and no
    longer flagged) until the period ends; the cap applies again from the next period."""
    cap = SpendCap.objects.select_for_update().filter(customer=customer).first()
    if cap is None:
        raise SpendError("This customer has no spend cap.", field="spendCap")
    if cap.lifted_at is None:
        cap.lifted_at, cap.lifted_by = now, lifted_by[:200]
        cap.save(update_fields=["lifted_at", "lifted_by", "updated_at"])
    _customer_block(customer_id=customer.pk, since=None)
    return cap


def _customer_block(*, customer_id: str, since: datetime | None) -> None:
    """Set or clear the refusal flag ingestion reads (one UPDATE, none when already so)."""
    rows = Customer.objects.filter(pk=customer_id)
    if since is None:
        rows.filter(spend_blocked_since__isnull=False).update(spend_blocked_since=None)
    else:
        rows.filter(spend_blocked_since__isnull=True).update(spend_blocked_since=since)


# -- evaluation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendEvaluation:
    customer_id: str
    fired: list[SpendAlertFiring]
    cap: SpendCap | None


@transaction.atomic(durable=True)
def spend_evaluate_customer(*, customer_id: str, now: datetime) -> SpendEvaluation:
    """Evaluate one customer's alerts and cap against its accrued usage cost now: fire each threshold crossed
    and not yet fired this period, and set, keep or clear the cap's refusal. One transaction, under the lock
    of the customer's ``SpendWatch`` row."""
    watch = SpendWatch.objects.select_for_update().filter(customer_id=customer_id).first()
    customer = Customer.objects.get(pk=customer_id)
    accrued: dict[tuple[str, str | None], AccruedSpend | None] = {}

    def accrued_of(currency: str, subscription: Subscription | None) -> AccruedSpend | None:
        key = (currency, subscription.pk if subscription else None)
        if key not in accrued:
            accrued[key] = spend_accrued(customer=customer, currency=currency, now=now, subscription=subscription)
        return accrued[key]

    fired: list[SpendAlertFiring] = []
    alerts = list(SpendAlert.objects.filter(customer=customer).select_related("subscription__plan"))
    for alert in alerts:
        spend = accrued_of(alert.currency, alert.subscription) if alert.active else None
        if spend is not None:
            fired.extend(_alert_fire(alert, spend, now=now))
    cap = SpendCap.objects.select_for_update().filter(customer=customer).first()
    if cap is not None:
        _cap_apply(cap, accrued_of(cap.currency, None), customer=customer, now=now)
    if watch is not None and not alerts and cap is None:
        watch.delete()  # nothing left to watch: the sweep forgets the customer
    elif watch is not None:
        watch.evaluated_at = now
        watch.save(update_fields=["evaluated_at"])
    for firing in fired:
        transaction.on_commit(partial(_email_send_later, firing.pk))
    return SpendEvaluation(customer_id, fired, cap)


def _alert_fire(alert: SpendAlert, spend: AccruedSpend, *, now: datetime) -> list[SpendAlertFiring]:
    done = set(
        SpendAlertFiring.objects.filter(alert=alert, period_start=spend.period_start).values_list(
            "threshold", flat=True
        )
    )
    fired = []
    for text in alert.thresholds:
        threshold = Decimal(text)
        level = alert.threshold_amount(threshold)
        measured = spend.measure(alert.metric_id)
        if threshold in done or measured < level:
            continue
        firing, created = SpendAlertFiring.objects.get_or_create(
            alert=alert,
            period_start=spend.period_start,
            threshold=threshold,
            defaults={
                "period_end": spend.period_end,
                "threshold_amount": level,
                "accrued": measured,
                "fired_at": now,
            },
        )
        if not created:
            continue
        deliveries = webhook_event_emit(
            merchant_id=alert.merchant_id,
            event_type=WebhookEventType.SPEND_ALERT_FIRED,
            data=spend_alert_fired_data(firing),
            now=now,
            key=f"{alert.pk}:{int(spend.period_start.timestamp())}:{text}",
        )
        if deliveries:
            firing.webhook_event_id = deliveries[0].event_id
            firing.save(update_fields=["webhook_event_id"])
        fired.append(firing)
    return fired


def spend_alert_fired_data(firing: SpendAlertFiring) -> dict:
    """``spend.alert.fired.v0``'s data."""
    alert = firing.alert
    return {
        "alertId": alert.pk,
        "name": alert.name or None,
        "customerId": alert.customer_id,
        "subscriptionId": alert.subscription_id,
        "metricId": alert.metric_id,
        "currency": alert.currency,
        "thresholdKind": alert.threshold_kind,
        "threshold": decimal_string(firing.threshold),
        "thresholdAmount": decimal_string(firing.threshold_amount),
        "budget": None if alert.budget is None else decimal_string(alert.budget),
        "accrued": decimal_string(firing.accrued),
        "periodStart": iso_utc(firing.period_start),
        "periodEnd": iso_utc(firing.period_end),
        "firedAt": iso_utc(firing.fired_at),
    }


def _cap_apply(cap: SpendCap, spend: AccruedSpend | None, *, customer: Customer, now: datetime) -> None:
    fields = {"accrued", "updated_at"}
    if spend is None:  # no active subscription in the cap's currency: nothing accrues, nothing is refused
        cap.accrued = Decimal(0)
    else:
        if cap.period_start != spend.period_start:  # a new period: the cap starts over
            cap.period_start, cap.period_end = spend.period_start, spend.period_end
            cap.reached_at = cap.lifted_at = None
            cap.lifted_by = ""
            fields |= {"period_start", "period_end", "reached_at", "lifted_at", "lifted_by"}
        cap.accrued = spend.amount
        if cap.reached_at is None and spend.amount >= cap.amount:
            cap.reached_at = now
            fields.add("reached_at")
            webhook_event_emit(
                merchant_id=cap.merchant_id,
                event_type=WebhookEventType.SPEND_CAP_REACHED,
                data=spend_cap_data(cap),
                now=now,
                key=f"{cap.customer_id}:{int(spend.period_start.timestamp())}:{decimal_string(cap.amount)}",
            )
    cap.save(update_fields=sorted(fields))
    enforced = cap.reached_at is not None and cap.lifted_at is None and cap.on_reach == SpendCapMode.BLOCK
    _customer_block(customer_id=customer.pk, since=cap.reached_at if enforced and spend is not None else None)


def spend_cap_data(cap: SpendCap) -> dict:
    """``spend.cap.reached.v0``'s data (and the API's cap state)."""
    return {
        "customerId": cap.customer_id,
        "currency": cap.currency,
        "amount": decimal_string(cap.amount),
        "onReach": cap.on_reach,
        "accrued": decimal_string(cap.accrued),
        "periodStart": iso_utc(cap.period_start),
        "periodEnd": iso_utc(cap.period_end),
        "reachedAt": iso_utc(cap.reached_at),
        "liftedAt": iso_utc(cap.lifted_at),
    }


def spend_evaluate_due(*, now: datetime, limit: int = SPEND_EVALUATE_BATCH) -> list[SpendEvaluation]:
    """The sweep: evaluate up to ``limit`` watched customers whose events arrived since their last
    evaluation (or whose refusal's period ended), each in its own transaction, then retry the queued
    e-mails of earlier firings."""
    from .mail import spend_alert_emails_send_due

    evaluations = [spend_evaluate_customer(customer_id=pk, now=now) for pk in spend_watches_due(now=now, limit=limit)]
    spend_alert_emails_send_due(now=now)
    return evaluations


def _email_send_later(firing_id: int) -> None:
    from ..tasks import spend_alert_email_send_task

    spend_alert_email_send_task.delay(firing_id)

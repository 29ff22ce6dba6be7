"""Upfront payment: a subscription whose opening invoice ("Invoice 0") has an amount due waits in
``pending_payment`` until it is paid (the Paygentic API's start, and the admin's add page)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from catalog.models import Customer, Plan, Subscription, SubscriptionStatus

from ..calculation import (
    subscription_now,
)
from ..models import (
    OPEN_STATUSES,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
)
from ..webhook_events import invoice_paid_emit
from .invoice_states import locked_invoice
from .lifecycle import subscription_load, subscription_start
from .runs import subscription_lock


def subscription_opening_invoice(subscription: Subscription) -> Invoice | None:
    """The subscription's live opening invoice ("Invoice 0"), if it has one."""
    return (
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.OPENING)
        .exclude(status=InvoiceStatus.VOID)
        .first()
    )


def subscription_create_with_upfront_payment(
    *,
    customer: Customer,
    plan: Plan,
    started_at: datetime,
    now: datetime,
    name: str = "",
    ending_at: datetime | None = None,
    billing_anchor: datetime | None = None,
    trial_ends_at: datetime | None = None,
    test_clock=None,
    extra_fields: dict | None = None,
) -> Subscription:
    """Start a subscription the way the Paygentic API (and the admin's add page) does: through ``subscription_start``, and when its
    opening invoice ("Invoice 0": in-advance and one-off fees) has an amount due, the subscription waits
    in ``pending_payment`` until that invoice is paid (``invoice_record_payment``). A zero-amount Invoice 0
    is marked paid at once. Without an opening invoice the subscription is active at once.

    A pending subscription is not billed by runs (they bill active and terminated ones), so its periods
    are closed, with catch-up, once it is activated."""
    subscription = subscription_start(
        customer=customer,
        plan=plan,
        started_at=started_at,
        now=now,
        name=name,
        ending_at=ending_at,
        billing_anchor=billing_anchor,
        trial_ends_at=trial_ends_at,
        test_clock=test_clock,
        extra_fields=extra_fields,
    )
    catch_up = subscription.catch_up
    opening = subscription_opening_invoice(subscription)
    if opening is None or opening.status not in OPEN_STATUSES:
        return subscription
    with transaction.atomic():
        subscription_lock(subscription)
        opening = locked_invoice(opening)
        if opening.amount_due > 0:
            Subscription.objects.filter(pk=subscription.pk, status=SubscriptionStatus.ACTIVE).update(
                status=SubscriptionStatus.PENDING_PAYMENT, updated_at=now
            )
        else:
            opening.status = InvoiceStatus.PAID
            opening.paid_at = subscription_now(subscription, now)
            opening.save(update_fields=["status", "paid_at", "updated_at"])
            invoice_paid_emit(invoice=opening, now=opening.paid_at)
    subscription = subscription_load(subscription)
    subscription.catch_up = catch_up
    return subscription

"""Real-time billing: the period invoice settles against prepaid debits (REALTIME.md, "Period-end settlement").

A real-time subscription's recurring or plan-change invoice keeps the full usage lines, then shows what the
credit covered of the debits of the plan part it bills; issuing it records the settlement in the wallet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Max

from catalog.models import Subscription
from catalog.periods import Period
from wallets.selectors import PeriodDebits, period_debits_by_segment
from wallets.services import invoice_settlement_record, wallet_lock

from ..calculation import (
    ComposedInvoice,
    apply_prepaid,
    subscription_period_at,
)
from ..models import (
    Invoice,
    InvoiceKind,
    SubscriptionPlanChange,
)


def plan_charged_from(subscription: Subscription, period: Period, *, until: datetime) -> datetime | None:
    """When the plan billed up to ``until`` started charging inside ``period``: the latest plan change
    applied in (period start, ``until``), else None (the whole period). One query."""
    return SubscriptionPlanChange.objects.filter(
        subscription_id=subscription.pk,
        applied_at__isnull=False,
        effective_at__gt=period.start,
        effective_at__lt=until,
    ).aggregate(last=Max("effective_at"))["last"]


@dataclass(frozen=True)
class Prepaid:
    """The real-time debits an invoice settles: those of its plan's part of the billing period."""

    period: Period
    start: datetime  # the debits' ``period_start``: the period's, or the plan change's moment
    debits: PeriodDebits


def _plan_debits(subscription: Subscription, period: Period, *, plan_from: datetime | None) -> Prepaid | None:
    start = plan_from or period.start
    segments = period_debits_by_segment(
        subscription_id=subscription.pk, period_start=period.start, period_end=period.end
    )
    debits = segments.get(start)
    return Prepaid(period, start, debits) if debits is not None else None


def with_prepaid(
    composed: ComposedInvoice, *, subscription: Subscription, period: Period, plan_from: datetime | None
) -> ComposedInvoice:
    """A recurring or plan-change invoice of a subscription with real-time debits in ``period``: the full
    usage lines, then "Paid from prepaid balance" for what the credit covered of the debits of the plan
    this invoice bills — from ``plan_from`` (an upgrade inside the period) or the period's start."""
    prepaid = _plan_debits(subscription, period, plan_from=plan_from)
    if prepaid is None:
        return composed
    return apply_prepaid(
        composed, covered_by_credit=prepaid.debits.covered_by_credit, rounding=subscription.merchant.rounding_mode
    )


def invoice_prepaid(invoice: Invoice, subscription: Subscription) -> Prepaid | None:
    """The debits a recurring or plan-change invoice settles, whatever the subscription's billing mode is
    now (a subscription switched to post-paid still settles what was debited). One query, two when the
    period has debits (which plan part the invoice bills)."""
    if invoice.kind not in (InvoiceKind.RECURRING, InvoiceKind.PLAN_CHANGE):
        return None
    period = subscription_period_at(subscription, invoice.period_start)
    segments = period_debits_by_segment(
        subscription_id=subscription.pk, period_start=period.start, period_end=period.end
    )
    if not segments:
        return None
    until = period.end if invoice.kind == InvoiceKind.RECURRING else invoice.period_end
    start = plan_charged_from(subscription, period, until=until) or period.start
    debits = segments.get(start)
    return Prepaid(period, start, debits) if debits is not None else None


def prepaid_lock(invoice: Invoice) -> None:
    """Before a real-time subscription's recurring or plan-change invoice is refreshed and issued: lock
    the customer's wallet, so a late event of the period is either debited before (and on this
    invoice) or sees it issued."""
    if invoice.kind in (InvoiceKind.RECURRING, InvoiceKind.PLAN_CHANGE) and invoice.subscription.is_real_time:
        wallet_lock(customer=invoice.customer, currency=invoice.currency)


def prepaid_settle(invoice: Invoice, prepaid: Prepaid, *, now: datetime) -> None:
    """Record the settlement once per invoice: the overage of the debits it settled (usage the credit did
    not cover) is now billed by this invoice. A reissue of a voided invoice bills the overage its
    predecessor already took over, so it moves nothing."""
    debits = prepaid.debits
    if not debits.debited and not debits.overage:
        return
    invoice_settlement_record(
        customer=invoice.customer,
        currency=invoice.currency,
        invoice_ref=invoice.pk,
        now=now,
        overage_billed=Decimal(0) if invoice.replaces_id else max(debits.overage, Decimal(0)),
        description=f"Real-time usage of {prepaid.start:%Y-%m-%d} – {prepaid.period.end:%Y-%m-%d} settled with {invoice}",
    )

"""Invoices not written yet, rated by the billing run's own composition (``Biller.compose_recurring``):

- ``invoice_projections``: the client's projected invoices (``GET /v2/invoices/projected``): the recurring
  invoices a subscription will issue in a range of invoice moments, fixed charges only (fees, the plan
  minimum and discount on them, the pending manual lines each close will pick up), usage left out; never
  stored.
- ``invoice_upcoming``: our extension, the invoice closing the current period with the usage to date and
  the pending manual line items (``GET /v0/subscriptions/{id}/upcomingInvoice`` and the customer page).

The invoice moment of a recurring invoice is the end of the period it closes (its draft is written then,
issued after the grace period); a subscription ending inside a period closes at its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dateutil.relativedelta import relativedelta

from catalog.models import Subscription, SubscriptionStatus

from .calculation import (
    SUBSCRIPTION_RELATED,
    Biller,
    ComposedInvoice,
    manual_lines_due,
    service_window,
    subscription_end,
    subscription_next_period,
    subscription_now,
    subscription_period_at,
)
from .models import Invoice, InvoiceError, LineKind, ManualLineItem
from .selectors import InvoiceLinePage, TaxedLine, invoice_line_taxes, invoice_preview
from .services.writer import invoice_from_composition, line_rows

PROJECTION_HORIZON = relativedelta(years=1)
ZERO = Decimal(0)


class ProjectionRangeError(InvoiceError):
    """A refused range of invoice moments; ``field`` is the query parameter to blame."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ProjectedInvoice:
    """An unsaved invoice (``invoice.id`` is the stable projected id) and its lines as a page."""

    invoice: Invoice
    page: InvoiceLinePage
    invoice_at: datetime


def _charge_from(subscription: Subscription, period_start: datetime, period_end: datetime) -> datetime | None:
    changed = subscription.plan_changed_at
    return changed if changed is not None and period_start < changed < period_end else None


def _unsaved(composed: ComposedInvoice, subscription: Subscription, *, invoice_id: str, at: datetime) -> Invoice:
    invoice = invoice_from_composition(composed, subscription=subscription, plan=subscription.plan)
    invoice.id = invoice_id
    invoice.subscription, invoice.merchant, invoice.customer = (
        subscription,
        subscription.merchant,
        subscription.customer,
    )
    invoice.created_at = invoice.updated_at = at
    invoice.grace_ends_at = composed.period_end + subscription.merchant.invoice_grace_period
    invoice.amount_paid = ZERO  # what the output serializer reads instead of querying payments
    return invoice


def _page(invoice: Invoice, composed: ComposedInvoice) -> InvoiceLinePage:
    rows = [row for row in line_rows(invoice, composed.lines) if row.kind != LineKind.TAX]
    taxes = invoice_line_taxes(invoice=invoice, amounts=[(row.position, row.amount) for row in rows])
    invoice.item_count = len(rows)
    return InvoiceLinePage(
        invoice=invoice,
        lines=[TaxedLine(row, invoice, taxes[row.position]) for row in rows],
        total=len(rows),
        next_after=None,
    )


def invoice_projections(
    *, subscription: Subscription, now: datetime, start: datetime | None = None, end: datetime | None = None
) -> list[ProjectedInvoice]:
    """The recurring invoices ``subscription`` will issue with invoice moments in [``start``, ``end``), earliest
    first: fixed charges only (fees, plan terms, pending manual lines; usage excluded), an invoice with no fixed charge left out. ``start`` defaults
    to the subscription's now (its test clock's) and is raised to it; ``end`` defaults to a month after
    ``start`` and must lie after it and at most a year after now (``ProjectionRangeError``). A terminated
    subscription has none."""
    subscription = Subscription.objects.select_related(*SUBSCRIPTION_RELATED).get(pk=subscription.pk)
    at = subscription_now(subscription, now)
    start = max(start or at, at)
    end = end or start + relativedelta(months=1)
    if end <= start:
        raise ProjectionRangeError("Must be after from (and after now).", field="to")
    if end > at + PROJECTION_HORIZON:
        raise ProjectionRangeError("Must be at most one year after now.", field="to")
    if subscription.status == SubscriptionStatus.TERMINATED:
        return []
    biller = Biller()
    pending = list(ManualLineItem.objects.filter(subscription=subscription, invoice__isnull=True, target_invoice=False))
    stop = subscription_end(subscription)
    period = subscription_period_at(subscription, at)
    projected: list[ProjectedInvoice] = []
    while True:
        window_start, window_end = service_window(subscription, period)
        moment = window_end
        if moment >= end or window_start >= window_end:
            break
        due = manual_lines_due(subscription, period, pending)
        pending = [item for item in pending if item not in due]
        if moment >= start:
            composed = biller.compose_recurring(
                subscription,
                period,
                charge_from=_charge_from(subscription, period.start, period.end),
                with_usage=False,
                manual=due,
            )
            if any(line.amount for line in composed.lines if line.kind != LineKind.TAX):
                invoice = _unsaved(
                    composed, subscription, invoice_id=f"proj_{subscription.pk}_{int(moment.timestamp())}", at=now
                )
                projected.append(ProjectedInvoice(invoice, _page(invoice, composed), moment))
        if stop is not None and stop <= period.end:
            break
        period = subscription_next_period(subscription, period)
    return projected


@dataclass(frozen=True)
class UpcomingInvoice:
    invoice: Invoice
    page: InvoiceLinePage
    composed: ComposedInvoice
    invoice_at: datetime


def invoice_upcoming(*, subscription: Subscription, now: datetime) -> UpcomingInvoice | None:
    """The invoice that will close the subscription's current period, as ``selectors.invoice_preview``
    composes it (the billing run's composition with the usage to date, one usage query per metric, and the
    pending manual line items the close will pick up); None unless the subscription is active and started."""
    composed = invoice_preview(subscription=subscription, now=now)
    if composed is None:
        return None
    subscription = Subscription.objects.select_related(*SUBSCRIPTION_RELATED).get(pk=subscription.pk)
    period = subscription_period_at(subscription, subscription_now(subscription, now))
    _, moment = service_window(subscription, period)
    invoice = _unsaved(
        composed, subscription, invoice_id=f"upcoming_{subscription.pk}_{int(moment.timestamp())}", at=now
    )
    return UpcomingInvoice(invoice, _page(invoice, composed), composed, moment)


__all__ = [
    "PROJECTION_HORIZON",
    "ProjectedInvoice",
    "ProjectionRangeError",
    "UpcomingInvoice",
    "invoice_projections",
    "invoice_upcoming",
]

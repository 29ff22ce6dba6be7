"""Due dates and the overdue sweep.

An invoice's due date is fixed when it is issued: the issue moment plus its subscription's payment term
(``Subscription.payment_term_days``, the API's ``paymentTermDays``; 0 = due on issue). The beat task
``invoicing.invoices_mark_overdue`` moves open invoices with money still due past that moment to OVERDUE
(by the subscription's test clock when it has one)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q

from .. import webhook_events
from ..models import Invoice, InvoiceStatus
from .locks import invoices_lock

OVERDUE_BATCH = 500


def invoice_due_at(*, issued_at: datetime, payment_term_days: int) -> datetime:
    """The one due-date rule: the issue moment plus the payment term in days."""
    return issued_at + timedelta(days=payment_term_days)


def _overdue(now: datetime):
    return Invoice.objects.filter(
        status__in=(InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID), amount_due__gt=0, due_at__isnull=False
    ).filter(
        Q(subscription__test_clock__isnull=True, due_at__lt=now)
        | Q(subscription__test_clock__isnull=False, due_at__lt=F("subscription__test_clock__current_time"))
    )


def invoices_mark_overdue(*, now: datetime) -> int:
    """Mark every open invoice past its due date with money due OVERDUE; returns how many. Safe to run twice
    or concurrently: each batch locks its invoices and re-checks them."""
    ids = list(_overdue(now).order_by("pk").values_list("pk", flat=True))
    marked = 0
    for start in range(0, len(ids), OVERDUE_BATCH):
        batch = ids[start : start + OVERDUE_BATCH]
        with transaction.atomic():
            invoices_lock(batch)
            for invoice in _overdue(now).filter(pk__in=batch).order_by("pk"):
                invoice.status = InvoiceStatus.OVERDUE
                invoice.save(update_fields=["status", "updated_at"])
                webhook_events.invoice_overdue_emit(invoice=invoice, now=now, due_at=invoice.due_at)
                marked += 1
    return marked

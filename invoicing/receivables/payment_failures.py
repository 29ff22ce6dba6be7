"""The invoice's "automatic payment failed" flag (``Invoice.payment_failed_at``, the wire's ``PAYMENT_FAILED``).

Set by whoever charges the invoice (the payments app, which sits above invoicing and calls down here); the
invoice stays open, so overdue, dunning and payments treat it as any open invoice, and paying it makes it
PAID. One UPDATE under the caller's transaction; a settled invoice is never marked.
"""

from __future__ import annotations

from datetime import datetime

from ..models import OPEN_STATUSES, Invoice


def invoice_payment_failed_mark(*, invoice_id: str, at: datetime) -> bool:
    """Flag the open invoice's automatic payment as failed at ``at`` (a later failure moves the moment on).
    Returns whether the invoice was open (and so flagged)."""
    return bool(Invoice.objects.filter(pk=invoice_id, status__in=OPEN_STATUSES).update(payment_failed_at=at))

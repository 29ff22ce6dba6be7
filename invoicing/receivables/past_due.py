"""Past due and usage blocked: what dunning does to a subscription after a final notice goes unanswered, and
when it is undone (invoicing/RECEIVABLES.md, "Dunning"). The one place of the rule: dunning marks, the
settlement of an invoice clears, nothing else writes ``past_due_since`` or ``usage_blocked_since``.

- *Mark past due*: ``Subscription.past_due_since`` is set (kept when already set): a flag, still billed.
- *Block real-time usage*: marked past due **and** ``usage_blocked_since`` is set: the real-time ingest path
  refuses the customer's events (``invoicing.realtime``, 402 ``USAGE_BLOCKED``), from the row its look-up
  reads anyway.
- Both are cleared in one UPDATE when an invoice of the subscription is paid in full, credited to zero or
  voided and no other open invoice of it has had its final notice.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, Value
from django.db.models.functions import Coalesce

from catalog.models import Subscription

from ..models import OPEN_STATUSES, Invoice


def subscription_past_due_mark(*, subscription_id: str, block_usage: bool, at: datetime) -> None:
    """Mark the subscription past due since ``at`` and, with ``block_usage``, block its real-time usage since
    ``at`` (caller holds the invoice's lock); a moment already set is kept. One UPDATE."""
    values = {"past_due_since": Coalesce("past_due_since", Value(at))}
    unset = Q(past_due_since__isnull=True)
    if block_usage:
        values["usage_blocked_since"] = Coalesce("usage_blocked_since", Value(at))
        unset |= Q(usage_blocked_since__isnull=True)
    Subscription.objects.filter(unset, pk=subscription_id).update(**values, updated_at=at)


def subscription_past_due_clear(invoice: Invoice, *, at: datetime) -> None:
    """A subscription marked past due (and perhaps blocked) by dunning is no longer once no open invoice of it
    has had its final notice: both flags cleared (one UPDATE; a no-op for the subscriptions never marked)."""
    Subscription.objects.filter(
        Q(past_due_since__isnull=False) | Q(usage_blocked_since__isnull=False), pk=invoice.subscription_id
    ).exclude(
        Exists(
            Invoice.objects.filter(
                subscription_id=OuterRef("pk"), status__in=OPEN_STATUSES, dunning_reminders__final=True
            ).exclude(pk=invoice.pk)
        )
    ).update(past_due_since=None, usage_blocked_since=None, updated_at=at)

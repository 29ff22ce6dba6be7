"""The record of a change to a subscription's price intervals (the client's ``SubscriptionIntervalChange``,
listed at ``/v0/subscriptions/{id}/intervalChanges`` and ``/v0/intervalChanges``).

Written only by ``invoicing.services.intervals.subscription_intervals_edit``, in the transaction that writes
the negotiated rates it describes, so a listed change always happened and every change is listed. ``entries``
keep each interval's wire copy before and after (``{"intervalId", "before", "after"}``), as the client shows
them: they are history, never re-derived from today's prices.
"""

from __future__ import annotations

from django.db import models

from catalog.models import Merchant, Subscription
from core.ids import PublicIdField


class IntervalChangeReason(models.TextChoices):
    COMMERCIAL = "commercial", "Commercial (a change to the deal)"
    CORRECTION = "correction", "Correction (data fixed to match the agreement)"
    MIGRATION = "migration", "Migration (a contract moved from another system)"
    UNSPECIFIED = "unspecified", "Unspecified"


class SubscriptionIntervalChange(models.Model):
    id = PublicIdField(prefix="ichg")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="interval_changes")
    change_reason = models.CharField(
        max_length=12, choices=IntervalChangeReason.choices, default=IntervalChangeReason.UNSPECIFIED
    )
    description = models.CharField(max_length=1000, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    entries = models.JSONField(default=list)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["subscription", "created_at"]),
            models.Index(fields=["merchant", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_change_reason_display()} change of {self.subscription_id} at {self.created_at:%Y-%m-%d}"

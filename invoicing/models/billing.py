"""Scheduled plan changes, billing runs (their chunks and errors) and the real-time usage counters."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from catalog.models import QUANTITY_DIGITS, BillableMetric, Customer, Plan, Subscription

from .invoices import Invoice


class PlanChangeKind(models.TextChoices):
    UPGRADE = "upgrade", "Upgrade (now, prorated)"
    DOWNGRADE = "downgrade", "Downgrade (at period end)"


class SubscriptionPlanChange(models.Model):
    """A plan change of a subscription: applied at once (upgrade) or scheduled for the period end."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="plan_changes")
    from_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    to_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=PlanChangeKind.choices)
    requested_at = models.DateTimeField()
    effective_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-effective_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(applied_at__isnull=True, canceled_at__isnull=True),
                name="one_pending_plan_change_per_subscription",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.from_plan} → {self.to_plan}"


class BillingRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partial: some subscriptions not billed"
    FAILED = "failed", "Failed: no subscription billed"


class BillingRun(models.Model):
    """One closing of billing periods as of ``as_of``; chunks of subscriptions report into it."""

    as_of = models.DateTimeField(help_text="Periods that ended at or before this moment are invoiced.")
    trigger = models.CharField(max_length=20, default="beat")
    requested_by = models.CharField(max_length=150, blank=True, help_text="Who started it from the admin.")
    note = models.TextField(blank=True, help_text="Why it was started by hand (the admin asks).")
    status = models.CharField(max_length=10, choices=BillingRunStatus.choices, default=BillingRunStatus.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    subscriptions_total = models.PositiveIntegerField(default=0)
    subscriptions_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    invoices_created = models.PositiveIntegerField(default=0)
    invoices_skipped = models.PositiveIntegerField(default=0)
    invoices_failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Billing run {self.pk} as of {self.as_of:%Y-%m-%d %H:%M}"

    @property
    def progress_percent(self) -> int:
        if not self.subscriptions_total:
            return 100 if self.finished_at else 0
        return int(100 * self.subscriptions_done / self.subscriptions_total)


class BillingRunChunk(models.Model):
    """One chunk of a run's subscriptions as handed to a worker (invoicing/README.md, "Stalled runs").

    A chunk is *abandoned* when it is neither finished nor abandoned and its last sign of life —
    ``started_at`` (set each time a worker starts it) or, if no worker ever started it, the run's
    ``started_at`` — is older than ``METERLINE_BILLING_RUN_STALL_TIMEOUT``: its worker was killed or its
    message was lost. The next beat pass marks it and closes the run; the next run bills its subscriptions.
    """

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    subscription_ids = models.JSONField(default=list)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    abandoned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="billing_run_chunk_number_unique")]

    def __str__(self) -> str:
        return f"Chunk {self.number} of run {self.run_id}"


class BillingRunError(models.Model):
    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="errors")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField(null=True, blank=True)
    message = models.TextField()
    abandoned = models.BooleanField(
        default=False, help_text="Not billed by this run: its chunk's worker was lost. The next run bills it."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.subscription_id}: {self.message[:80]}"


class RealtimeUsageCounter(models.Model):
    """Running usage of one customer's metric over one usage window, kept by real-time billing.

    Written only under the customer's wallet lock, in the transaction that stores the events it counts
    (``invoicing.realtime``), so "usage before" a request is one indexed row instead of an aggregate over
    the period's events. Only for SUM and COUNT metrics (the increment is computable from the new events
    alone); created from one SQL aggregate the first time it is needed. ``definition`` fingerprints the
    metric's definition (aggregation, event type, value property, filters, start): a counter of an edited
    metric is recomputed. Derived data — the period invoice always aggregates the events themselves.

    A dimensional price's usage (``{dimension values: quantity}``) is one row per (customer, metric,
    window, dimension paths): ``dimensions`` names the paths (a fingerprint; empty for a plain counter),
    ``combinations`` holds the paths and every combination's quantity, ``usage`` their sum
    (``invoicing.usage_counters``).
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.ForeignKey(BillableMetric, on_delete=models.CASCADE, related_name="+", db_index=False)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    # sha256 of the dimension paths (JSON), "" for the plain counter of the metric's quantity.
    dimensions = models.CharField(max_length=64, default="", db_default="", blank=True)
    definition = models.CharField(max_length=64)
    usage = models.DecimalField(**QUANTITY_DIGITS)
    # A dimensional counter's {"paths": [...], "usage": [[[value text or null, ...], "quantity"], ...]}
    # (quantities as Decimal text); null for a plain counter.
    combinations = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "window_start", "window_end", "dimensions"],
                name="realtime_usage_counter_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.metric_id} [{self.window_start:%Y-%m-%d}, {self.window_end:%Y-%m-%d}): {self.usage}"


# Delivery: issued invoices and credit notes e-mailed to the customer (invoicing/README.md, "Delivery").

"""Spend alerts and spend caps (invoicing/SPEND.md): what a customer's accrued usage cost of the current
period is watched against, and what the watch recorded.

- ``SpendAlert``: thresholds (amounts, or percentages of a budget) on a customer's (or one subscription's)
  accrued usage cost; each threshold fires once per period (``SpendAlertFiring``, a unique constraint);
- ``SpendCap``: a hard cap on a customer's accrued usage cost per period; reached, it refuses the
  customer's events (``Customer.spend_blocked_since``) or accepts and flags them, per ``on_reach``;
- ``SpendWatch``: per watched customer, when its spend was last evaluated (the sweep's watermark).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from catalog.models import BillableMetric, Customer, Merchant, Subscription
from catalog.validators import validate_currency_code, validate_email_list
from core.ids import new_public_id

from .invoices import MONEY_DIGITS

# Bounds of every number an alert or a cap takes (400 beyond, in the API and the admin).
SPEND_AMOUNT_MAX = Decimal("1000000000")  # 1e9 in the currency: a budget, a threshold amount or a cap
SPEND_PERCENT_MAX = Decimal("1000")  # a threshold may be up to 10× the budget
SPEND_THRESHOLDS_MAX = 10


def new_spend_alert_id() -> str:
    return new_public_id("sal")


class SpendThresholdKind(models.TextChoices):
    PERCENT = "percent", "Percentages of the budget"
    AMOUNT = "amount", "Amounts"


class SpendAlert(models.Model):
    """Thresholds on the accrued usage cost (or one metric's usage) of a customer's current period (all its
    active subscriptions in ``currency``), or of one subscription's: each threshold crossed fires once per
    period, as a signed webhook (``spend.alert.fired.v0``) and an e-mail to ``recipients`` (else the
    customer's billing e-mails)."""

    id = models.CharField(primary_key=True, max_length=40, default=new_spend_alert_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="spend_alerts")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="spend_alerts")
    subscription = models.ForeignKey(
        Subscription,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="spend_alerts",
        help_text="Empty: every active subscription of the customer in the alert's currency.",
    )
    name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    # Empty: the thresholds are on the accrued usage cost (in ``currency``). Set: on the metric's usage of the
    # period (in its unit), over the subscriptions in ``currency`` that bill it.
    metric = models.ForeignKey(
        BillableMetric,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="spend_alerts",
        help_text="Empty: thresholds on the accrued usage cost. Set: on this metric's usage of the period.",
    )
    threshold_kind = models.CharField(max_length=8, choices=SpendThresholdKind.choices)
    budget = models.DecimalField(
        **MONEY_DIGITS,
        null=True,
        blank=True,
        help_text="The budget or commitment the percentages are of (required for percentages).",
    )
    # Ascending, distinct decimal strings: percentages (0 < p ≤ SPEND_PERCENT_MAX) or amounts.
    thresholds = models.JSONField(default=list)
    recipients = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_email_list],
        help_text="Who is e-mailed when a threshold is crossed, comma-separated. Empty: the customer's billing "
        "e-mails.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(budget__isnull=True) | Q(budget__gt=0), name="spend_alert_budget_positive"
            ),
            models.CheckConstraint(
                condition=~Q(threshold_kind=SpendThresholdKind.PERCENT) | Q(budget__isnull=False),
                name="spend_alert_percent_needs_budget",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.pk

    def threshold_amount(self, threshold: Decimal) -> Decimal:
        """The accrued cost at which ``threshold`` is crossed."""
        if self.threshold_kind == SpendThresholdKind.PERCENT:
            return self.budget * threshold / 100
        return threshold


class SpendEmailStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class SpendAlertFiring(models.Model):
    """A threshold of an alert crossed in a period: at most one row per (alert, period start, threshold), the
    constraint that makes an alert fire exactly once per period and threshold whoever evaluates it."""

    alert = models.ForeignKey(SpendAlert, on_delete=models.CASCADE, related_name="firings")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    threshold = models.DecimalField(**MONEY_DIGITS)
    threshold_amount = models.DecimalField(**MONEY_DIGITS)
    accrued = models.DecimalField(**MONEY_DIGITS, help_text="The accrued usage cost when it fired.")
    fired_at = models.DateTimeField()
    webhook_event_id = models.CharField(max_length=100, blank=True)
    email_status = models.CharField(max_length=8, choices=SpendEmailStatus.choices, default=SpendEmailStatus.QUEUED)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    email_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "period_start", "threshold"], name="spend_alert_fires_once_per_period"
            )
        ]
        indexes = [
            models.Index(fields=["email_status"], name="spend_firing_email_queued", condition=Q(email_status="queued"))
        ]

    def __str__(self) -> str:
        return f"{self.alert} at {self.threshold} ({self.period_start:%Y-%m-%d})"


class SpendCapMode(models.TextChoices):
    BLOCK = "block", "Refuse events (402 SPEND_CAP_REACHED)"
    FLAG = "flag", "Accept events and flag them"


class SpendCap(models.Model):
    """A hard cap on the customer's accrued usage cost of each period (its active subscriptions in
    ``currency``). The period state (``period_start``, ``reached_at``, ``lifted_at``) belongs to the period
    last evaluated and starts over with the next one."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="spend_cap")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="spend_caps")
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    amount = models.DecimalField(**MONEY_DIGITS)
    on_reach = models.CharField(max_length=8, choices=SpendCapMode.choices, default=SpendCapMode.BLOCK)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    accrued = models.DecimalField(**MONEY_DIGITS, default=Decimal(0))
    # When the accrued cost reached ``amount`` in this period: from then on the customer's events are refused
    # (block) or flagged (flag: the events received since ``reached_at`` in the period are over the cap).
    reached_at = models.DateTimeField(null=True, blank=True)
    # Finance lifted the cap for the rest of the period: not enforced again until the next period.
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="spend_cap_amount_positive")]

    def __str__(self) -> str:
        return f"{self.amount.normalize():f} {self.currency} cap of {self.customer_id}"


class SpendWatch(models.Model):
    """A customer with spend alerts or a cap, and when its spend was last evaluated: the sweep evaluates the
    customers whose events arrived since (``evaluated_at``), oldest first, a bounded number per run."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="spend_watch")
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["evaluated_at"], name="spend_watch_evaluated_at")]

    def __str__(self) -> str:
        return f"Spend watch of {self.customer_id}"

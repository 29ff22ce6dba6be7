"""Dunning: reminders of overdue invoices (``services.dunning``, invoicing/RECEIVABLES.md)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from catalog.models import Customer, Merchant

from .delivery import DocumentDelivery
from .invoices import Invoice


def validate_dunning_steps(value) -> None:
    """A list of 1 to 10 distinct whole days after the due date, ascending, each from 1 to 365."""
    if not isinstance(value, list) or not all(isinstance(day, int) and not isinstance(day, bool) for day in value):
        raise ValidationError("Give whole days after the due date, e.g. [3, 7, 14].")
    if not 1 <= len(value) <= 10:
        raise ValidationError("Give 1 to 10 reminder days.")
    if any(not 1 <= day <= 365 for day in value):
        raise ValidationError("Each reminder day is from 1 to 365 days after the due date.")
    if value != sorted(set(value)):
        raise ValidationError("Reminder days are distinct and in ascending order, e.g. [3, 7, 14].")


def default_dunning_steps() -> list[int]:
    return [3, 7, 14]


class DunningAfterFinal(models.TextChoices):
    NOTHING = "nothing", "Nothing (keep billing and collecting as usual)"
    MARK_PAST_DUE = "mark_past_due", "Mark the subscription past due"
    BLOCK_USAGE = "block_usage", "Mark the subscription past due and block its real-time usage"


class DunningSettings(models.Model):
    """A merchant's reminder schedule for overdue invoices. A merchant without a row, or with ``enabled`` off,
    sends no reminders (customers are not e-mailed about old invoices the day dunning is deployed)."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="dunning_settings"
    )
    enabled = models.BooleanField("send reminders", default=True)
    steps = models.JSONField(
        "reminder days",
        default=default_dunning_steps,
        validators=[validate_dunning_steps],
        help_text="Days after the due date on which a reminder is e-mailed, ascending, e.g. [3, 7, 14].",
    )
    final_notice_days = models.PositiveSmallIntegerField(
        "final notice day",
        default=30,
        help_text="Days after the due date on which the final notice is e-mailed; after the last reminder day.",
    )
    after_final = models.CharField(
        "after the final notice",
        max_length=16,
        choices=DunningAfterFinal.choices,
        default=DunningAfterFinal.NOTHING,
        help_text=(
            "Past due: the subscription is flagged and still billed. Block: besides, the events of a real-time "
            "subscription are refused (402 USAGE_BLOCKED) until the overdue invoice is paid, credited or voided."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dunning settings"
        verbose_name_plural = "dunning settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(final_notice_days__gte=1, final_notice_days__lte=365),
                name="dunning_final_notice_days_range",
            )
        ]

    def __str__(self) -> str:
        return f"Dunning settings of {self.merchant}"

    def clean(self) -> None:
        if isinstance(self.steps, list) and self.steps and all(isinstance(day, int) for day in self.steps):
            if self.final_notice_days is not None and self.final_notice_days <= max(self.steps):
                raise ValidationError({"final_notice_days": "The final notice comes after the last reminder day."})

    @property
    def schedule(self) -> list[tuple[int, int]]:
        """(step, days after the due date): steps 1…n are the reminders, n + 1 the final notice."""
        days = [*self.steps, self.final_notice_days]
        return [(number, day) for number, day in enumerate(days, start=1)]

    @property
    def final_step(self) -> int:
        return len(self.steps) + 1


class DunningReminderStatus(models.TextChoices):
    QUEUED = "queued", "E-mail queued"
    SKIPPED = "skipped", "Skipped (a later step was due)"


class DunningReminder(models.Model):
    """One step of one invoice's dunning: at most one row per (invoice, step) — a constraint, so a beat
    retry or a second worker cannot send a step twice. Written by ``dunning_reminders_send_due`` only; the
    e-mail itself is the linked delivery (the delivery log says whether it was sent)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="dunning_reminders")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="dunning_reminders")
    step = models.PositiveSmallIntegerField(help_text="1 = the first reminder; the last step is the final notice.")
    days_after_due = models.PositiveSmallIntegerField()
    final = models.BooleanField("final notice", default=False)
    status = models.CharField(max_length=10, choices=DunningReminderStatus.choices)
    delivery = models.OneToOneField(
        DocumentDelivery, on_delete=models.PROTECT, null=True, blank=True, related_name="dunning_reminder"
    )
    action = models.CharField(
        max_length=200, blank=True, help_text="What the final notice set off (the merchant's choice)."
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["invoice", "step"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "step"], name="dunning_reminder_once_per_step"),
            models.CheckConstraint(condition=Q(step__gte=1), name="dunning_reminder_step_positive"),
        ]

    def __str__(self) -> str:
        what = "Final notice" if self.final else f"Reminder {self.step}"
        return f"{what} of {self.invoice} ({self.days_after_due} days after due)"

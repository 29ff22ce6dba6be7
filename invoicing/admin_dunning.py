"""Finance's dunning pages: each merchant's reminder schedule, the reminders of an invoice (read only, on the
invoice page) and of a customer (on the customer page). Reminders are written by the beat service only
(``invoicing/services/dunning.py``)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from catalog.admin_scoping import MerchantScopedAdminMixin

from .models import DunningReminder, DunningSettings, validate_dunning_steps

REMINDER_FIELDS = ("step_name", "days_after_due", "status", "created_at", "email_status", "action")


def _step_name(reminder: DunningReminder) -> str:
    return "Final notice" if reminder.final else f"Reminder {reminder.step}"


def _email_status(reminder: DunningReminder) -> str:
    delivery = reminder.delivery
    if delivery is None:
        return "—"
    return f"{delivery.get_status_display()}" + (f": {delivery.error}" if delivery.error else "")


class DunningStepsField(forms.CharField):
    """The reminder days as finance types them, "3, 7, 14"; stored as a list of whole days."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(day) for day in value)
        return value

    def to_python(self, value):
        text = super().to_python(value)
        try:
            days = [int(part) for part in text.replace("[", "").replace("]", "").split(",") if part.strip()]
        except ValueError:
            raise forms.ValidationError("Give whole days separated by commas, e.g. 3, 7, 14.")
        validate_dunning_steps(days)
        return days


class DunningSettingsForm(forms.ModelForm):
    steps = DunningStepsField(
        label="Reminder days",
        help_text="Days after the due date on which a reminder is e-mailed, ascending, e.g. 3, 7, 14.",
    )

    class Meta:
        model = DunningSettings
        fields = ("merchant", "enabled", "steps", "final_notice_days", "after_final")


@admin.register(DunningSettings)
class DunningSettingsAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """A merchant's reminder schedule. Reminders go out with the invoice's PDF, worded by the merchant's
    "Payment reminder" and "Final notice" e-mail templates (else the defaults)."""

    merchant_path = "merchant"
    form = DunningSettingsForm
    list_display = ("merchant", "enabled", "steps_display", "final_notice_days", "after_final")
    fieldsets = (
        (None, {"fields": ("merchant", "enabled")}),
        ("Schedule", {"fields": ("steps", "final_notice_days", "after_final")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return ("merchant",) if obj is not None else ()

    @admin.display(description="Reminder days")
    def steps_display(self, settings: DunningSettings) -> str:
        return ", ".join(str(day) for day in settings.steps)


class DunningReminderInline(MerchantScopedAdminMixin, admin.TabularInline):
    """An invoice's dunning history: read only."""

    model = DunningReminder
    merchant_path = "merchant"
    fk_name = "invoice"
    extra = 0
    can_delete = False
    verbose_name = "payment reminder"
    verbose_name_plural = "Dunning (payment reminders)"
    fields = REMINDER_FIELDS
    readonly_fields = REMINDER_FIELDS
    ordering = ("step",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("delivery")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Step")
    def step_name(self, reminder: DunningReminder) -> str:
        return _step_name(reminder)

    @admin.display(description="E-mail")
    def email_status(self, reminder: DunningReminder) -> str:
        return _email_status(reminder)


def _usage_state(subscription) -> str:
    if not subscription.is_usage_blocked:
        return "usage accepted"
    since = f"{subscription.usage_blocked_since:%Y-%m-%d %H:%M}"
    if not subscription.is_real_time:
        # Post-paid usage is not looked up on the ingest path: the block takes effect if it turns real-time.
        return f"usage blocked since {since} (post-paid: its usage is still accepted and billed)"
    return f"real-time usage blocked since {since}"


def past_due_list(subscriptions) -> str:
    """The customer's subscriptions past due after a final notice, and whether their real-time usage is
    blocked (empty when none is)."""
    if not subscriptions:
        return ""
    rows = [
        (
            subscription.name,
            f"{subscription.past_due_since:%Y-%m-%d %H:%M}",
            _usage_state(subscription),
        )
        for subscription in subscriptions
    ]
    return format_html(
        "<p><strong>Past due</strong> (until the overdue invoices are paid, credited or voided):</p><ul>{}</ul>",
        format_html_join("", "<li>{}: past due since {}; {}</li>", rows),
    )


def dunning_table(reminders) -> str:
    """A customer's recent reminders as an HTML table (the customer page's "Dunning")."""
    if not reminders:
        return "No reminders sent."
    rows = [
        (
            reminder.invoice.number or reminder.invoice.id,
            reminder.invoice.get_status_display(),
            _step_name(reminder),
            reminder.get_status_display(),
            f"{reminder.created_at:%Y-%m-%d %H:%M}",
            _email_status(reminder),
            reminder.action or "—",
        )
        for reminder in reminders
    ]
    return format_html(
        "<table><thead><tr><th>Invoice</th><th>Invoice status</th><th>Step</th><th>Reminder</th><th>At</th>"
        "<th>E-mail</th><th>Action</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>", rows),
    )

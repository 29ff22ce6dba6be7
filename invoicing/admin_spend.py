"""Spend alerts and spend caps in the admin (invoicing/SPEND.md): finance (the change permissions, "Billing
admin") sets them through ``invoicing.spend.services``, the services the API calls; each alert's page lists
the thresholds it fired; a cap's page shows its state in the current period and the "lift for the rest of
the period" action. A viewer sees them and changes nothing."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from catalog.admin_scoping import MerchantScopedAdminMixin
from core.formatting import decimal_string

from .models import SpendAlert, SpendAlertFiring, SpendCap, SpendThresholdKind
from .spend.selectors import spend_cap_flagged_events
from .spend.services import (
    SpendAlertInput,
    SpendError,
    spend_alert_create,
    spend_alert_delete,
    spend_alert_update,
    spend_alert_validate,
    spend_cap_delete,
    spend_cap_lift,
    spend_cap_set,
    spend_cap_validate,
)

_FORM_FIELD = {
    "thresholdKind": "threshold_kind",
    "subscriptionId": "subscription",
    "metricId": "metric",
    "onReach": "on_reach",
}
FIRING_FIELDS = (
    "period_start",
    "threshold",
    "threshold_amount",
    "accrued",
    "fired_at",
    "email_status",
    "webhook_event_id",
)


class SpendAlertForm(forms.ModelForm):
    thresholds = forms.CharField(
        max_length=200,
        help_text="Comma-separated, e.g. 50, 80, 100 (percentages of the budget) or 500, 1000 (amounts).",
    )

    class Meta:
        model = SpendAlert
        fields = (
            "customer",
            "subscription",
            "name",
            "currency",
            "metric",
            "threshold_kind",
            "budget",
            "thresholds",
            "recipients",
            "active",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["thresholds"] = ", ".join(self.instance.thresholds)

    def alert_input(self) -> SpendAlertInput:
        data = self.cleaned_data
        subscription = data.get("subscription")
        return SpendAlertInput(
            currency=data.get("currency") or "",
            threshold_kind=data.get("threshold_kind") or "",
            thresholds=tuple(t.strip() for t in (data.get("thresholds") or "").split(",") if t.strip()),
            budget=data.get("budget"),
            name=data.get("name") or "",
            recipients=data.get("recipients") or "",
            subscription_id=subscription.pk if subscription else None,
            active=data.get("active", True),
            metric_id=data["metric"].pk if data.get("metric") else None,
        )

    def clean(self):
        data = super().clean()
        customer = data.get("customer")
        if customer is not None and not self.errors:
            try:
                spend_alert_validate(customer=customer, data=self.alert_input())
            except SpendError as error:
                self.add_error(_FORM_FIELD.get(error.field, error.field), str(error))
        return data


class SpendAlertFiringInline(MerchantScopedAdminMixin, admin.TabularInline):
    """The thresholds the alert fired: one row per period and threshold, read only."""

    model = SpendAlertFiring
    merchant_path = "alert__merchant"
    extra = 0
    can_delete = False
    verbose_name = "threshold fired"
    verbose_name_plural = "Thresholds fired"
    fields = FIRING_FIELDS
    readonly_fields = FIRING_FIELDS

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SpendAlert)
class SpendAlertAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    form = SpendAlertForm
    list_display = ("__str__", "customer", "subscription", "thresholds_display", "active", "firings_count")
    list_filter = ("active", "threshold_kind")
    search_fields = ("name", "customer__name", "customer__id")
    autocomplete_fields = ("customer",)
    inlines = (SpendAlertFiringInline,)

    @admin.display(description="Thresholds")
    def thresholds_display(self, alert: SpendAlert) -> str:
        unit = alert.metric.unit if alert.metric_id else alert.currency
        if alert.threshold_kind == SpendThresholdKind.PERCENT:
            return f"{', '.join(f'{t} %' for t in alert.thresholds)} of {decimal_string(alert.budget)} {unit}"
        return ", ".join(f"{t} {unit}" for t in alert.thresholds)

    @admin.display(description="Fired")
    def firings_count(self, alert: SpendAlert) -> int:
        return alert.firings.count()

    def save_model(self, request, obj, form, change):
        data = form.alert_input()
        if change:
            saved = spend_alert_update(alert=SpendAlert.objects.get(pk=obj.pk), data=data)
        else:
            saved = spend_alert_create(customer=form.cleaned_data["customer"], data=data)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        spend_alert_delete(alert=obj)


class SpendCapForm(forms.ModelForm):
    class Meta:
        model = SpendCap
        fields = ("customer", "currency", "amount", "on_reach")

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                spend_cap_validate(currency=data["currency"], amount=data["amount"], on_reach=data["on_reach"])
            except SpendError as error:
                self.add_error(_FORM_FIELD.get(error.field, error.field), str(error))
        return data


@admin.register(SpendCap)
class SpendCapAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    form = SpendCapForm
    list_display = ("customer", "amount", "currency", "on_reach", "accrued", "reached_at", "lifted_at")
    list_filter = ("on_reach",)
    search_fields = ("customer__name", "customer__id")
    autocomplete_fields = ("customer",)
    readonly_fields = ("period_start", "period_end", "accrued", "reached_at", "lifted_at", "lifted_by", "flagged")
    actions = ("lift_for_the_rest_of_the_period",)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "customer") if obj is not None else self.readonly_fields

    @admin.display(description="Events flagged over the cap")
    def flagged(self, cap: SpendCap) -> int:
        return spend_cap_flagged_events(cap=cap)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        customer = obj.customer if change else data["customer"]
        spend_cap_set(
            customer=customer,
            currency=data["currency"],
            amount=data["amount"],
            on_reach=data["on_reach"],
            now=timezone.now(),
        )

    def delete_model(self, request, obj):
        spend_cap_delete(customer=obj.customer)

    def delete_queryset(self, request, queryset):
        for cap in queryset.select_related("customer"):
            spend_cap_delete(customer=cap.customer)

    @admin.action(description="Lift for the rest of the period", permissions=["change"])
    def lift_for_the_rest_of_the_period(self, request, queryset):
        now = timezone.now()
        caps = list(queryset.select_related("customer"))
        for cap in caps:
            spend_cap_lift(customer=cap.customer, now=now, lifted_by=request.user.get_username())
        self.message_user(request, f"Lifted {len(caps)} spend cap(s) until the end of their period.", messages.SUCCESS)

"""Costs in the admin: finance defines what serving a customer costs (e.g. GPU-seconds × $/GPU-second), the
definition the cost report and the margin read.

Declarative: writes go through ``costs.services`` (``cost_create``, ``cost_update``, ``cost_delete``), the
services the API calls, so the limit of costs per merchant and the model's validation hold here too; a refusal
is shown on the page (``ServiceRefused``). Deleting is the service's soft delete: the cost stays listed, marked
deleted, read only. Scoped to the staff user's merchants like every billing admin; a viewer changes nothing.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from catalog.admin_numbers import DECIMAL_FORMFIELD_OVERRIDES
from catalog.admin_refusals import ServiceRefusalAdminMixin, ServiceRefused
from catalog.admin_scoping import MerchantScopedAdminMixin
from core.errors import Conflict

from . import services
from .models import Cost

# A cost's product and merchant are fixed once it exists (``cost_update`` changes only these).
EDITABLE_FIELDS = tuple(sorted(services.COST_FIELDS))
FIXED_FIELDS = ("merchant", "product")
RECORD_FIELDS = ("id", "created_at", "updated_at", "deleted_at")


class CostAdminForm(forms.ModelForm):
    class Meta:
        model = Cost
        fields = (
            "merchant",
            "product",
            "name",
            "unit_cost",
            "currency",
            "unit",
            "aggregation",
            "event_type",
            "value_property",
            "group_by",
        )
        widgets = {"group_by": forms.Textarea(attrs={"rows": 3, "cols": 60})}


def _refusal(error: Exception) -> ServiceRefused:
    if isinstance(error, ValidationError):
        return ServiceRefused("Not saved: " + " ".join(error.messages))
    return ServiceRefused(f"Not saved: {error}")


@admin.register(Cost)
class CostAdmin(ServiceRefusalAdminMixin, MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    form = CostAdminForm
    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES
    list_display = ("name", "product", "unit_cost", "currency", "unit", "aggregation", "event_type", "deleted_at")
    list_filter = (("deleted_at", admin.EmptyFieldListFilter), "aggregation", "merchant")
    list_select_related = ("product", "merchant")
    search_fields = ("name", "id", "event_type", "product__name")
    readonly_fields = RECORD_FIELDS
    fieldsets = (
        (None, {"fields": ("merchant", "product", "name")}),
        (
            "Cost per unit",
            {
                "fields": ("unit_cost", "currency", "unit"),
                "description": "What one unit of the quantity below costs, e.g. 0.0005 USD per GPU-second.",
            },
        ),
        (
            "Metered from usage events",
            {
                "fields": ("event_type", "aggregation", "value_property", "group_by"),
                "description": "Aggregated like a billable metric: the events of this type, e.g. gpu.job, "
                "summed (or counted…) from the property named, e.g. $.seconds. Dimensions split the report, "
                'e.g. {"gpu": "$.gpu"}.',
            },
        ),
        ("Record", {"fields": RECORD_FIELDS, "classes": ("collapse",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        if obj.deleted_at is not None:
            return fields + FIXED_FIELDS + EDITABLE_FIELDS  # retired: kept for past reports, read only
        return fields + FIXED_FIELDS

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and (obj is None or obj.deleted_at is None)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            if change:
                changes = {name: data[name] for name in form.changed_data if name in services.COST_FIELDS}
                saved = services.cost_update(cost=Cost.objects.get(pk=obj.pk), changes=changes)
            else:
                fields = {name: data[name] for name in services.COST_FIELDS if name in data}
                saved = services.cost_create(merchant=data["merchant"], product=data["product"], **fields)
        except (Conflict, ValidationError) as error:
            raise _refusal(error) from None
        # The admin goes on to log and link ``obj``: make it the row the service wrote.
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.cost_delete(cost=obj, now=timezone.now())

    def delete_queryset(self, request, queryset):
        now = timezone.now()
        with transaction.atomic():
            for cost in queryset.filter(deleted_at__isnull=True):
                services.cost_delete(cost=cost, now=now)

"""Commitments in the admin: a minimum spend over a term, created through ``commitment_create`` with,
optionally, the lower rate it buys for one plan price (written as the customer's negotiated rate windowed on
the term; the committed rates are listed read-only on the commitment). A trued-up commitment is settled: nobody
edits it, and nobody deletes a commitment.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from catalog.admin_numbers import DECIMAL_FORMFIELD_OVERRIDES, money_display
from catalog.admin_refusals import ServiceRefusalAdminMixin, ServiceRefused
from catalog.admin_scoping import MerchantScopedAdminMixin, request_merchant_ids, scope_queryset
from catalog.models import Price
from core.formatting import decimal_string

from . import services
from .errors import WalletError
from .models import Commitment, CommitmentRate


class CommitmentForm(forms.ModelForm):
    """The commitment and, optionally, the lower rate it buys for one plan price (the service takes several)."""

    committed_price = forms.ModelChoiceField(
        queryset=Price.objects.none(),
        required=False,
        label="Discounted price",
        help_text="Optional: a per-unit or per-package plan price the commitment buys a lower rate for.",
    )
    committed_unit_price = forms.DecimalField(
        max_digits=30,
        decimal_places=12,
        required=False,
        label="Committed rate per unit",
        help_text="Per unit, as stored: 0.000001 per token is $0.001 per 1K. It rates the billing periods that "
        "start in the term; the plan (or a later negotiated) rate after it.",
    )

    class Meta:
        model = Commitment
        fields = ("customer", "currency", "amount", "term_start", "term_end", "metric_ids", "description")

    def clean(self):
        data = super().clean()
        if bool(data.get("committed_price")) != (data.get("committed_unit_price") is not None):
            raise forms.ValidationError("Give both the discounted price and its committed rate, or neither.")
        return data


class CommitmentRateInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = CommitmentRate
    merchant_path = "commitment__merchant"
    fields = ("price", "rate")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "committed rate"
    verbose_name_plural = "committed rates (negotiated rates over the term)"

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="rate per unit")
    def rate(self, row: CommitmentRate) -> str:
        return decimal_string(row.price.unit_price)


@admin.register(Commitment)
class CommitmentAdmin(ServiceRefusalAdminMixin, MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    form = CommitmentForm
    inlines = (CommitmentRateInline,)
    money_fields = dict.fromkeys(("amount", "drawn_amount", "shortfall"), "currency")
    list_display = (
        "customer",
        "amount_display",
        "currency",
        "term_start",
        "term_end",
        "trued_up_at",
        "shortfall_display",
        "billed_invoice_ref",
    )
    list_filter = ("currency",)
    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES
    amount_display = money_display("amount", "amount")
    drawn_amount_display = money_display("drawn_amount", "drawn amount")
    shortfall_display = money_display("shortfall", "shortfall")
    readonly_fields = ("trued_up_at", "drawn_amount_display", "shortfall_display", "billed_invoice_ref")
    fields = ("customer", "currency", "amount", "term_start", "term_end", "metric_ids", "description", *readonly_fields)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def get_fields(self, request, obj=None):
        # The committed rate is written with the commitment, never added to one that exists.
        return (*self.fields[:7], "committed_price", "committed_unit_price") if obj is None else self.fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            plan_prices = Price.objects.filter(customer__isnull=True, plan__isnull=False).select_related("plan")
            prices = scope_queryset(plan_prices, request_merchant_ids(request), "merchant")
            form.base_fields["committed_price"].queryset = prices.order_by("plan__name", "invoice_display_name")
        return form

    def has_change_permission(self, request, obj=None):
        # A commitment that was trued up is settled: nobody edits it, whatever their role.
        return super().has_change_permission(request, obj) and (obj is None or obj.trued_up_at is None)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        price = form.cleaned_data.get("committed_price")
        rates = [services.CommittedRate(price, form.cleaned_data["committed_unit_price"])] if price else []
        try:
            created, _ = services.commitment_create(
                customer=obj.customer,
                currency=obj.currency,
                amount=obj.amount,
                term_start=obj.term_start,
                term_end=obj.term_end,
                metric_ids=obj.metric_ids or (),
                description=obj.description,
                rates=rates,
            )
        except WalletError as error:
            raise ServiceRefused(f"The commitment was not saved: {error}") from None
        obj.pk = created.pk
        obj.merchant_id = created.merchant_id

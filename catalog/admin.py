"""The catalog in the Django admin: where finance staff build products, plans and prices.

Declarative on purpose: the rules live in ``catalog.validation`` (called from the models' ``clean()``
and the tier/rate formsets), writes with side effects go through ``catalog.services``.

Kept whole for now because every page here builds on the catalog's admin bases at the top
(``CatalogAdminMixin``, ``CatalogHistoryAdmin``, ``refusal_message``); forms, rates, numbers, scoping and the
schedule are already ``admin_*`` modules. The seam when it grows: those bases into a module of their own,
then the price page (``PriceAdmin`` and its inlines, a quarter of the file) into ``admin_prices.py``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from . import models, services
from .admin_forms import (
    ApiKeyAddForm,
    ApiKeyChangeForm,
    BillableMetricInlineFormSet,
    CatalogModelForm,
    DynamicRateInlineFormSet,
    FeeInlineFormSet,
    PlanAdminForm,
    PriceAdminForm,
    PriceTierInlineFormSet,
)
from .admin_history import AttributedHistoryAdmin
from .admin_numbers import DECIMAL_FORMFIELD_OVERRIDES, money_display, number_display
from .admin_rates import ScaledRateRowForm
from .admin_refusals import ServiceRefusalAdminMixin, ServiceRefused
from .admin_scoping import MerchantScopedAdminMixin, request_merchant_ids, scope_queryset
from .admin_simulator import plan_simulator_view
from .descriptions import format_number as _number
from .descriptions import price_rate_summary
from .services import api_key_create, api_key_revoke

RECORD_FIELDSET = ("Record", {"fields": ("id", "created_at", "updated_at"), "classes": ("collapse",)})
RECORD_FIELDS = ("id", "created_at", "updated_at")
HISTORY_REASON_MAX = 100  # simple-history's history_change_reason column


def _metric_or_fee_label(obj) -> str:
    """Tells apart metrics or fees of the same name: "Input tokens — Neural Language Engine (bm_…)"."""
    return f"{obj.name} — {obj.product.name} ({obj.pk})"


def _plan_price_label(price: models.Price) -> str:
    """A price a negotiated rate can override: "Input tokens — Neural Language Engine · Pro (price_…)"."""
    plan = f" — {price.plan}" if price.plan_id else ""
    return f"{price.invoice_display_name}{plan} ({price.pk})"


CHOICE_LABELS = {
    models.BillableMetric: _metric_or_fee_label,
    models.Fee: _metric_or_fee_label,
    models.Price: _plan_price_label,
}


class CatalogAdminMixin(MerchantScopedAdminMixin):
    """Shared by every catalog page: finance-friendly forms, N+1-free foreign-key choices, and only the
    merchants of a staff user bound to some (``merchant_path``, ``catalog.admin_scoping``)."""

    form = CatalogModelForm
    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if related is models.Plan:
            kwargs.setdefault("queryset", models.Plan.objects.select_related("product"))
        elif related is models.Price:
            # Only plan prices can be overridden; the label names the plan and its product.
            kwargs.setdefault(
                "queryset", models.Price.objects.filter(customer__isnull=True).select_related("plan__product")
            )
        elif related in (models.BillableMetric, models.Fee):
            kwargs.setdefault("queryset", related.objects.select_related("product"))
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if related in CHOICE_LABELS and field is not None and hasattr(field, "label_from_instance"):
            field.label_from_instance = CHOICE_LABELS[related]
        return field


class CatalogHistoryAdmin(CatalogAdminMixin, AttributedHistoryAdmin):
    """A catalog page with its change history (read-only, see ``AttributedHistoryAdmin``)."""


class FixedAfterCreateMixin:
    """Fields the catalog's update service never changes (``fixed_fields``) are read-only on a change page.

    The API silently keeps them (``product_update`` changes only name, description and metadata…); the
    admin shows them read-only instead of saving what the service would refuse to write.
    """

    fixed_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        return fields + tuple(name for name in self.fixed_fields if name not in fields)


def refusal_message(error: Exception, *, done: str = "saved") -> str:
    if isinstance(error, services.CatalogConflict):
        return f"Not {done}: {error.message}"
    if isinstance(error, ValidationError):
        return f"Not {done}: " + " ".join(error.messages)
    return f"Not {done}: {error}"


class PlanListFilter(admin.RelatedFieldListFilter):
    """Plans named with their product, in one query; only the user's merchants' plans."""

    def field_choices(self, field, request, model_admin):
        plans = scope_queryset(models.Plan.objects.select_related("product"), request_merchant_ids(request), "merchant")
        return [(plan.pk, str(plan)) for plan in plans]


# --- Merchants and API keys ------------------------------------------------------------------


@admin.register(models.Merchant)
class MerchantAdmin(CatalogHistoryAdmin):
    merchant_path = "pk"
    list_display = (
        "name",
        "id",
        "default_currency",
        "rounding_mode",
        "invoice_grace_period",
        "invoice_number_prefix",
        "created_at",
    )
    list_filter = ("default_currency", "rounding_mode", "country")
    search_fields = ("name", "id", "email", "tax_id")
    readonly_fields = RECORD_FIELDS
    fieldsets = (
        (None, {"fields": ("name", "email", "tax_id")}),
        ("Address", {"fields": ("address_line1", "address_line2", "city", "state", "postal_code", "country")}),
        (
            "Invoicing",
            {"fields": ("default_currency", "rounding_mode", "invoice_grace_period", "invoice_number_prefix")},
        ),
        RECORD_FIELDSET,
    )

    def has_add_permission(self, request) -> bool:
        # A staff user bound to merchants could not see a merchant they add: only unrestricted staff add them.
        return request_merchant_ids(request) is None and super().has_add_permission(request)


@admin.register(models.ApiKey)
class ApiKeyAdmin(CatalogAdminMixin, admin.ModelAdmin):
    """Keys are created by ``api_key_create``; the secret is shown once, the digest never."""

    merchant_path = "merchant"

    list_display = ("name", "merchant", "key_start", "is_active", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "merchant")
    list_select_related = ("merchant",)
    search_fields = ("name", "prefix", "id", "merchant__name")
    actions = ["revoke_selected"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = ApiKeyChangeForm if obj is not None else ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return ((None, {"fields": ("merchant", "name")}),)
        return ((None, {"fields": ("name", "merchant", "key_start", "id")}), ("Use", {"fields": self.used_fields}))

    used_fields = ("created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("merchant", "key_start", "id", *self.used_fields)

    @admin.display(description="key starts with")
    def key_start(self, obj: models.ApiKey) -> str:
        return f"{obj.prefix}…"

    @admin.display(description="active", boolean=True)
    def is_active(self, obj: models.ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, raw_key = api_key_create(merchant=obj.merchant, name=obj.name)
        # The admin goes on to log and link ``obj`` by its primary key (``log_addition``, ``response_add``;
        # nothing saves it again): make it the row the service created.
        obj.pk = api_key.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"Copy this API key now, it will not be shown again: {raw_key}",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        now = timezone.now()
        active = list(queryset.filter(revoked_at__isnull=True))
        for api_key in active:
            api_key_revoke(api_key=api_key, now=now)
        self.message_user(request, f"Revoked {len(active)} key(s); they no longer authenticate.", messages.SUCCESS)


# --- Products, metrics, fees -------------------------------------------------------------------


class BillableMetricInline(CatalogAdminMixin, admin.TabularInline):
    model = models.BillableMetric
    merchant_path = "merchant"
    formset = BillableMetricInlineFormSet
    fields = ("name", "unit", "aggregation", "event_type", "value_property")
    extra = 0
    show_change_link = True
    verbose_name = "metric"


class FeeInline(CatalogAdminMixin, admin.TabularInline):
    model = models.Fee
    merchant_path = "merchant"
    formset = FeeInlineFormSet
    fields = ("name", "description", "item_id")
    extra = 0
    show_change_link = True


@admin.register(models.Product)
class ProductAdmin(FixedAfterCreateMixin, CatalogHistoryAdmin):
    merchant_path = "merchant"
    fixed_fields = ("merchant",)  # product_update: name, description, metadata
    list_display = ("name", "merchant", "id", "metric_count", "plan_count", "created_at")
    list_filter = ("merchant",)
    list_select_related = ("merchant",)
    search_fields = ("name", "id", "description")
    readonly_fields = RECORD_FIELDS
    fieldsets = ((None, {"fields": ("merchant", "name", "description", "metadata")}), RECORD_FIELDSET)
    inlines = (BillableMetricInline, FeeInline)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                metric_total=Count("billable_metrics", distinct=True),
                plan_total=Count("plans", distinct=True),
            )
        )

    @admin.display(description="metrics", ordering="metric_total")
    def metric_count(self, obj) -> int:
        return obj.metric_total

    @admin.display(description="plans", ordering="plan_total")
    def plan_count(self, obj) -> int:
        return obj.plan_total


class MetricFilterInline(CatalogAdminMixin, admin.TabularInline):
    model = models.MetricFilter
    merchant_path = "metric__merchant"
    fields = ("property_path", "operator", "values")
    extra = 0
    verbose_name = "event filter"


@admin.register(models.BillableMetric)
class BillableMetricAdmin(FixedAfterCreateMixin, CatalogHistoryAdmin):
    merchant_path = "merchant"
    # billable_metric_update: the aggregation and product are fixed once usage was counted that way.
    fixed_fields = ("merchant", "product", "aggregation")
    list_display = ("name", "product", "aggregation", "event_type", "value_property", "unit", "merchant")
    list_filter = ("aggregation", "product", "merchant")
    list_select_related = ("product", "merchant")
    search_fields = ("name", "id", "event_type", "value_property", "product__name")
    readonly_fields = RECORD_FIELDS
    fieldsets = (
        (None, {"fields": ("merchant", "product", "name", "description", "unit", "item_id")}),
        (
            "How usage is measured",
            {"fields": ("event_type", "aggregation", "value_property", "group_by", "event_from")},
        ),
        RECORD_FIELDSET,
    )
    inlines = (MetricFilterInline,)


@admin.register(models.Fee)
class FeeAdmin(FixedAfterCreateMixin, CatalogHistoryAdmin):
    merchant_path = "merchant"
    fixed_fields = ("merchant", "product")  # fee_update: name, description, item id
    list_display = ("name", "product", "item_id", "merchant", "id")
    list_filter = ("product", "merchant")
    list_select_related = ("product", "merchant")
    search_fields = ("name", "id", "description", "product__name")
    readonly_fields = RECORD_FIELDS
    fieldsets = ((None, {"fields": ("merchant", "product", "name", "description", "item_id")}), RECORD_FIELDSET)


# --- Plans and prices --------------------------------------------------------------------------


class PriceSummaryInline(MerchantScopedAdminMixin, admin.TabularInline):
    """Read-only price rows with a link to each price's own page (tiers cannot nest here)."""

    model = models.Price
    merchant_path = "merchant"
    template = "admin/catalog/edit_inline/tabular_with_add_link.html"
    fields = ("invoice_display_name", "charges_for", "model", "rate", "payment_term")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    add_link_label = "Add price"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("billable_metric", "fee", "customer", "plan")
            .prefetch_related("tiers")
        )

    @admin.display(description="charges for")
    def charges_for(self, price: models.Price) -> str:
        return str(price.billable_metric or price.fee)

    @admin.display(description="rate")
    def rate(self, price: models.Price) -> str:
        return price_rate_summary(price)


class PlanPriceInline(PriceSummaryInline):
    fk_name = "plan"
    fields = ("invoice_display_name", "charges_for", "model", "rate", "payment_term", "customer")
    readonly_fields = fields
    verbose_name_plural = "prices (open one to edit it and its tiers)"
    add_link_param = "plan"


class PlanVersionInline(MerchantScopedAdminMixin, admin.TabularInline):
    """The plan's versions, newest first: read-only (a new version is minted by the API or by a price's
    "Save as a new plan version"); the default is the one floating subscriptions bill from."""

    model = models.PlanVersion
    merchant_path = "plan__merchant"
    fields = ("number", "status", "is_default", "lines", "based_on", "created_at", "created_by")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "versions (the default bills floating subscriptions from their next period)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("plan", "based_on")
            .prefetch_related("lines__price")
            .order_by("-number")
        )

    @admin.display(description="default", boolean=True)
    def is_default(self, version: models.PlanVersion) -> bool:
        return version.plan.default_version_id == version.pk

    @admin.display(description="lines")
    def lines(self, version: models.PlanVersion) -> str:
        summaries = []
        for line in version.lines.all():
            if line.price.plan_id is None:  # off the default's lines: shown in its plan's currency (not saved)
                line.price.plan = version.plan
            summaries.append(f"{line.key}: {price_rate_summary(line.price)}")
        return "; ".join(summaries)


@admin.register(models.Plan)
class PlanAdmin(FixedAfterCreateMixin, CatalogHistoryAdmin):
    merchant_path = "merchant"
    money_fields = {"minimum_commitment": "currency", "threshold_amount": "currency"}
    """Plans. ``PlanAdminForm`` refuses what ``plan_update`` refuses (cadence or anchor of a plan live
    subscriptions bill); merchant, product, currency and billing mode are fixed once created (the API
    cannot change them either)."""

    form = PlanAdminForm
    fixed_fields = ("merchant", "product", "currency", "billing_mode")
    list_display = (
        "name",
        "product",
        "currency",
        "billing_cadence",
        "minimum_commitment_display",
        "discount_display",
        "archived_at",
        "merchant",
    )
    list_filter = (
        "billing_cadence",
        "billing_mode",
        "currency",
        "product",
        "merchant",
        ("archived_at", admin.EmptyFieldListFilter),
    )
    list_select_related = ("product", "merchant")
    search_fields = ("name", "id", "invoice_display_name", "product__name")
    readonly_fields = RECORD_FIELDS
    fieldsets = (
        (None, {"fields": ("merchant", "product", "name", "description", "invoice_display_name")}),
        (
            "Billing",
            {
                "fields": (
                    "currency",
                    "billing_cadence",
                    "billing_anchor",
                    "billing_mode",
                    "minimum_commitment",
                    "discount_percent",
                )
            },
        ),
        (
            "Threshold billing",
            {
                "fields": ("threshold_amount", "threshold_ladder", "threshold_recurring"),
                "description": "Invoice a period's usage as soon as it reaches the amount, and the rest at the "
                "period end (invoicing/THRESHOLDS.md).",
            },
        ),
        ("Tax", {"fields": ("tax_behavior", "default_tax_code", "default_tax_rate")}),
        ("Renewal", {"fields": ("renewal_reminder_enabled", "renewal_reminder_days", "archived_at")}),
        RECORD_FIELDSET,
    )
    inlines = (PlanPriceInline, PlanVersionInline)
    minimum_commitment_display = money_display("minimum_commitment", "minimum commitment")
    discount_display = number_display("discount_percent", "discount", suffix=" %")

    def get_urls(self):
        def simulator(request, object_id):
            return plan_simulator_view(
                request, admin_site=self.admin_site, model_admin=self, plan_id=unquote(object_id)
            )

        custom = [
            path(
                "<path:object_id>/simulate/",
                self.admin_site.admin_view(require_safe(simulator)),
                name="catalog_plan_simulate",
            )
        ]
        return custom + super().get_urls()


class PriceTierInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = models.PriceTier
    merchant_path = "price__merchant"
    form = ScaledRateRowForm
    formset = PriceTierInlineFormSet
    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES
    fields = ("up_to", "unit_price", "flat_fee")
    extra = 0
    verbose_name = "tier"
    verbose_name_plural = (
        "tiers (graduated and volume prices; rates in the “price per” scale; leave the last tier's upper bound empty)"
    )


class DynamicRateInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = models.DynamicRate
    merchant_path = "price__merchant"
    form = ScaledRateRowForm
    formset = DynamicRateInlineFormSet
    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES
    fields = ("effective_from", "unit_price")
    extra = 0
    verbose_name = "scheduled rate"
    verbose_name_plural = "rate schedule (dynamic prices in schedule mode)"


@admin.register(models.Price)
class PriceAdmin(ServiceRefusalAdminMixin, CatalogHistoryAdmin):
    form = PriceAdminForm
    merchant_path = "merchant"
    list_display = (
        "invoice_display_name",
        "plan",
        "charges_for",
        "model",
        "rate",
        "payment_term",
        "customer",
        "merchant",
    )
    list_filter = (
        "model",
        "payment_term",
        ("customer", admin.EmptyFieldListFilter),
        ("plan", PlanListFilter),
        "merchant",
    )
    list_select_related = ("plan__product", "billable_metric", "fee", "customer", "merchant")
    search_fields = (
        "invoice_display_name",
        "id",
        "plan__name",
        "billable_metric__name",
        "fee__name",
        "customer__name",
        "customer__external_id",
    )
    autocomplete_fields = ("customer",)
    readonly_fields = RECORD_FIELDS
    inlines = (PriceTierInline, DynamicRateInline)
    fieldsets = (
        (
            "What it charges for",
            {
                "fields": (
                    "merchant",
                    "plan",
                    "plan_line_key",
                    ("billable_metric", "fee"),
                    "invoice_display_name",
                    "invoice_display_group",
                    "model",
                    "rate_per",
                    "payment_term",
                    "billing_cadence",
                    "quantity",
                )
            },
        ),
        (
            "Per unit or per package",
            {
                "fields": ("unit_price", "allows_rebate", "package_size", "package_rounding"),
                "classes": ("price-model", "model-standard", "model-package"),
                "description": "Standard: price per unit, or per 1K / 1M units as chosen in “price per”. "
                "Package: price per package of “package size” units.",
            },
        ),
        (
            "Percentage of an amount",
            {
                "fields": (
                    "percentage_rate",
                    "fixed_fee_per_event",
                    ("min_charge_per_event", "max_charge_per_event"),
                    ("min_charge_per_period", "max_charge_per_period"),
                ),
                "classes": ("price-model", "model-percentage"),
            },
        ),
        (
            "Dynamic rate",
            {
                "fields": ("dynamic_mode", "event_price_property", ("min_unit_price", "max_unit_price")),
                "classes": ("price-model", "model-dynamic"),
                "description": "In schedule mode, list the rates below under “rate schedule”.",
            },
        ),
        (
            "Allowances, discounts and commitments",
            {
                "fields": (
                    "free_units",
                    "usage_discount_units",
                    "discount_percent",
                    "minimum_commitment",
                    "is_obligation",
                )
            },
        ),
        (
            "Rates per event property",
            {
                "fields": ("dimensional_rates",),
                "description": "Optional: a rate of its own for each value of an event property, e.g. per model "
                "(nle-small, nle-large), or for each combination of up to three properties, e.g. per model and "
                "region, each with its own free units. Values not listed are priced at the rate above, or refused.",
            },
        ),
        (
            "Negotiated rate",
            {
                "fields": ("customer", "overrides", "effective_from", "effective_until"),
                "description": "Set both to make this price a negotiated rate that replaces a plan price for "
                "one customer. Optionally give it a window: it rates the billing periods that start in it "
                "(an end inside a period keeps the rate for that whole period); the plan price rates the others.",
            },
        ),
        (
            "Advanced",
            {
                "fields": ("grant_discount_enabled", "rate_type", "tax_supply_scope", "pricing_unit_id"),
                "classes": ("collapse",),
            },
        ),
        RECORD_FIELDSET,
    )

    class Media:
        js = ("catalog/price_form.js",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tiers")

    def get_form(self, request, obj=None, change=False, **kwargs):
        """Choosers hold only what fits: the plan's product's metrics and fees, the plan's own prices."""
        form = super().get_form(request, obj, change=change, **kwargs)
        plan = obj.plan if obj is not None and obj.plan_id else None
        if plan is None and request.GET.get("plan"):
            plan = models.Plan.objects.filter(pk=request.GET["plan"]).first()
        merchant_id = obj.merchant_id if obj is not None else request.GET.get("merchant")
        fields = form.base_fields
        for name in ("billable_metric", "fee"):
            if name in fields:
                if plan is not None:
                    fields[name].queryset = fields[name].queryset.filter(product_id=plan.product_id)
                elif merchant_id:
                    fields[name].queryset = fields[name].queryset.filter(merchant_id=merchant_id)
        if "overrides" in fields:
            if plan is not None:
                fields["overrides"].queryset = fields["overrides"].queryset.filter(plan_id=plan.pk)
            elif merchant_id:
                fields["overrides"].queryset = fields["overrides"].queryset.filter(merchant_id=merchant_id)
            if obj is not None:
                fields["overrides"].queryset = fields["overrides"].queryset.exclude(pk=obj.pk)
        return form

    @admin.display(description="charges for")
    def charges_for(self, price: models.Price) -> str:
        return str(price.billable_metric or price.fee)

    @admin.display(description="rate")
    def rate(self, price: models.Price) -> str:
        return price_rate_summary(price)

    # -- writes: price_create / price_update / price_delete, as the API -------------------------------
    #
    # The form and its tier/rate formsets ask the services' conflict rules first, so a refusal shows on
    # the page; a refusal the form could not foresee (a subscription started meanwhile) rolls the admin's
    # transaction back and comes back as an error message.

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:catalog_price_change", args=[object_id]))

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except ServiceRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        """Nothing yet: the price is written with its tiers and rates in ``save_related``, in one service call."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and obj.plan_id and obj.customer_id is None:
            return (
                *fieldsets[:-1],
                ("Live subscriptions", {"fields": ("save_as_new_version",)}),
                fieldsets[-1],
            )
        return fieldsets

    def save_related(self, request, form, formsets, change):
        schedule = {formset.prefix: formset for formset in formsets}
        tiers_formset, rates_formset = schedule.get("tiers"), schedule.get("dynamic_rates")
        tiers = tiers_formset.tier_rows() if tiers_formset is not None else None
        rates = rates_formset.rate_rows() if rates_formset is not None else None
        data = form.cleaned_data
        price = form.instance
        try:
            if change and data.get("save_as_new_version"):
                changes = {
                    name: data[name] for name in form.changed_data if name in data and name != "save_as_new_version"
                }
                copy, version = services.price_save_as_new_version(
                    price=form.original,
                    changes=changes,
                    tiers=tiers if tiers_formset is not None and tiers_formset.has_changed() else None,
                    rates=rates if rates_formset is not None and rates_formset.has_changed() else None,
                    created_by=f"admin {request.user.get_username()}",
                    now=timezone.now(),
                )
                price.pk = copy.pk  # the admin goes on to log and show the new price
                self.message_user(
                    request,
                    f"Saved as a new price in version {version.number} of the plan “{version.plan.name}”, now its "
                    "default. The previous price keeps billing the periods already running.",
                    messages.SUCCESS,
                )
                price.refresh_from_db()
                return
            if change:
                changes = {name: data[name] for name in form.changed_data if name in data}
                changes.pop("save_as_new_version", None)
                services.price_update(price=price, changes=changes, tiers=tiers, rates=rates)
            else:
                fields = {
                    name: value for name, value in data.items() if name not in {"merchant", "save_as_new_version"}
                }
                created = services.price_create(merchant=data["merchant"], fields=fields, tiers=tiers, rates=rates)
                # The admin goes on to log and link ``price``: make it the row the service created.
                price.pk = created.pk
        except (services.CatalogConflict, ValidationError) as error:
            raise ServiceRefused(refusal_message(error)) from None
        price.refresh_from_db()
        if any(formset.has_changed() for formset in formsets):
            # Tier rows carry no history of their own: record the table on the price's history row.
            record = price.history.order_by("-history_id").first()
            if record is not None:
                reason = _history_reason(price)
                record.history_change_reason = reason
                record.save(update_fields=["history_change_reason"])

    def construct_change_message(self, request, form, formsets, add=False):
        # The tier and rate rows were written by the service, not by the formsets: name the tables changed.
        message = super().construct_change_message(request, form, [], add)
        changed = [str(formset.model._meta.verbose_name_plural) for formset in formsets if formset.has_changed()]
        if changed and not add:
            message.append({"changed": {"fields": changed}})
        return message

    def delete_model(self, request, obj):
        try:
            services.price_delete(price=obj)
        except services.CatalogConflict as conflict:
            blocked = services.price_delete_blockers(price=obj)
            raise ServiceRefused(
                _price_delete_refusal(obj, blocked) if blocked else refusal_message(conflict, done="deleted")
            ) from None

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # all or none: one refused price keeps every selected one
            for price in queryset.select_related("plan"):
                self.delete_model(request, price)


def _price_delete_refusal(price: models.Price, blockers: list[dict]) -> str:
    plans = ", ".join(f"“{item['name']}”" for blocker in blockers for item in blocker["items"])
    return (
        f"The price “{price}” was not deleted: it is a line of the live plan {plans}. Archive the plan, or "
        "remove the price from the plan (only while no subscription bills the plan), then delete it."
    )


def _history_reason(price: models.Price) -> str:
    tiers = "; ".join(
        f"{'≤' + _number(t.up_to) if t.up_to is not None else 'rest'} @ {_number(t.unit_price)}"
        + (f" +{_number(t.flat_fee)}" if t.flat_fee else "")
        for t in price.tiers.order_by(*models.PriceTier._meta.ordering)
    )
    rates = "; ".join(f"{r.effective_from:%Y-%m-%d %H:%M} @ {_number(r.unit_price)}" for r in price.dynamic_rates.all())
    reason = " | ".join(
        part for part in (f"Tiers: {tiers}" if tiers else "", f"Rates: {rates}" if rates else "") if part
    )
    reason = reason or "Tiers and rates removed"
    return reason if len(reason) <= HISTORY_REASON_MAX else reason[: HISTORY_REASON_MAX - 1] + "…"


# --- Customers and subscriptions ---------------------------------------------------------------


class SubscriptionInline(MerchantScopedAdminMixin, admin.TabularInline):
    """The customer's subscriptions, read-only: plan, status and dates change only through the
    subscription page's buttons, which call invoicing's services (proration, final invoices, Invoice 0).
    The link under the table opens the add page with the customer and its merchant filled in."""

    model = models.Subscription
    merchant_path = "merchant"
    template = "admin/catalog/edit_inline/tabular_subscriptions.html"
    fields = ("name", "plan", "status", "started_at", "ending_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        # str(plan) reads its product: one query for the whole table.
        return super().get_queryset(request).select_related("plan__product")


class NegotiatedRateInline(PriceSummaryInline):
    fk_name = "customer"
    fields = (
        "invoice_display_name",
        "plan",
        "overrides",
        "charges_for",
        "model",
        "rate",
        "effective_from",
        "effective_until",
    )
    readonly_fields = fields
    verbose_name = "negotiated rate"
    verbose_name_plural = "negotiated rates"
    add_link_param = "customer"
    add_link_label = "Add negotiated rate"


class CustomerAdmin(FixedAfterCreateMixin, CatalogHistoryAdmin):
    """The customer page's catalog part. Not registered here: ``billing_site.admin`` composes it with the
    higher apps' mixins (usage, prepaid credit, invoicing) and registers the result."""

    merchant_path = "merchant"
    fixed_fields = ("merchant",)  # customer_update never moves a customer to another merchant
    list_display = ("name", "external_id", "email", "currency", "country", "merchant", "id")
    list_filter = ("merchant", "currency", "country")
    list_select_related = ("merchant",)
    search_fields = ("name", "external_id", "email", "id", "tax_id")
    readonly_fields = RECORD_FIELDS
    fieldsets = (
        (None, {"fields": ("merchant", "name", "external_id", "email", "billing_emails", "phone")}),
        ("Address", {"fields": ("address_line1", "address_line2", "city", "state", "postal_code", "country")}),
        (
            "Billing",
            {"fields": ("currency", "time_zone", "tax_id", "tax_rate", "credit_before_payment", "metadata")},
        ),
        RECORD_FIELDSET,
    )
    inlines = (SubscriptionInline, NegotiatedRateInline)
    # Read-only sections that higher apps add to an existing customer's page without catalog importing
    # them: metering (usage), wallets (prepaid credit), invoicing (upcoming invoice). Each entry is
    # (title, (method names…)); each app's mixin declares its own entries and display methods, and the
    # class composed in ``billing_site.admin`` concatenates them in page order.
    panels: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def get_queryset(self, request):
        # the change page shows the customer's merchant (read-only): read with the customer's row
        return super().get_queryset(request).select_related("merchant")

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        return fields + tuple(name for _, names in self.panels for name in names if name not in fields)

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        return fieldsets + [(title, {"fields": names}) for title, names in self.panels]


# Fields that only billing services may change on an existing subscription: moving them by hand would skip
# proration, final invoices and plan-change records. Invoicing's admin offers buttons that call its services.
SUBSCRIPTION_LIFECYCLE_FIELDS = (
    "merchant",
    "customer",
    "plan",
    "status",
    "started_at",
    "ending_at",
    "billing_anchor",
    "trial_ends_at",
    "test_clock",
    "plan_changed_at",
    "billing_mode",
    "elapsed_period_billing",
    "terminated_at",
    "terminated_by",
    "termination_reason",
)


class SubscriptionAdmin(CatalogHistoryAdmin):
    """Subscriptions, read-mostly: on an existing subscription only its terms are editable.

    Starting a subscription bills its opening invoice and changing its plan or ending it bills too, so the
    add page and the lifecycle buttons belong to invoicing (``invoicing.admin_subscriptions``'s mixin);
    ``billing_site.admin`` composes the two and registers the result. Alone, this class cannot add a
    subscription.
    """

    merchant_path = "merchant"

    list_display = ("name", "customer", "plan", "status", "started_at", "ending_at", "merchant")
    list_filter = ("status", ("plan", PlanListFilter), "merchant")
    list_select_related = ("customer", "plan__product", "merchant")
    search_fields = ("name", "id", "customer__name", "customer__external_id", "plan__name")
    autocomplete_fields = ("customer",)
    date_hierarchy = "started_at"
    readonly_fields = (*RECORD_FIELDS, "past_due_since", "usage_blocked_since")  # set by invoicing's dunning only
    add_fieldsets = (
        (None, {"fields": ("merchant", "customer", "plan", "name")}),
        ("Dates", {"fields": ("started_at", "ending_at", "billing_anchor", "trial_ends_at", "test_clock")}),
        (
            "Invoicing",
            {
                "fields": (
                    "billing_mode",
                    "auto_charge",
                    "tax_exempt",
                    "payment_term_days",
                    "version_policy",
                    "elapsed_period_billing",
                )
            },
        ),
        (
            "Threshold billing",
            {
                "fields": ("threshold_amount", "threshold_ladder", "threshold_recurring"),
                "description": "Overrides the plan's: invoice the period's usage as soon as it reaches the amount "
                "(empty: the plan's).",
            },
        ),
        ("Other", {"fields": ("metadata",), "classes": ("collapse",)}),
    )
    fieldsets = (
        (
            None,
            {"fields": ("merchant", "customer", "plan", "name", "status", "past_due_since", "usage_blocked_since")},
        ),
        (
            "Dates",
            {
                "fields": (
                    "started_at",
                    "ending_at",
                    "billing_anchor",
                    "trial_ends_at",
                    "plan_changed_at",
                    "test_clock",
                )
            },
        ),
        (
            "Invoicing",
            {
                "fields": (
                    "billing_mode",
                    "auto_charge",
                    "tax_exempt",
                    "payment_term_days",
                    "version_policy",
                    "elapsed_period_billing",
                )
            },
        ),
        (
            "Threshold billing",
            {
                "fields": ("threshold_amount", "threshold_ladder", "threshold_recurring"),
                "description": "Overrides the plan's: invoice the period's usage as soon as it reaches the amount "
                "(empty: the plan's).",
            },
        ),
        ("Termination", {"fields": ("terminated_at", "terminated_by", "termination_reason"), "classes": ("collapse",)}),
        ("Other", {"fields": ("metadata",), "classes": ("collapse",)}),
        RECORD_FIELDSET,
    )

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        if obj.status == models.SubscriptionStatus.TERMINATED:
            return fields + SUBSCRIPTION_LIFECYCLE_FIELDS + models.SUBSCRIPTION_TERMS_FIELDS
        return fields + SUBSCRIPTION_LIFECYCLE_FIELDS

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Invoices keep their subscription; ending one is "terminate", which bills the final invoice.
        return False


@admin.register(models.TestClock)
class TestClockAdmin(FixedAfterCreateMixin, CatalogAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    """Test clocks. Moving a clock bills its subscriptions (``test_clock_advance``) and deleting one is
    refused while they run (``test_clock_delete``): both are API operations, so the time and the deletion
    stamp are read-only here once the clock exists."""

    fixed_fields = ("merchant", "current_time", "deleted_at")
    list_display = ("__str__", "merchant", "current_time", "deleted_at", "id")
    list_filter = ("merchant", ("deleted_at", admin.EmptyFieldListFilter))
    list_select_related = ("merchant",)
    search_fields = ("name", "id", "description")
    readonly_fields = RECORD_FIELDS
    fieldsets = ((None, {"fields": ("merchant", "name", "description", "current_time", "deleted_at")}), RECORD_FIELDSET)


# --- Features ------------------------------------------------------------------------------------


@admin.register(models.Feature)
class FeatureAdmin(FixedAfterCreateMixin, CatalogAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    fixed_fields = ("merchant", "product")  # feature_update: key, name, type, metadata, metric
    list_display = ("key", "name", "type", "product", "billable_metric", "merchant", "id")
    list_filter = ("type", "product", "merchant")
    list_select_related = ("product", "merchant", "billable_metric")
    search_fields = ("key", "name", "id", "product__name")
    readonly_fields = RECORD_FIELDS
    fieldsets = (
        (None, {"fields": ("merchant", "product", "key", "name", "type", "billable_metric", "metadata")}),
        RECORD_FIELDSET,
    )


# --- Staff limited to merchants ------------------------------------------------------------------


class StaffMerchantAccessInline(admin.TabularInline):
    """The merchants a staff user is limited to (none: every merchant); only superusers see and edit it, so
    nobody widens their own access."""

    model = models.StaffMerchantAccess
    fields = ("merchant",)
    extra = 0
    verbose_name_plural = "merchants this user is limited to (none: every merchant; superusers: always every one)"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


class StaffUserAdmin(UserAdmin):
    """Django's user admin plus the merchants a staff user is limited to (registered by ``billing_site.admin``
    in place of ``django.contrib.auth``'s)."""

    inlines = (*UserAdmin.inlines, StaffMerchantAccessInline)

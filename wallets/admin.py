"""Prepaid credit in the admin: balances and ledger on the customer page (grant / top-up buttons),
a "low balances" list, read-only ledger, lots and deliveries, and webhook endpoints with "retry now".

The customer page belongs to catalog, which never imports wallets: ``CustomerCreditAdminMixin`` holds
the prepaid panel, the grant / top-up views and the page's template, and ``billing_site.admin`` mixes it
into the customer admin it composes and registers (this module registers nothing for Customer).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.admin_numbers import DECIMAL_FORMFIELD_OVERRIDES, money_display
from catalog.admin_refusals import ServiceRefusalAdminMixin, ServiceRefused
from catalog.admin_scoping import MerchantScopedAdminMixin
from core.formatting import decimal_string

from . import (
    admin_commitments,  # noqa: F401  (registers the commitment page)
    admin_entitlements,  # noqa: F401  (registers the entitlement and grant pages)
    selectors,
    services,
)
from .errors import WalletError
from .forms import CreditForm
from .models import (
    CreditLot,
    LedgerEntry,
    LowBalanceWallet,
    Wallet,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
    WebhookSettings,
)
from .webhooks import (
    webhook_delivery_replay,
    webhook_endpoint_save,
    webhook_endpoint_secret_rotate,
    webhooks_update,
)

LEDGER_ROWS_ON_CUSTOMER_PAGE = 25


WALLET_MONEY = dict.fromkeys(
    (
        "balance",
        "reserved_credit",
        "overage_outstanding",
        "expiring_credit",
        "low_balance_threshold",
        "auto_top_up_threshold",
        "auto_top_up_amount",
    ),
    "currency",
)


class ReadOnlyAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Rows written only by services: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def can_record_credit(request) -> bool:
    """Granting credit or recording a top-up writes the prepaid ledger: it takes that permission."""
    return request.user.has_perm("wallets.add_ledgerentry")


class CustomerCreditAdminMixin:
    """Prepaid credit on the customer page: balances, ledger and expiries (``panels``, added to the composed
    class's by ``billing_site.admin``), and the "Grant credit" page and button. Paid credit is sold on an
    invoice: invoicing's "Sell top-up" / "Sell reserved capacity" (``invoicing/admin_purchases.py``)."""

    panels = (("Prepaid credit", ("prepaid_balances", "prepaid_ledger", "upcoming_expiries")),)

    # "Grant credit" sits with the page's other buttons, shown only to who may use them.
    change_form_template = "admin/wallets/customer_change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {"can_record_credit": can_record_credit(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        extra = [
            path(
                "<path:object_id>/credit/grant/",
                self.admin_site.admin_view(self.grant_view),
                name="catalog_customer_credit_grant",
            ),
        ]
        return extra + super().get_urls()

    @admin.display(description="Prepaid balances")
    def prepaid_balances(self, obj):
        wallets = selectors.wallets_for_customer(customer=obj)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    w.currency,
                    decimal_string(w.balance),
                    decimal_string(w.available),
                    decimal_string(w.reserved_credit),
                    decimal_string(w.overage_outstanding),
                    w.get_policy_display(),
                    decimal_string(w.low_balance_threshold) or "—",
                )
                for w in wallets
            ),
        )
        if not wallets:
            return "No prepaid credit yet."
        return format_html(
            "<table><thead><tr><th>Currency</th><th>Balance</th><th>Available</th><th>Reserved</th>"
            "<th>Overage</th><th>Policy</th><th>Low-balance threshold</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Ledger (latest first)")
    def prepaid_ledger(self, obj):
        entries = selectors.ledger_for_customer(customer=obj)[:LEDGER_ROWS_ON_CUSTOMER_PAGE]
        if not entries:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    e.occurred_at.strftime("%Y-%m-%d %H:%M"),
                    e.get_kind_display(),
                    e.wallet.currency,
                    decimal_string(e.amount),
                    decimal_string(e.balance_after),
                    e.description or e.reference,
                )
                for e in entries
            ),
        )
        return format_html(
            "<table><thead><tr><th>When</th><th>Kind</th><th>Currency</th><th>Amount</th><th>Running balance</th>"
            "<th>Note</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Upcoming expiries")
    def upcoming_expiries(self, obj):
        lots = selectors.upcoming_expiries(customer=obj)[:20]
        if not lots:
            return "—"
        return format_html_join(
            "",
            "<div>{} {} ({}) expires {}</div>",
            (
                (
                    decimal_string(lot.remaining),
                    lot.wallet.currency,
                    lot.get_kind_display(),
                    f"{lot.expires_at:%Y-%m-%d %H:%M}",
                )
                for lot in lots
            ),
        )

    def grant_view(self, request, object_id):
        return self._credit_view(
            request,
            object_id,
            form_class=CreditForm,
            title="Grant credit",
            explanation="Free promotional credit. It is consumed before paid credit, soonest expiry first.",
            record=lambda customer, data, now: services.credit_grant(
                customer=customer,
                currency=data["currency"],
                amount=data["amount"],
                idempotency_key=data["idempotency_key"],
                expires_at=data["expires_at"],
                description=data["description"],
                now=now,
            ),
        )

    def _credit_view(self, request, object_id, *, form_class, title, explanation, record):
        if not can_record_credit(request):
            raise PermissionDenied
        customer = self.scoped_object_or_404(request, object_id)
        form = form_class(request.POST or None, initial={"currency": customer.currency})
        if request.method == "POST" and form.is_valid():
            try:
                result = record(customer, form.cleaned_data, timezone.now())
            except WalletError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    f"{result.entry.get_kind_display()} of {decimal_string(result.entry.amount)} "
                    f"{result.entry.wallet.currency} recorded; balance {decimal_string(result.entry.balance_after)}.",
                )
                return redirect(reverse("admin:catalog_customer_change", args=[customer.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "customer": customer,
            "form": form,
            "title": title,
            "explanation": explanation,
        }
        return TemplateResponse(request, "admin/wallets/credit_form.html", context)


class BelowThresholdFilter(admin.SimpleListFilter):
    title = "low balance"
    parameter_name = "below_threshold"

    def lookups(self, request, model_admin):
        return [("yes", "Below its threshold")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=LowBalanceWallet.objects.values("pk"))
        return queryset


@admin.register(Wallet)
class WalletAdmin(ServiceRefusalAdminMixin, MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    money_fields = WALLET_MONEY
    list_display = (
        "customer",
        "currency",
        "balance_display",
        "reserved_credit_display",
        "overage_outstanding_display",
        "policy",
        "low_balance_threshold_display",
    )
    list_filter = (BelowThresholdFilter, "policy", "currency", "merchant")
    search_fields = ("customer__name", "customer__external_id", "customer__id")
    list_select_related = ("customer",)
    formfield_overrides = DECIMAL_FORMFIELD_OVERRIDES
    balance_display = money_display("balance", "balance")
    reserved_credit_display = money_display("reserved_credit", "reserved credit")
    overage_outstanding_display = money_display("overage_outstanding", "overage outstanding")
    expiring_credit_display = money_display("expiring_credit", "expiring credit")
    low_balance_threshold_display = money_display("low_balance_threshold", "low balance threshold")
    fields = (
        "customer",
        "currency",
        "balance_display",
        "reserved_credit_display",
        "overage_outstanding_display",
        "expiring_credit_display",
        "next_expiry_at",
        "policy",
        "low_balance_threshold",
        "auto_top_up_threshold",
        "auto_top_up_amount",
        "auto_top_up_armed",
        "low_balance_since",
    )
    readonly_fields = (
        "customer",
        "currency",
        "balance_display",
        "reserved_credit_display",
        "overage_outstanding_display",
        "expiring_credit_display",
        "next_expiry_at",
        "auto_top_up_armed",
        "low_balance_since",
    )

    def has_add_permission(self, request):
        return False  # wallets open with their first credit or debit

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        # Never save the whole row: the cached balance may have moved since the form was loaded.
        try:
            services.wallet_policy_update(
                customer=obj.customer,
                currency=obj.currency,
                policy=obj.policy,
                low_balance_threshold=obj.low_balance_threshold,
                auto_top_up_threshold=obj.auto_top_up_threshold,
                auto_top_up_amount=obj.auto_top_up_amount,
                now=timezone.now(),
            )
        except WalletError as exc:
            raise ServiceRefused(f"Not saved: {exc}") from None


@admin.register(LowBalanceWallet)
class LowBalanceWalletAdmin(ReadOnlyAdmin):
    merchant_path = "merchant"
    money_fields = WALLET_MONEY
    list_display = (
        "customer",
        "currency",
        "balance_display",
        "low_balance_threshold_display",
        "low_balance_since",
        "policy",
    )
    list_filter = ("currency", "policy", "merchant")
    list_select_related = ("customer",)
    ordering = ("balance",)
    balance_display = money_display("balance", "balance")
    low_balance_threshold_display = money_display("low_balance_threshold", "low balance threshold")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    merchant_path = "wallet__merchant"
    money_fields = dict.fromkeys(("amount", "balance_after", "overage_amount"), "wallet.currency")
    list_display = (
        "occurred_at",
        "wallet",
        "sequence",
        "kind",
        "amount_display",
        "balance_after_display",
        "overage_amount_display",
        "reference",
    )
    amount_display = money_display("amount", "amount", currency="wallet.currency")
    balance_after_display = money_display("balance_after", "balance after", currency="wallet.currency")
    overage_amount_display = money_display("overage_amount", "overage", currency="wallet.currency")
    list_filter = ("kind", "wallet__currency")
    search_fields = (
        "wallet__customer__name",
        "wallet__customer__id",
        "reference",
        "idempotency_key",
        "subscription__id",
    )
    list_select_related = ("wallet__customer",)
    date_hierarchy = "occurred_at"


@admin.register(CreditLot)
class CreditLotAdmin(ReadOnlyAdmin):
    merchant_path = "wallet__merchant"
    money_fields = dict.fromkeys(("original_amount", "remaining", "price_paid"), "wallet.currency")
    list_display = (
        "wallet",
        "kind",
        "original_amount_display",
        "remaining_display",
        "expires_at",
        "expired_at",
        "price_paid_display",
        "purchase_invoice",
    )
    original_amount_display = money_display("original_amount", "original amount", currency="wallet.currency")
    remaining_display = money_display("remaining", "remaining", currency="wallet.currency")
    price_paid_display = money_display("price_paid", "price paid", currency="wallet.currency")
    list_filter = ("kind",)
    search_fields = ("wallet__customer__name", "purchase_invoice_ref")
    readonly_fields = ("purchase_invoice",)

    @admin.display(description="purchase invoice", ordering="purchase_invoice_ref")
    def purchase_invoice(self, lot):
        """The invoice a bought lot was sold on (``purchase_invoice_ref``); wallets names it, never imports it."""
        if not lot.purchase_invoice_ref:
            return "—"
        url = reverse("admin:invoicing_invoice_change", args=[quote(lot.purchase_invoice_ref)])
        return format_html('<a href="{}">{}</a>', url, lot.purchase_invoice_ref)

    list_select_related = ("wallet__customer",)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=WebhookEventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event, including types added later.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("merchant", "url", "description", "event_types", "enabled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A family name saved elsewhere (``invoice.paid``: every version) stays choosable here.
        extra = [name for name in (self.initial.get("event_types") or []) if name not in WebhookEventType.values]
        self.fields["event_types"].choices = [*WebhookEventType.choices, *((name, name) for name in extra)]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Endpoints as the merchant's portal edits them; the signing secret is generated, shown masked and
    rotated by the action (the old one keeps signing for 24 h)."""

    merchant_path = "merchant"
    form = WebhookEndpointForm
    list_display = ("url", "merchant", "enabled", "event_types_display", "created_at")
    list_filter = ("enabled", "merchant")
    readonly_fields = ("secret_masked", "previous_secret_expires_at")
    actions = ("rotate_secret",)

    @admin.display(description="events")
    def event_types_display(self, obj):
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="signing secret")
    def secret_masked(self, obj):
        return f"{obj.secret[:10]}…" if obj.secret else "generated when saved"

    def save_model(self, request, obj, form, change):
        webhook_endpoint_save(endpoint=obj)

    @admin.action(description="Rotate the signing secret", permissions=["change"])
    def rotate_secret(self, request, queryset):
        now = timezone.now()
        for endpoint in queryset:
            webhook_endpoint_secret_rotate(endpoint=endpoint, now=now)
        messages.info(request, f"Rotated {queryset.count()} secret(s); the old ones sign too for 24 hours.")


@admin.register(WebhookSettings)
class WebhookSettingsAdmin(ReadOnlyAdmin):
    """The merchant's switch: created by the API's "enable"; paused and resumed here or by the API."""

    merchant_path = "merchant"
    list_display = ("merchant", "id", "enabled", "created_at", "updated_at")
    list_filter = ("enabled",)
    actions = ("pause", "resume")

    @admin.action(description="Pause webhooks", permissions=["change"])
    def pause(self, request, queryset):
        self._switch(request, queryset, enabled=False)

    @admin.action(description="Resume webhooks", permissions=["change"])
    def resume(self, request, queryset):
        self._switch(request, queryset, enabled=True)

    def _switch(self, request, queryset, *, enabled: bool):
        now = timezone.now()
        for settings in queryset.select_related("merchant"):
            webhooks_update(merchant=settings.merchant, enabled=enabled, now=now)
        messages.info(request, f"{'Resumed' if enabled else 'Paused'} {queryset.count()}.")

    def has_change_permission(self, request, obj=None):
        # The actions need change permission on the changelist; the form itself stays read-only.
        return obj is None and request.user.has_perm("wallets.change_webhooksettings")


class WebhookAttemptInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = WebhookAttempt
    merchant_path = "delivery__endpoint__merchant"
    fields = ("attempted_at", "response_code", "error", "manual")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    merchant_path = "endpoint__merchant"
    list_display = (
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_response_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("event_id", "endpoint__url")
    actions = ("retry_now",)
    inlines = [WebhookAttemptInline]

    @admin.action(description="Retry now (replay)", permissions=["change"])
    def retry_now(self, request, queryset):
        now = timezone.now()
        results = [webhook_delivery_replay(delivery=d, now=now).status for d in queryset]
        messages.info(request, f"Retried {len(results)}: {results.count('succeeded')} delivered.")

    def has_change_permission(self, request, obj=None):
        # The action needs change permission on the changelist; the form itself stays read-only.
        return obj is None and request.user.has_perm("wallets.change_webhookdelivery")

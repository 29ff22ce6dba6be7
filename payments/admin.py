"""Payments in the admin: a merchant's Stripe connection (saved through ``integration_upsert``, as the API's
PUT; secrets typed in, never shown again), and the provider's customers, saved payment methods and hosted
sessions, written only by the services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.pricing.currency import format_money

from . import refunds, selectors
from .models import (
    IntegrationStatus,
    MerchantIntegration,
    PaymentMethod,
    PaymentRetrySettings,
    PaymentSession,
    Provider,
    ProviderCustomer,
    ProviderEvent,
    ProviderRefund,
    ProviderRefundStatus,
    default_retry_days,
    validate_retry_days,
)
from .services import (
    integration_credentials_check,
    integration_disconnect,
    integration_upsert,
    payment_method_set_default,
)

SECRET_HELP = "Write-only: stored encrypted, shown again only as a hint. Leave empty to keep the saved one."


class MerchantIntegrationForm(forms.ModelForm):
    secret_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="sk_test_…, sk_live_… or a restricted rk_… key. " + SECRET_HELP,
    )
    webhook_secret = forms.CharField(
        label="Webhook signing secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="whsec_… of the endpoint Stripe sends events to. " + SECRET_HELP,
    )

    class Meta:
        model = MerchantIntegration
        fields = ("merchant", "provider", "external_id", "publishable_key", "metadata")

    def clean(self):
        data = super().clean()
        stored = self.instance.pk is not None and bool(self.instance.secret_key_encrypted)
        if not data.get("secret_key") and not stored:
            self.add_error("secret_key", "Connecting Stripe needs its secret key.")
            return data
        try:
            integration_credentials_check(
                secret_key=data.get("secret_key") or None,
                webhook_secret=data.get("webhook_secret") or None,
                publishable_key=data.get("publishable_key") or None,
                stored_mode=self.instance.mode,
            )
        except ValidationError as error:
            for field, errors in error.message_dict.items():
                self.add_error(field, errors)
        return data


@admin.register(MerchantIntegration)
class MerchantIntegrationAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Saving connects (or connects again) with what the form holds; "Disconnect" erases the secrets."""

    merchant_path = "merchant"
    form = MerchantIntegrationForm
    list_display = ("merchant", "provider", "status", "mode", "secret_key_hint", "connected_at", "disconnected_at")
    list_filter = ("provider", "status", "mode")
    readonly_fields = (
        "status",
        "mode",
        "secret_key_hint",
        "webhook_secret_hint",
        "connected_at",
        "disconnected_at",
        "updated_at",
    )
    actions = ("disconnect",)

    @method_decorator(sensitive_post_parameters("secret_key", "webhook_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Django's error reports show a failed request's POST: never these two fields.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "merchant", "provider") if obj is not None else self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "provider" in form.base_fields:
            form.base_fields["provider"].initial = Provider.STRIPE
        return form

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        saved = integration_upsert(
            merchant=obj.merchant,
            provider=obj.provider,
            now=timezone.now(),
            secret_key=data.get("secret_key") or None,
            webhook_secret=data.get("webhook_secret") or None,
            publishable_key=data.get("publishable_key", ""),
            external_id=data.get("external_id", ""),
            status=IntegrationStatus.ACTIVE,
            metadata=data.get("metadata") or {},
        )
        obj.pk = saved.pk  # the admin's redirect and log entry name the row the service saved

    @admin.action(description="Disconnect (erase the stored secrets)", permissions=["change"])
    def disconnect(self, request, queryset):
        now = timezone.now()
        for integration in queryset:
            integration_disconnect(integration=integration, now=now)
        messages.info(request, f"Disconnected {queryset.count()}; saving one with its secret key connects it again.")


class RetryDaysField(forms.CharField):
    """The retry days as finance types them, "3, 5, 7" (empty: no automatic retry); stored as a list."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(day) for day in value)
        return value

    def to_python(self, value):
        text = super().to_python(value) or ""
        try:
            days = [int(part) for part in text.replace("[", "").replace("]", "").split(",") if part.strip()]
        except ValueError:
            raise forms.ValidationError("Give whole days separated by commas, e.g. 3, 5, 7.")
        validate_retry_days(days)
        return days


class PaymentRetrySettingsForm(forms.ModelForm):
    retry_days = RetryDaysField(
        label="Retry days",
        required=False,
        initial=default_retry_days,
        help_text="Days after the first failed automatic charge on which it is tried again, ascending, e.g. "
        "3, 5, 7 (at most 8, each up to 60). Empty: never retried automatically.",
    )

    class Meta:
        model = PaymentRetrySettings
        fields = ("merchant", "retry_days")


@admin.register(PaymentRetrySettings)
class PaymentRetrySettingsAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """A merchant's retry schedule of failed automatic charges (without a row: 3, 5 and 7 days). Each failed
    attempt, and each one the bank wants the customer to confirm, e-mails the customer a link to pay, worded by
    the "Automatic payment failed" and "Payment needs the customer's confirmation" e-mail templates."""

    merchant_path = "merchant"
    form = PaymentRetrySettingsForm
    list_display = ("merchant", "retry_days_display", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return ("merchant",) if obj is not None else ()

    @admin.display(description="Retry days")
    def retry_days_display(self, settings: PaymentRetrySettings) -> str:
        return ", ".join(str(day) for day in settings.retry_days) or "no automatic retry"


class ServiceWrittenAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Rows the payments services write: viewable, never added, changed or deleted here."""

    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProviderCustomer)
class ProviderCustomerAdmin(ServiceWrittenAdmin):
    merchant_path = "integration__merchant"
    list_display = ("reference", "customer", "mode", "created_at")
    list_filter = ("mode",)
    search_fields = ("reference", "customer__name", "customer__id")


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ServiceWrittenAdmin):
    merchant_path = "customer__merchant"
    list_display = ("__str__", "customer", "type", "exp_month", "exp_year", "is_default", "created_at", "detached_at")
    list_filter = ("type", "is_default")
    search_fields = ("reference", "customer__name", "customer__id", "last4")
    actions = ("make_default",)

    @admin.action(description="Charge this method by default", permissions=["change"])
    def make_default(self, request, queryset):
        chosen = {}
        for method in queryset.order_by("created_at"):
            chosen[method.customer_id] = method  # one per customer: the newest selected
        for method in chosen.values():
            try:
                payment_method_set_default(payment_method=method)
            except ValidationError as error:
                messages.error(request, f"{method}: {' '.join(error.messages)}")
        messages.info(request, f"Default payment method set for {len(chosen)} customer(s).")

    def has_change_permission(self, request, obj=None):
        # The action needs change permission on the changelist; the form itself stays read-only.
        return obj is None and request.user.has_perm("payments.change_paymentmethod")


@admin.register(PaymentSession)
class PaymentSessionAdmin(ServiceWrittenAdmin):
    merchant_path = "merchant"
    list_display = (
        "id",
        "customer",
        "mode",
        "invoice",
        "amount_shown",
        "status",
        "expires_at",
        "created_at",
        "completed_at",
    )
    list_filter = ("mode", "status")
    search_fields = ("id", "reference", "payment_reference", "invoice__id", "invoice__number", "customer__name")
    list_select_related = ("customer", "invoice")

    @admin.display(description="amount", ordering="amount")
    def amount_shown(self, obj):
        return format_money(obj.amount, obj.currency) if obj.amount is not None else "—"


@admin.register(ProviderRefund)
class ProviderRefundAdmin(ServiceWrittenAdmin):
    """Every refund sent back to a card through Stripe; a failed one stays here until finance retries it (once
    the cause is fixed: Stripe reconnected, the charge disputed…) or refunds the customer by transfer."""

    merchant_path = "payment__merchant"
    list_display = (
        "id",
        "credit_note",
        "amount_display",
        "charge_reference",
        "number",
        "status",
        "reference",
        "failure",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("id", "reference", "charge_reference", "credit_note__number", "credit_note__invoice__number")
    list_select_related = ("credit_note",)
    actions = ("retry",)

    @admin.display(description="Amount")
    def amount_display(self, obj):
        return format_money(obj.amount, obj.currency)

    @admin.display(description="Failure reason")
    def failure(self, obj):
        return " ".join(part for part in (obj.failure_code, obj.failure_message) if part) or "—"

    @admin.action(description="Retry the selected failed refunds through Stripe", permissions=["change"])
    def retry(self, request, queryset):
        now = timezone.now()
        for refund in queryset.filter(status=ProviderRefundStatus.FAILED).select_related("credit_note"):
            try:
                again = refunds.provider_refund_retry(refund=refund, now=now)
            except refunds.ProviderRefundError as error:
                messages.error(request, f"{refund.pk}: {error}")
                continue
            level = messages.ERROR if again.status == ProviderRefundStatus.FAILED else messages.SUCCESS
            messages.add_message(request, level, f"{refund.pk}: retried as {again.pk}, {again.get_status_display()}.")

    def has_change_permission(self, request, obj=None):
        # The action needs change permission on the changelist; the rows themselves stay read-only.
        return obj is None and request.user.has_perm("payments.change_providerrefund")


@admin.register(ProviderEvent)
class ProviderEventAdmin(ServiceWrittenAdmin):
    """Every event a provider delivered to a merchant's webhook and how it was handled (read-only)."""

    merchant_path = "integration__merchant"
    list_display = ("event_id", "type", "received_at", "processed_at", "deliveries", "outcome", "error", "invoice")
    list_filter = ("type", ("processed_at", admin.EmptyFieldListFilter))
    search_fields = ("event_id", "invoice__id", "attempt__reference", "outcome")
    date_hierarchy = "received_at"
    list_select_related = ("invoice",)


class CustomerPaymentsAdminMixin:
    """Saved payment methods on the customer page (``panels``, composed by ``billing_site.admin``): what an
    off-session charge would use, in the merchant's current Stripe mode."""

    panels = (("Payment methods", ("payment_methods_panel",)),)

    @admin.display(description="Saved payment methods")
    def payment_methods_panel(self, obj):
        methods = list(selectors.payment_method_list(customer=obj).select_related("provider_customer"))
        if not methods:
            return "None saved (a setup link: POST /v0/customers/{id}/paymentMethods)."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{m.brand} •••• {m.last4}" if m.last4 else m.type,
                    f"{m.exp_month:02d}/{m.exp_year}" if m.exp_month and m.exp_year else "—",
                    "default" if m.is_default else "",
                    m.reference,
                    f"{m.provider_customer.reference} ({m.provider_customer.mode})",
                )
                for m in methods
            ),
        )
        return format_html(
            "<table><thead><tr><th>Method</th><th>Expires</th><th></th><th>Stripe method</th>"
            "<th>Stripe customer</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


class InvoicePaymentsAdminMixin:
    """Each charge attempt of the invoice on its page (``panels``, composed by ``billing_site.admin``): its
    number and what set it off (the automatic charge, a scheduled retry, a requested one), when, how much, on
    which method, how it ended, Stripe's PaymentIntent, the failure reason, the next retry and the customer's
    e-mail about it."""

    panels = (("Payment attempts", ("payment_attempts_panel", "provider_refunds_panel")),)

    def credit_note_issue(self, **kwargs):
        # invoicing's credit note page issues through this: a refund goes back to the card through Stripe
        return refunds.credit_note_issue(**kwargs)

    @admin.display(description="Refunds through Stripe")
    def provider_refunds_panel(self, obj):
        rows = list(selectors.provider_refunds_for_invoice(invoice_id=obj.pk))
        if not rows:
            return "None (a refund of a card payment collected through Stripe is sent back to the card)."
        body = format_html_join(
            "",
            '<tr class="provider-refund" data-status="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    refund.status,
                    refund.credit_note.number,
                    refund.number,
                    format_money(refund.amount, refund.currency),
                    refund.charge_reference,
                    refund.get_status_display(),
                    refund.reference or "—",
                    " ".join(part for part in (refund.failure_code, refund.failure_message) if part) or "—",
                )
                for refund in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>Refund</th><th>Try</th><th>Amount</th><th>Stripe payment</th><th>Status</th>"
            "<th>Stripe refund</th><th>Failure reason</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    @admin.display(description="Automatic charge attempts")
    def payment_attempts_panel(self, obj):
        attempts = list(selectors.payment_attempts_for_invoice(invoice_id=obj.pk))
        if not attempts:
            return "None (an invoice of an autoCharge subscription is charged within a minute of its issue)."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    attempt.number,
                    attempt.get_trigger_display(),
                    f"{attempt.created_at:%Y-%m-%d %H:%M} UTC",
                    format_money(attempt.amount, attempt.currency),
                    str(attempt.payment_method) if attempt.payment_method else "—",
                    attempt.get_status_display(),
                    attempt.reference or "—",
                    " ".join(part for part in (attempt.failure_code, attempt.failure_message) if part) or "—",
                    f"{attempt.next_retry_at:%Y-%m-%d %H:%M} UTC" if attempt.next_retry_at else "—",
                    attempt.notice.get_status_display() if attempt.notice else "—",
                    _after_payment(attempt),
                )
                for attempt in attempts
            ),
        )
        return format_html(
            "<table><thead><tr><th>Attempt</th><th>Trigger</th><th>At</th><th>Amount</th><th>Method</th>"
            "<th>Status</th><th>Stripe payment</th><th>Failure reason</th><th>Next retry</th>"
            "<th>Customer e-mail</th><th>Since</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


def _after_payment(attempt) -> str:
    """What Stripe reported after the charge (webhooks): a dispute, a refund."""
    said = []
    if attempt.disputed_at:
        reason = f", {attempt.dispute_reason}" if attempt.dispute_reason else ""
        said.append(f"Disputed {attempt.disputed_at:%Y-%m-%d} ({attempt.dispute_reference}{reason})")
    if attempt.provider_refunded:
        said.append(f"Refunded at Stripe: {format_money(attempt.provider_refunded, attempt.currency)}")
    return "; ".join(said) or "—"

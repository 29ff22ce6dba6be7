"""Receivables in the admin, finance's daily tool (invoicing/RECEIVABLES.md).

- "Record payment" on an open invoice (any amount: partial, exact or over) and on the customer page (one
  payment spread over the customer's open invoices in its currency, oldest due first); both go through
  ``receivables.payment_record`` and need ``invoicing.add_payment`` (the button is hidden without it and a
  forged post answers 403);
- the payments allocated to an invoice, read-only on its page;
- the customer's credit balance per currency on the customer page, with a link to its movements;
- read-only, merchant-scoped lists of payments and customer credit entries.

The admin holds no receivables rule: amounts are validated and allocated by the service.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.admin_numbers import money_display
from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.models import Customer
from catalog.pricing import round_money
from catalog.pricing.currency import format_money

from .models import (
    OPEN_STATUSES,
    CustomerCreditEntry,
    Invoice,
    InvoiceError,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from .receivables import customer_credit_balances, customers_with_credit_flag, payment_record

PAYMENT_FORM_TEMPLATE = "invoicing/admin/record_payment.html"
# What finance records by hand: "out of band" is the API's name for a payment recorded through it.
ADMIN_PAYMENT_METHODS = [(value, label) for value, label in PaymentMethod.choices if value != PaymentMethod.OUT_OF_BAND]


def can_record_payment(request) -> bool:
    """Recording a payment writes a ``Payment``: it takes that model's add permission."""
    return request.user.has_perm("invoicing.add_payment")


def recorded_by(request) -> str:
    """Who recorded a payment, in ``Payment.recorded_by``'s format."""
    return f"user:{request.user.get_username()}"


class PaymentForm(forms.Form):
    amount = forms.DecimalField(max_digits=20, widget=forms.TextInput(attrs={"size": 12, "inputmode": "decimal"}))
    method = forms.ChoiceField(choices=ADMIN_PAYMENT_METHODS, initial=PaymentMethod.BANK_TRANSFER)
    reference = forms.CharField(max_length=200, required=False, help_text="Bank reference, check number, receipt…")
    received_at = forms.DateTimeField(help_text="When the money was received (YYYY-MM-DD HH:MM, UTC).")

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"].label = f"Amount ({currency})"
        self.fields["amount"].help_text = "Any amount: less than due (partial), or more (the rest is customer credit)."


def _payment_page(model_admin, request, *, title, effect, form, cancel_url):
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "effect": effect,
        "form": form,
        "cancel_url": cancel_url,
    }
    return TemplateResponse(request, PAYMENT_FORM_TEMPLATE, context)


def _record(request, form, *, customer: Customer, currency: str, invoice_ids) -> Payment | None:
    """``payment_record`` with the form's data; a refusal becomes the form's error (and None)."""
    data = form.cleaned_data
    try:
        return payment_record(
            customer=customer,
            currency=currency,
            amount=data["amount"],
            method=data["method"],
            received_at=data["received_at"],
            now=timezone.now(),
            invoice_ids=invoice_ids,
            reference=data["reference"],
            recorded_by=recorded_by(request),
        )
    except InvoiceError as error:
        form.add_error(None, str(error))
        return None


def _recorded_message(payment: Payment) -> str:
    allocated = [
        f"{format_money(allocation.amount, payment.currency)} to {allocation.invoice}"
        for allocation in payment.allocations.select_related("invoice")
    ]
    text = f"Payment of {format_money(payment.amount, payment.currency)} recorded"
    return text + (f": {', '.join(allocated)}." if allocated else ": all of it is customer credit.")


class PaymentAllocationInline(MerchantScopedAdminMixin, admin.TabularInline):
    """The payments allocated to an invoice (written by ``payment_record`` only)."""

    model = PaymentAllocation
    merchant_path = "invoice__merchant"
    money_fields = {"amount": "invoice.currency"}
    verbose_name = "payment"
    verbose_name_plural = "Payments"
    extra = 0
    can_delete = False
    fields = ("payment_link", "method", "reference", "received_at", "recorded_by", "amount_display")
    readonly_fields = fields
    amount_display = money_display("amount", "amount allocated", currency="invoice.currency")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice", "payment")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Payment")
    def payment_link(self, allocation: PaymentAllocation):
        url = reverse("admin:invoicing_payment_change", args=[quote(allocation.payment_id)])
        return format_html('<a href="{}">{}</a>', url, allocation.payment_id)

    @admin.display(description="Method")
    def method(self, allocation: PaymentAllocation):
        return allocation.payment.get_method_display()

    @admin.display(description="Reference")
    def reference(self, allocation: PaymentAllocation):
        return allocation.payment.reference or "—"

    @admin.display(description="Received at")
    def received_at(self, allocation: PaymentAllocation):
        return allocation.payment.received_at

    @admin.display(description="Recorded by")
    def recorded_by(self, allocation: PaymentAllocation):
        return allocation.payment.recorded_by or "system"


class InvoicePaymentAdminMixin:
    """The invoice page's "Record payment" button and page (mixed into ``InvoiceAdmin``)."""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/record-payment/",
                self.admin_site.admin_view(self.record_payment_view),
                name="invoicing_invoice_record_payment",
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.status in OPEN_STATUSES and can_record_payment(request):
            context["record_payment_url"] = reverse("admin:invoicing_invoice_record_payment", args=[quote(obj.pk)])
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def record_payment_view(self, request, object_id):
        if not can_record_payment(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        invoice: Invoice = self.scoped_object_or_404(
            request, object_id, self.get_queryset(request).select_related("customer")
        )
        change_url = reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)])
        form = PaymentForm(
            request.POST if request.method == "POST" else None,
            currency=invoice.currency,
            initial={
                "amount": round_money(invoice.amount_due, invoice.currency),
                "received_at": timezone.now().replace(microsecond=0),
            },
        )
        if form.is_bound and form.is_valid():
            payment = _record(
                request, form, customer=invoice.customer, currency=invoice.currency, invoice_ids=[invoice.pk]
            )
            if payment is not None:
                self.log_change(request, invoice, f"Payment {payment.pk} recorded.")
                messages.success(request, _recorded_message(payment))
                return HttpResponseRedirect(change_url)
        effect = (
            f"{invoice} ({invoice.customer.name}): {format_money(invoice.amount_due, invoice.currency)} due. "
            "The payment goes to this invoice; what it does not take becomes the customer's credit."
        )
        return _payment_page(
            self, request, title=f"Record a payment for {invoice}", effect=effect, form=form, cancel_url=change_url
        )


class CustomerPaymentForm(PaymentForm):
    currency = forms.CharField(max_length=3, help_text="The currency of the invoices it pays.")

    field_order = ("currency", "amount", "method", "reference", "received_at")

    def clean_currency(self):
        return self.cleaned_data["currency"].upper()


class CustomerReceivablesAdminMixin:
    """The customer page's credit balances and "Record payment" (several invoices at once): mixed into
    catalog's ``CustomerAdmin`` by ``billing_site.admin``, which adds ``panels`` to the composed class's."""

    panels = (("Receivables", ("customer_credit", "customer_credit_entries")),)
    # "Record payment" beside wallets' buttons (this template extends wallets' customer page).
    change_form_template = "invoicing/admin/customer_change_form.html"

    def get_urls(self):
        return [
            path(
                "<path:object_id>/record-payment/",
                self.admin_site.admin_view(self.customer_payment_view),
                name="catalog_customer_record_payment",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request):
        # whether the customer ever had credit comes with the customer's own row (the balances panel)
        return customers_with_credit_flag(super().get_queryset(request))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {"can_record_payment": can_record_payment(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Customer credit balance")
    def customer_credit(self, customer: Customer):
        balances = customer_credit_balances(customer_id=customer.pk) if customer.has_customer_credit else {}
        if not balances:
            return "None."
        return format_html_join(
            "",
            '<div class="customer-credit-balance" data-currency="{}">{}</div>',
            ((currency, format_money(amount, currency)) for currency, amount in balances.items()),
        )

    @admin.display(description="Credit movements")
    def customer_credit_entries(self, customer: Customer):
        # a link, not a table: the page's query budget pays for the balances only
        url = reverse("admin:invoicing_customercreditentry_changelist") + f"?customer__id__exact={customer.pk}"
        return format_html('<a href="{}" id="customer-credit-entries">Every credit movement of this customer</a>', url)

    def customer_payment_view(self, request, object_id):
        if not can_record_payment(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        customer: Customer = self.scoped_object_or_404(request, object_id)
        change_url = reverse("admin:catalog_customer_change", args=[quote(customer.pk)])
        form = CustomerPaymentForm(
            request.POST if request.method == "POST" else None,
            currency=customer.currency,
            initial={"currency": customer.currency, "received_at": timezone.now().replace(microsecond=0)},
        )
        if form.is_bound and form.is_valid():
            payment = _record(
                request, form, customer=customer, currency=form.cleaned_data["currency"], invoice_ids=None
            )
            if payment is not None:
                messages.success(request, _recorded_message(payment))
                return HttpResponseRedirect(change_url)
        effect = (
            f"A payment from {customer.name}, allocated to their open invoices in its currency, oldest due "
            "first; what they do not take becomes the customer's credit."
        )
        return _payment_page(
            self,
            request,
            title=f"Record a payment from {customer.name}",
            effect=effect,
            form=form,
            cancel_url=change_url,
        )


class ReadOnlyReceivablesAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Rows written only by the receivables services."""

    merchant_path = "merchant"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PaymentAllocationOfPaymentInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = PaymentAllocation
    merchant_path = "payment__merchant"
    money_fields = {"amount": "payment.currency"}
    verbose_name = "allocation"
    extra = 0
    can_delete = False
    fields = ("invoice", "amount_display", "created_at")
    readonly_fields = fields
    amount_display = money_display("amount", "amount", currency="payment.currency")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("payment", "invoice")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyReceivablesAdmin):
    money_fields = {"amount": "currency"}
    list_display = ("id", "customer", "method", "amount_display", "currency", "received_at", "reference", "recorded_by")
    list_filter = ("method", "currency", "merchant")
    search_fields = ("id", "reference", "customer__name", "customer__external_id", "allocations__invoice__number")
    list_select_related = ("customer",)
    date_hierarchy = "received_at"
    inlines = (PaymentAllocationOfPaymentInline,)
    fields = (
        "id",
        "merchant",
        "customer",
        "currency",
        "amount_display",
        "method",
        "reference",
        "received_at",
        "recorded_at",
        "recorded_by",
        "idempotency_key",
    )
    readonly_fields = fields
    amount_display = money_display("amount", "amount")


@admin.register(CustomerCreditEntry)
class CustomerCreditEntryAdmin(ReadOnlyReceivablesAdmin):
    money_fields = {"amount": "currency"}
    list_display = ("created_at", "customer", "kind", "amount_display", "currency", "description")
    list_filter = ("kind", "currency", "merchant")
    search_fields = ("customer__name", "customer__external_id", "description", "invoice__number")
    list_select_related = ("customer",)
    fields = (
        "merchant",
        "customer",
        "currency",
        "amount_display",
        "kind",
        "description",
        "invoice",
        "payment",
        "credit_note",
        "created_at",
    )
    readonly_fields = fields
    amount_display = money_display("amount", "amount")

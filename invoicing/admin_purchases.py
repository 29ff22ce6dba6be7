"""The customer page's "Sell top-up" and "Sell reserved capacity": the same service as the API
(``credit_purchase_create``), so the admin too issues the invoice and credits only when it is paid (or at
once for a customer trusted with credit before payment). Mixed into catalog's ``CustomerAdmin`` by
``billing_site.admin``."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from catalog.models import BillableMetric, Customer
from catalog.pricing import is_known_currency
from catalog.pricing.currency import format_money
from catalog.pricing.limits import DECIMAL_PLACES, MAX_DIGITS, QUANTUM
from core.formatting import decimal_string
from wallets.errors import WalletError
from wallets.models import CreditPurchaseKind
from wallets.services import IdempotencyConflict

from .one_off_invoices import CreditPurchaseRefused, credit_purchase_create


def can_sell_credit(request) -> bool:
    """Selling credit issues an invoice and writes the prepaid ledger: it takes both add permissions."""
    return request.user.has_perm("invoicing.add_invoice") and request.user.has_perm("wallets.add_ledgerentry")


class TopUpSaleForm(forms.Form):
    amount = forms.DecimalField(
        label="Credit", max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, min_value=QUANTUM, help_text="Face value."
    )
    currency = forms.CharField(max_length=3, help_text="ISO 4217, e.g. USD.")
    price = forms.DecimalField(
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        min_value=Decimal(0),
        required=False,
        help_text="What the invoice bills, in whole cents (or the currency's minor unit). Empty: the credit's value.",
    )
    expires_at = forms.DateTimeField(required=False, help_text="Optional: unused credit expires at this time (UTC).")
    description = forms.CharField(max_length=255, required=False)
    # Generated when the form is shown, so a double-submitted form sells once.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, initial=lambda: f"admin-{uuid.uuid4()}")

    def __init__(self, *args, customer: Customer, **kwargs):
        super().__init__(*args, **kwargs)
        self.customer = customer

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"].upper()
        if not is_known_currency(currency):
            raise forms.ValidationError(f"“{currency}” is not an ISO 4217 currency code.")
        return currency


class ReservedCapacitySaleForm(TopUpSaleForm):
    metrics = forms.ModelMultipleChoiceField(
        queryset=BillableMetric.objects.none(), help_text="The usage this credit pays for (drawn before other credit)."
    )
    discount_percent = forms.DecimalField(
        label="Discount (%)",
        max_digits=7,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=Decimal("99.9999"),
        required=False,
        help_text="Off the credit's value, e.g. 40. Give this or a price.",
    )

    field_order = ("amount", "currency", "metrics", "discount_percent", "price", "expires_at", "description")

    def __init__(self, *args, customer: Customer, **kwargs):
        super().__init__(*args, customer=customer, **kwargs)
        self.fields["metrics"].queryset = BillableMetric.objects.filter(merchant_id=customer.merchant_id).order_by(
            "name"
        )

    def clean(self):
        data = super().clean()
        if (data.get("price") is None) == (data.get("discount_percent") is None):
            self.add_error("price", "Give either a price or a discount.")
        return data


class CustomerPurchasesAdminMixin:
    def get_urls(self):
        return [
            path(
                "<path:object_id>/credit/top-up/",
                self.admin_site.admin_view(self.top_up_sale_view),
                name="catalog_customer_credit_top_up",
            ),
            path(
                "<path:object_id>/credit/reserved-capacity/",
                self.admin_site.admin_view(self.reserved_capacity_sale_view),
                name="catalog_customer_reserved_capacity",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {"can_sell_credit": can_sell_credit(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def top_up_sale_view(self, request, object_id):
        return self._sale_view(
            request,
            object_id,
            kind=CreditPurchaseKind.TOP_UP,
            form_class=TopUpSaleForm,
            title="Sell top-up",
            explanation="Prepaid credit for any usage, sold on an invoice issued now. The credit is added when the "
            "invoice is paid (or at once when the customer has credit before payment).",
        )

    def reserved_capacity_sale_view(self, request, object_id):
        return self._sale_view(
            request,
            object_id,
            kind=CreditPurchaseKind.RESERVED,
            form_class=ReservedCapacitySaleForm,
            title="Sell reserved capacity",
            explanation="Credit for the chosen usage only, usually at a discount, sold on an invoice issued now. "
            "It is added when the invoice is paid (or at once when the customer has credit before payment).",
        )

    def _sale_view(self, request, object_id, *, kind, form_class, title, explanation):
        if not can_sell_credit(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        customer: Customer = self.scoped_object_or_404(request, object_id)
        form = form_class(
            request.POST if request.method == "POST" else None,
            customer=customer,
            initial={"currency": customer.currency},
        )
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                result = credit_purchase_create(
                    customer=customer,
                    kind=kind,
                    currency=data["currency"],
                    amount=data["amount"],
                    price=data.get("price"),
                    discount_percent=data.get("discount_percent"),
                    metric_ids=[metric.pk for metric in data.get("metrics", ())],
                    idempotency_key=data["idempotency_key"],
                    expires_at=data.get("expires_at"),
                    description=data.get("description", ""),
                    now=timezone.now(),
                )
            except CreditPurchaseRefused as exc:
                form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            except (IdempotencyConflict, WalletError) as exc:
                form.add_error(None, str(exc))
            else:
                purchase, invoice = result.purchase, result.invoice
                credited = "credited now" if purchase.lot_id else "credited when the invoice is paid"
                messages.success(
                    request,
                    f"{purchase.get_kind_display()} of {decimal_string(purchase.amount)} {purchase.currency} sold on "
                    f"invoice {invoice.number} ({format_money(invoice.total, invoice.currency)}); {credited}.",
                )
                return HttpResponseRedirect(reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "customer": customer,
            "form": form,
            "title": title,
            "explanation": explanation,
        }
        return TemplateResponse(request, "admin/wallets/credit_form.html", context)

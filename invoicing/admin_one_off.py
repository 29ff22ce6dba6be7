"""The customer page's "Issue a one-off invoice": set-up work, add-ons or credits (negative unit prices), issued
at once by ``invoicing.one_off_invoices.one_off_invoice_create``, the service ``POST /v2/invoices/oneOff`` calls."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from catalog.models import Subscription
from catalog.pricing.currency import format_money

from .models import MANUAL_QUANTITY_MAX, MANUAL_UNIT_PRICE_MAX, InvoiceError
from .one_off_invoices import one_off_invoice_create
from .services.manual_lines import ManualLineConflict, ManualLineError, ManualLineInput

LINES_ON_FORM = 3


def can_issue_one_off(request) -> bool:
    return request.user.has_perm("invoicing.add_invoice")


class OneOffInvoiceForm(forms.Form):
    currency = forms.CharField(max_length=3)
    subscription = forms.ModelChoiceField(
        queryset=Subscription.objects.none(),
        required=False,
        help_text="The subscription it is filed under (its tax rate and behaviour apply); empty: the latest.",
    )
    idempotency_key = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, customer, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subscription"].queryset = Subscription.objects.filter(customer=customer).order_by("-started_at")
        for n in range(1, LINES_ON_FORM + 1):
            self.fields[f"line{n}_name"] = forms.CharField(label=f"Line {n}", max_length=200, required=n == 1)
            self.fields[f"line{n}_quantity"] = forms.DecimalField(
                label="quantity",
                required=False,
                min_value=Decimal("0.000000000001"),
                max_value=MANUAL_QUANTITY_MAX,
                max_digits=30,
                decimal_places=12,
            )
            self.fields[f"line{n}_unit_price"] = forms.DecimalField(
                label="unit price (negative: a credit)",
                required=False,
                min_value=-MANUAL_UNIT_PRICE_MAX,
                max_value=MANUAL_UNIT_PRICE_MAX,
                max_digits=30,
                decimal_places=12,
            )

    def clean_currency(self):
        return self.cleaned_data["currency"].upper()

    def lines(self) -> list[ManualLineInput]:
        data, lines = self.cleaned_data, []
        for n in range(1, LINES_ON_FORM + 1):
            name = data.get(f"line{n}_name")
            if not name:
                continue
            quantity, unit_price = data.get(f"line{n}_quantity"), data.get(f"line{n}_unit_price")
            if quantity is None or unit_price is None:
                raise forms.ValidationError(f"Line {n} needs a quantity and a unit price.")
            lines.append(
                ManualLineInput(display_name=name, currency=data["currency"], quantity=quantity, unit_price=unit_price)
            )
        return lines


class CustomerOneOffInvoiceAdminMixin:
    """Mixed into the composed ``CustomerAdmin`` by ``billing_site.admin`` (the button sits in invoicing's
    customer change-form template)."""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/one-off-invoice/",
                self.admin_site.admin_view(self.one_off_invoice_view),
                name="catalog_customer_one_off_invoice",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {"can_issue_one_off": can_issue_one_off(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)

    def one_off_invoice_view(self, request, object_id):
        if not can_issue_one_off(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        customer = self.scoped_object_or_404(request, object_id)
        initial = {"currency": customer.currency, "idempotency_key": f"admin_{uuid.uuid4().hex}"}
        form = OneOffInvoiceForm(request.POST or None, customer=customer, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                result = one_off_invoice_create(
                    customer=customer,
                    currency=form.cleaned_data["currency"],
                    subscription=form.cleaned_data["subscription"],
                    lines=form.lines(),
                    idempotency_key=form.cleaned_data["idempotency_key"],
                    now=timezone.now(),
                )
            except (ManualLineError, ManualLineConflict, InvoiceError, forms.ValidationError) as exc:
                form.add_error(None, exc.messages[0] if isinstance(exc, forms.ValidationError) else str(exc))
            else:
                invoice = result.invoice
                messages.success(request, f"Issued {invoice}: {format_money(invoice.total, invoice.currency)}.")
                return redirect(reverse("admin:invoicing_invoice_change", args=[invoice.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "customer": customer,
            "form": form,
            "title": "Issue a one-off invoice",
            "explanation": "Set-up work, add-ons or credits (a negative unit price, e.g. an SLA credit), invoiced and "
            "issued at once, taxed like the subscription it is filed under. Each line is quantity × unit price.",
        }
        return TemplateResponse(request, "admin/wallets/credit_form.html", context)

"""Admin extensions behind the billing home's links, and the receivables pages.

The invoice list gains a "Payment" filter (``?payment=past_due``), so the home page's "past due" list links
to the full filtered list: ``InvoicePaymentFilterAdminMixin``; the AR aging report and its CSV hang off the
invoice list (``InvoiceReceivablesAdminMixin``). ``billing_site.admin`` mixes both into invoicing's
``InvoiceAdmin`` before registering it (this module registers nothing).
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from catalog.admin_scoping import request_merchant_ids

from . import aging, selectors


class PaymentDueListFilter(admin.SimpleListFilter):
    title = "payment"
    parameter_name = "payment"

    def lookups(self, request, model_admin):
        return [("past_due", "Issued, unpaid, past due")]

    def queryset(self, request, queryset):
        if self.value() == "past_due":
            return queryset.filter(pk__in=selectors.invoices_past_due(now=timezone.now()).values("pk"))
        return queryset


class InvoicePaymentFilterAdminMixin:
    """Adds the "Payment" filter after the invoice admin's own filters."""

    def get_list_filter(self, request):
        return (*super().get_list_filter(request), PaymentDueListFilter)


class InvoiceReceivablesAdminMixin:
    """The AR aging report beside the invoice list: ``aging/`` (page) and ``aging/export/`` (CSV), both
    read-only (``require_safe``: a POST answers 405) and for whoever may view invoices, scoped to the user's
    merchants (``catalog.admin_scoping``). Mixed into invoicing's ``InvoiceAdmin`` by ``billing_site.admin``."""

    def get_urls(self):
        own = [
            path(
                "aging/",
                self.admin_site.admin_view(require_safe(self.aging_view)),
                name="invoicing_invoice_aging",
            ),
            path(
                "aging/export/",
                self.admin_site.admin_view(require_safe(self.aging_export_view)),
                name="invoicing_invoice_aging_export",
            ),
        ]
        return own + super().get_urls()

    def _aging_report(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        return now, aging.receivables_aging(now=now, merchant_ids=request_merchant_ids(request))

    def aging_view(self, request):
        now, report = self._aging_report(request)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Receivables aging",
            "now": now,
            "report": report,
            "bucket_labels": [label for _, label, *_ in aging.BUCKETS],
            "export_url": reverse("admin:invoicing_invoice_aging_export"),
        }
        return TemplateResponse(request, "admin/reporting/aging.html", context)

    def aging_export_view(self, request):
        now, report = self._aging_report(request)
        response = HttpResponse(aging.receivables_aging_csv(report), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="receivables-aging-{now:%Y-%m-%d}.csv"'
        return response

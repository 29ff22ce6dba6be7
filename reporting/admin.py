"""Admin extensions behind the billing home's links, and the receivables pages.

The invoice list gains a "Payment" filter (``?payment=past_due``), so the home page's "past due" list links
to the full filtered list: ``InvoicePaymentFilterAdminMixin``; the AR aging report and its CSV hang off the
invoice list (``InvoiceReceivablesAdminMixin``). ``billing_site.admin`` mixes both into invoicing's
``InvoiceAdmin``, and the customer statement (``CustomerStatementAdminMixin``) into catalog's ``CustomerAdmin``,
before registering them (this module registers nothing).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html
from django.views.decorators.http import require_safe

from catalog.admin_scoping import request_merchant_ids
from invoicing import documents

from . import aging, selectors, statement


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
    """The AR aging report beside the invoice list (linked from its toolbar): ``aging/`` (page) and
    ``aging/export/`` (CSV), both read-only (``require_safe``: a POST answers 405) and for whoever may view
    invoices, scoped to the user's merchants (``catalog.admin_scoping``). Mixed into invoicing's
    ``InvoiceAdmin`` by ``billing_site.admin``."""

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

    def changelist_view(self, request, extra_context=None):
        # the invoice list's toolbar links the report (its template shows the link when given the URL)
        if self.has_view_permission(request):
            extra_context = {"aging_url": reverse("admin:invoicing_invoice_aging"), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

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


STATEMENT_DEFAULT_DAYS = 90


def _statement_range(request) -> tuple[date, date]:
    """[start, end) as local dates from ``?start=YYYY-MM-DD&end=YYYY-MM-DD`` (end exclusive); by default the
    last ``STATEMENT_DEFAULT_DAYS`` days, today included."""
    today = timezone.localdate()
    start = parse_date(request.GET.get("start", "") or "") or today - timedelta(days=STATEMENT_DEFAULT_DAYS)
    end = parse_date(request.GET.get("end", "") or "") or today + timedelta(days=1)
    return (start, end) if end > start else (start, start + timedelta(days=1))


class CustomerStatementAdminMixin:
    """The customer's account statement: ``<id>/statement/`` (page) and ``<id>/statement/pdf/`` (PDF, the
    invoice documents' xhtml2pdf machinery), read-only (``require_safe``), for whoever may view invoices, of a
    customer of the user's merchants. Linked from the customer page (``panels``). Mixed into catalog's
    ``CustomerAdmin`` by ``billing_site.admin``."""

    panels = (("Receivables", ("account_statement",)),)

    @admin.display(description="Account statement")
    def account_statement(self, customer):
        if customer is None or customer.pk is None:
            return "—"
        url = reverse("admin:catalog_customer_statement", args=[quote(customer.pk)])
        return format_html(
            '<a href="{}">Statement (last {} days)</a> · <a href="{}pdf/">PDF</a>', url, STATEMENT_DEFAULT_DAYS, url
        )

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/statement/",
                self.admin_site.admin_view(require_safe(self.statement_view)),
                name="catalog_customer_statement",
            ),
            path(
                "<path:object_id>/statement/pdf/",
                self.admin_site.admin_view(require_safe(self.statement_pdf_view)),
                name="catalog_customer_statement_pdf",
            ),
        ]
        return own + super().get_urls()

    def _statement(self, request, object_id):
        if not request.user.has_perm("invoicing.view_invoice"):
            raise PermissionDenied
        customer = self.scoped_object_or_404(request, object_id, self.get_queryset(request).select_related("merchant"))
        start, end = _statement_range(request)
        tz = timezone.get_current_timezone()
        return statement.customer_statement(
            customer=customer,
            start=datetime.combine(start, time.min, tz),
            end=datetime.combine(end, time.min, tz),
            currency=(request.GET.get("currency") or "").upper() or None,
        ), (start, end)

    def _statement_context(self, result, dates) -> dict:
        start, end = dates
        return {
            "statement": result,
            "customer": result.customer,
            "merchant": result.customer.merchant,
            "first_day": start,
            "last_day": end - timedelta(days=1),
        }

    def statement_view(self, request, object_id):
        result, dates = self._statement(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            **self._statement_context(result, dates),
            "opts": self.model._meta,
            "title": f"Statement of {result.customer.name}",
            "start": dates[0].isoformat(),
            "end": dates[1].isoformat(),
            "query": request.GET.urlencode(),
        }
        return TemplateResponse(request, "admin/reporting/statement.html", context)

    def statement_pdf_view(self, request, object_id):
        result, dates = self._statement(request, object_id)
        html = render_to_string("reporting/statement_document.html", self._statement_context(result, dates))
        response = HttpResponse(documents.html_to_pdf(html), content_type="application/pdf")
        filename = f"statement-{result.customer.pk}-{dates[0]}-{dates[1] - timedelta(days=1)}.pdf"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

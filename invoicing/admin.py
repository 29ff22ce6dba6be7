"""Finance's invoicing pages: invoices (lines, breakdowns, actions, PDF, CSV), credit notes, billing runs
("Run billing now"), plan changes, and the upcoming invoice / late usage on the customer page; the delivery
log, the resend action and the e-mail settings and templates are ``admin_delivery``'s; payments and customer
credit are ``admin_receivables``'s.
Destructive actions confirm first and ask why (``admin_confirmations``).

Actions and views call services and selectors only; the admin holds no billing logic.

Kept whole for now because the invoice page's actions, views and inlines share its permission checks; the
next split moves the credit-note and billing-run pages into modules of their own.
"""

from __future__ import annotations

import csv
from datetime import datetime

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_safe

from catalog.admin_history import AttributedHistoryAdmin
from catalog.admin_numbers import money_display, number_display
from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.models import Customer
from catalog.pricing import round_money
from catalog.pricing.currency import format_money
from core.formatting import decimal_string

from . import documents, selectors, services
from .admin_confirmations import ConfirmedInvoiceActions, can_run_billing
from .admin_delivery import CreditNoteDeliveryInline, DocumentResendAdminMixin, InvoiceDeliveryInline
from .admin_dunning import DunningReminderInline, dunning_table, past_due_list
from .admin_receivables import InvoicePaymentAdminMixin, PaymentAllocationInline, recorded_by
from .admin_spend import SpendAlertAdmin, SpendCapAdmin  # noqa: F401 (registers the spend alerts and caps)
from .models import (
    BillingRun,
    BillingRunChunk,
    BillingRunError,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    SubscriptionPlanChange,
)
from .receivables import selectors as receivables_selectors

CSV_COLUMNS = (
    "number",
    "id",
    "status",
    "kind",
    "merchant",
    "customer",
    "customer_external_id",
    "subscription",
    "period_start",
    "period_end",
    "issued_at",
    "currency",
    "subtotal",
    "tax",
    "total",
    "amount_due",
)


def invoices_csv(invoices, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(CSV_COLUMNS)
    for invoice in invoices:
        writer.writerow(
            [
                invoice.number or "",
                invoice.id,
                invoice.status,
                invoice.kind,
                invoice.merchant_id,
                invoice.customer.name,
                invoice.customer.external_id or "",
                invoice.subscription_id,
                invoice.period_start.isoformat(),
                invoice.period_end.isoformat(),
                invoice.issued_at.isoformat() if invoice.issued_at else "",
                invoice.currency,
                *(
                    round_money(amount, invoice.currency)
                    for amount in (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due)
                ),
            ]
        )
    return response


class InvoiceLineInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = InvoiceLine
    merchant_path = "invoice__merchant"
    money_fields = {"amount": "invoice.currency"}
    extra = 0
    can_delete = False
    fields = ("position", "kind", "description", "quantity_display", "amount_display", "breakdown")
    readonly_fields = fields
    ordering = ("position",)
    quantity_display = number_display("quantity", "quantity")
    amount_display = money_display("amount", "amount", currency="invoice.currency")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Breakdown")
    def breakdown(self, line: InvoiceLine):
        parts = documents.breakdown_of(line.explanation)
        if not parts:
            return "—"
        return format_html_join("", "<div>{}</div>", ((part,) for part in parts))


def credit_note_settled_as(note: CreditNote) -> str:
    """Where a credit note's money went, as the service split it: "$220.00 to customer credit"."""
    parts = (
        (note.applied_to_due, "off the amount due"),
        (note.credited_to_balance, "to customer credit"),
        (note.refunded, "refunded"),
    )
    shown = [
        f"{format_money(round_money(amount, note.currency), note.currency)} {what}" for amount, what in parts if amount
    ]
    return "; ".join(shown) or "—"


class CreditNoteInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = CreditNote
    merchant_path = "merchant"
    money_fields = dict.fromkeys(("subtotal", "tax", "total"), "currency")
    extra = 0
    can_delete = False
    fields = ("number", "issued_at", "reason", "total_display", "settled_as")
    readonly_fields = fields
    show_change_link = True
    total_display = money_display("total", "total")

    @admin.display(description="Settled as")
    def settled_as(self, note: CreditNote):
        return credit_note_settled_as(note)

    def has_add_permission(self, request, obj=None):
        return False


class InvoiceAdmin(
    InvoicePaymentAdminMixin,
    DocumentResendAdminMixin,
    ConfirmedInvoiceActions,
    MerchantScopedAdminMixin,
    AttributedHistoryAdmin,
):
    """Invoices are written by services only; "History" lists every recorded change and who made it.

    Not registered here: ``billing_site.admin`` registers it with the higher apps' mixins (reporting's
    payment filter)."""

    merchant_path = "merchant"
    money_fields = dict.fromkeys(("subtotal", "tax", "total", "amount_due"), "currency")
    list_display = ("__str__", "customer", "kind", "period_start", "period_end", "status", "total_display", "issued_at")
    list_filter = ("status", "kind", "merchant", ("period_start", admin.DateFieldListFilter))
    search_fields = ("number", "id", "customer__name", "customer__external_id", "subscription__id")
    date_hierarchy = "period_start"
    inlines = (
        InvoiceLineInline,
        PaymentAllocationInline,
        CreditNoteInline,
        InvoiceDeliveryInline,
        DunningReminderInline,
    )
    list_select_related = ("customer",)
    actions = (
        "action_finalize",
        "action_refresh",
        "action_mark_paid",
        "action_void",
        "action_void_and_reissue",
        "action_credit_note",
        "action_bill_late_usage",
        "action_resend",
        "action_export_csv",
    )
    change_list_template = "invoicing/admin/invoice_change_list.html"
    change_form_template = "invoicing/admin/invoice_change_form.html"
    fieldsets = (
        (None, {"fields": ("number", "status", "kind", "threshold_sequence", "documents_links")}),
        ("Parties", {"fields": ("merchant", "customer", "subscription", "plan")}),
        (
            "Period and dates",
            {
                "fields": (
                    "period_start",
                    "period_end",
                    "grace_ends_at",
                    "issued_at",
                    "paid_at",
                    "payment_failed_at",
                    "voided_at",
                    "void_reason",
                )
            },
        ),
        (
            "Amounts",
            {
                "fields": (
                    "currency",
                    "subtotal_display",
                    "tax_behavior",
                    "tax_rate_display",
                    "tax_display",
                    "total_display",
                    "amount_due_display",
                )
            },
        ),
        ("Related", {"fields": ("replaces", "adjusts", "billing_run", "late_usage")}),
    )
    # Read-only sections that higher apps add to the invoice page without invoicing importing them (payments:
    # the payment attempts), as on the customer page (``catalog.admin.CustomerAdmin.panels``): (title, (method
    # names…)) from each app's mixin, concatenated by the class composed in ``billing_site.admin``.
    panels: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def _all_fieldsets(self):
        return [*self.fieldsets, *((title, {"fields": names}) for title, names in self.panels)]

    def get_fieldsets(self, request, obj=None):
        return self._all_fieldsets()

    def get_readonly_fields(self, request, obj=None):
        return [field for _, options in self._all_fieldsets() for field in options["fields"]]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    subtotal_display = money_display("subtotal", "subtotal")
    tax_rate_display = number_display("tax_rate", "tax rate", suffix=" %")
    tax_display = money_display("tax", "tax")
    total_display = money_display("total", "total")
    amount_due_display = money_display("amount_due", "amount due")

    @admin.display(description="Documents")
    def documents_links(self, invoice: Invoice):
        return format_html(
            '<a href="{}" target="_blank">View</a> · <a href="{}">Download PDF</a>',
            reverse("admin:invoicing_invoice_html", args=[invoice.pk]),
            reverse("admin:invoicing_invoice_pdf", args=[invoice.pk]),
        )

    @admin.display(description="Late usage not billed")
    def late_usage(self, invoice: Invoice):
        if invoice.status not in selectors.BILLED:
            return "— (drafts include late usage when refreshed or issued)"
        return _late_usage_table(selectors.late_usage_for_invoice(invoice=invoice))

    def get_urls(self):
        own = [
            path(
                "<path:object_id>/pdf/",
                self.admin_site.admin_view(require_safe(self.pdf_view)),
                name="invoicing_invoice_pdf",
            ),
            path(
                "<path:object_id>/html/",
                self.admin_site.admin_view(require_safe(self.html_view)),
                name="invoicing_invoice_html",
            ),
            path(
                "export/", self.admin_site.admin_view(require_safe(self.export_view)), name="invoicing_invoice_export"
            ),
            path("run-billing/", self.admin_site.admin_view(self.run_billing_view), name="invoicing_run_billing"),
            path(
                "<path:object_id>/credit-note/",
                self.admin_site.admin_view(self.credit_note_view),
                name="invoicing_invoice_credit_note",
            ),
        ]
        return own + super().get_urls()

    def _document_invoice(self, request, object_id) -> Invoice:
        queryset = self.get_queryset(request).select_related("merchant", "customer", "subscription")
        return self.scoped_object_or_404(request, object_id, queryset)

    def pdf_view(self, request, object_id):
        invoice = self._document_invoice(request, object_id)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        response = HttpResponse(documents.invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{documents.invoice_filename(invoice)}"'
        return response

    def html_view(self, request, object_id):
        invoice = self._document_invoice(request, object_id)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        return HttpResponse(documents.invoice_html(invoice))

    def export_view(self, request):
        """CSV of invoices, by period or by issue date, over [start, end):

        - ``?start=2026-01-01&end=2026-02-01``: invoices whose period starts in the range;
        - ``?by=issued&start=…&end=…``: invoices issued in the range (drafts have no issue date).
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        by_issue_date = request.GET.get("by") == "issued"
        start, end = parse_date(request.GET.get("start", "")), parse_date(request.GET.get("end", ""))
        if start is None or end is None or end <= start:
            what = "issue dates" if by_issue_date else "period"
            messages.error(request, f"Give the {what} as ?start=YYYY-MM-DD&end=YYYY-MM-DD (end after start).")
            return HttpResponseRedirect(reverse("admin:invoicing_invoice_changelist"))
        tz = timezone.get_current_timezone()
        since = datetime.combine(start, datetime.min.time(), tz)
        until = datetime.combine(end, datetime.min.time(), tz)
        if by_issue_date:
            invoices = (
                self.get_queryset(request)
                .filter(issued_at__gte=since, issued_at__lt=until)
                .order_by("issued_at", "number", "id")
            )
            filename = f"invoices-issued-{start}-{end}.csv"
        else:
            invoices = (
                self.get_queryset(request)
                .filter(period_start__gte=since, period_start__lt=until)
                .order_by("period_start", "number", "id")
            )
            filename = f"invoices-{start}-{end}.csv"
        invoices = invoices.select_related("customer")
        if request.GET.get("merchant"):
            invoices = invoices.filter(merchant_id=request.GET["merchant"])
        return invoices_csv(invoices, filename)

    def changelist_view(self, request, extra_context=None):
        extra_context = {"can_run_billing": can_run_billing(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.action(description="Issue (finalize) selected drafts", permissions=["change"])
    def action_finalize(self, request, queryset):
        self._each(request, queryset, "Issued", lambda inv: services.invoice_finalize(invoice=inv, now=timezone.now()))

    @admin.action(description="Refresh selected drafts with the latest usage", permissions=["change"])
    def action_refresh(self, request, queryset):
        self._each(
            request, queryset, "Refreshed", lambda inv: services.invoice_refresh(invoice=inv, now=timezone.now())
        )

    @admin.action(description="Mark selected invoices paid", permissions=["change"])
    def action_mark_paid(self, request, queryset):
        self._each(
            request,
            queryset,
            "Marked paid",
            lambda inv: services.invoice_mark_paid(invoice=inv, now=timezone.now(), recorded_by=recorded_by(request)),
        )

    @admin.action(description="Bill late usage of selected invoices (adjustment draft)", permissions=["change"])
    def action_bill_late_usage(self, request, queryset):
        def bill(invoice):
            adjustment = services.invoice_bill_late_usage(invoice=invoice, now=timezone.now())
            if adjustment is None:
                messages.info(request, f"{invoice}: no late usage.")

        self._each(request, queryset, "Checked for late usage", bill)

    @admin.action(description="Export selected invoices as CSV", permissions=["view"])
    def action_export_csv(self, request, queryset):
        return invoices_csv(queryset.select_related("customer").order_by("period_start", "number"), "invoices.csv")


class CreditNoteLineInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = CreditNoteLine
    merchant_path = "credit_note__merchant"
    money_fields = {"amount": "credit_note.currency"}
    extra = 0
    can_delete = False
    fields = ("invoice_line", "description", "amount_display")
    readonly_fields = fields
    amount_display = money_display("amount", "amount", currency="credit_note.currency")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CreditNote)
class CreditNoteAdmin(DocumentResendAdminMixin, MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    money_fields = dict.fromkeys(
        ("subtotal", "tax", "total", "applied_to_due", "credited_to_balance", "refunded"), "currency"
    )
    list_display = ("number", "invoice", "customer", "issued_at", "total_display", "settled_as", "status")
    list_filter = ("settlement", "status")
    search_fields = ("number", "invoice__number", "customer__name")
    inlines = (CreditNoteLineInline, CreditNoteDeliveryInline)
    actions = ("action_resend",)
    # Where its money went (the service's split; the three parts add up to the total): finance reads here
    # whether a credit note on a paid invoice became customer credit or a refund.
    readonly_fields = (
        "number",
        "status",
        "merchant",
        "customer",
        "invoice",
        "currency",
        "issued_at",
        "reason",
        "subtotal_display",
        "tax_display",
        "total_display",
        "settlement",
        "applied_to_due",
        "credited_to_balance",
        "refunded",
        "documents_links",
    )
    fields = readonly_fields
    subtotal_display = money_display("subtotal", "subtotal")
    tax_display = money_display("tax", "tax")
    total_display = money_display("total", "total")

    @admin.display(description="Settled as")
    def settled_as(self, note: CreditNote):
        return credit_note_settled_as(note)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Documents")
    def documents_links(self, note: CreditNote):
        return format_html('<a href="{}">Download PDF</a>', reverse("admin:invoicing_creditnote_pdf", args=[note.pk]))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/pdf/",
                self.admin_site.admin_view(require_safe(self.pdf_view)),
                name="invoicing_creditnote_pdf",
            ),
        ] + super().get_urls()

    def pdf_view(self, request, object_id):
        note = self.scoped_object_or_404(
            request, object_id, self.get_queryset(request).select_related("merchant", "customer", "invoice")
        )
        if not self.has_view_permission(request, note):
            raise PermissionDenied
        response = HttpResponse(documents.credit_note_pdf(note), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{note.number}.pdf"'
        return response


class BillingRunErrorInline(MerchantScopedAdminMixin, admin.TabularInline):
    model = BillingRunError
    merchant_path = "subscription__merchant"
    extra = 0
    can_delete = False
    verbose_name = "subscription not billed"
    verbose_name_plural = "Subscriptions not billed (failed, or abandoned with a lost worker's chunk)"
    fields = ("subscription", "period_start", "abandoned", "message")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class BillingRunChunkInline(MerchantScopedAdminMixin, admin.TabularInline):
    """Which chunk a worker started, finished, or lost (then the beat pass abandoned it)."""

    model = BillingRunChunk
    merchant_path = None  # a run is platform-wide, like its admin
    extra = 0
    can_delete = False
    fields = ("number", "subscription_count", "attempts", "started_at", "finished_at", "abandoned_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Subscriptions")
    def subscription_count(self, chunk: BillingRunChunk) -> int:
        return len(chunk.subscription_ids)


@admin.register(BillingRun)
class BillingRunAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Runs are platform-wide (one closes every merchant's periods): staff limited to merchants see none."""

    merchant_path = None
    list_display = (
        "id",
        "as_of",
        "trigger",
        "status",
        "progress",
        "invoices_created",
        "invoices_skipped",
        "invoices_failed",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "trigger")
    inlines = (BillingRunErrorInline, BillingRunChunkInline)
    change_list_template = "invoicing/admin/billingrun_change_list.html"
    readonly_fields = (
        "as_of",
        "trigger",
        "requested_by",
        "note",
        "status",
        "progress",
        "started_at",
        "finished_at",
        "subscriptions_total",
        "subscriptions_done",
        "chunks_total",
        "chunks_done",
        "invoices_created",
        "invoices_skipped",
        "invoices_failed",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # A run is the record of a closing; its invoices point at it (no API deletes a run either).
        return False

    def changelist_view(self, request, extra_context=None):
        extra_context = {"can_run_billing": can_run_billing(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description="Progress")
    def progress(self, run: BillingRun):
        return f"{run.progress_percent}% ({run.subscriptions_done}/{run.subscriptions_total} subscriptions, {run.chunks_done}/{run.chunks_total} chunks)"


@admin.register(SubscriptionPlanChange)
class SubscriptionPlanChangeAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "subscription__merchant"
    list_display = ("subscription", "kind", "from_plan", "to_plan", "effective_at", "applied_at", "canceled_at")
    list_filter = ("kind",)
    readonly_fields = (
        "subscription",
        "kind",
        "from_plan",
        "to_plan",
        "requested_at",
        "effective_at",
        "applied_at",
        "canceled_at",
        "invoice",
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Deleting a scheduled change would cancel it behind the subscription services (which cancel it
        # on an upgrade or termination, keeping the row); deleting an applied one would erase the record its
        # proration was billed from. No API deletes a plan change either.
        return False


def _late_usage_table(items) -> str:
    if not items:
        return "None."
    rows = [
        (
            item.invoice.number or item.invoice.id,
            item.line.description,
            f"{decimal_string(item.billed_quantity)}",
            f"{decimal_string(item.current_quantity)}",
            format_money(item.extra_amount, item.invoice.currency),
        )
        for item in items
    ]
    body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
    return format_html(
        "<table><thead><tr><th>Invoice</th><th>Line</th><th>Billed</th><th>Now</th><th>Not billed</th></tr></thead>"
        "<tbody>{}</tbody></table><p>Bill it with the invoice action “Bill late usage” (an adjustment invoice), "
        "or credit/ignore it.</p>",
        body,
    )


def _preview_table(previews) -> str:
    if not previews:
        return "No active subscription."
    blocks = []
    for subscription, preview in previews:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td style='text-align:right'>{}</td></tr>",
            ((line.description, format_money(line.amount, preview.currency)) for line in preview.lines),
        )
        blocks.append(
            format_html(
                "<p><strong>{}</strong> — period {} to {} (so far)</p><table><tbody>{}"
                "<tr><th>Total</th><th style='text-align:right'>{}</th></tr></tbody></table>",
                subscription.name,
                f"{preview.period_start:%Y-%m-%d}",
                f"{preview.period_end:%Y-%m-%d}",
                rows,
                format_money(preview.total, preview.currency),
            )
        )
    return format_html_join("", "{}", ((block,) for block in blocks))


INVOICING_CUSTOMER_FIELDS = ("upcoming_invoice", "late_usage_not_billed", "dunning")


class CustomerInvoicingAdminMixin:
    """The customer page's upcoming invoice preview and late usage not billed: mixed into catalog's
    ``CustomerAdmin`` by ``billing_site.admin``, which adds ``panels`` to the composed class's."""

    panels = (("Invoicing", INVOICING_CUSTOMER_FIELDS),)

    def get_queryset(self, request):
        # whether the customer was ever reminded comes with the customer's own row (the dunning panel)
        return receivables_selectors.customers_with_dunning_flag(super().get_queryset(request))

    @admin.display(description="Upcoming invoice (current period so far)")
    def upcoming_invoice(self, customer: Customer):
        return _preview_table(selectors.customer_invoice_previews(customer=customer, now=timezone.now()))

    @admin.display(description="Late usage not billed")
    def late_usage_not_billed(self, customer: Customer):
        return _late_usage_table(selectors.late_usage_for_customer(customer=customer))

    @admin.display(description="Dunning (payment reminders)")
    def dunning(self, customer: Customer):
        if not customer.has_dunning_reminders:
            # past due only ever follows a final notice: a customer never reminded has no past-due subscription
            return format_html("{}{}", past_due_list([]), dunning_table([]))
        return format_html(
            "{}{}",
            past_due_list(receivables_selectors.subscriptions_past_due_for_customer(customer=customer)),
            dunning_table(receivables_selectors.dunning_reminders_for_customer(customer=customer)),
        )

"""Finance's destructive invoice actions confirm first and ask why.

Void, void-and-reissue, credit note and "Run billing now" open a page that lists what will happen and asks for
a reason (required); only the confirmed post calls the service, with that reason. The reason is stored where
finance reads it again: the invoice's void reason, the credit note (printed on its document), the billing run's
note, and the invoice's history. A credit note for one invoice may credit chosen lines by chosen amounts.

The actions follow Django's ``delete_selected``: the page re-posts ``action``, ``_selected_action`` and
``post=yes`` to the change list. Everything goes through ``invoicing.services``; the admin holds no billing rule
(the amounts left to credit come from ``selectors.invoice_creditable_lines``, what a run would bill from
``services.billing_run_due``).
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from catalog.admin_scoping import request_merchant_ids
from catalog.pricing import round_money
from catalog.pricing.currency import format_money, minor_units

from . import selectors, services
from .models import CreditNoteSettlement, Invoice, InvoiceError, InvoiceKind, InvoiceStatus
from .receivables import invoice_amount_paid
from .tasks import billing_run_enqueue

CONFIRM_TEMPLATE = "invoicing/admin/invoice_action_confirm.html"
RUN_BILLING_TEMPLATE = "invoicing/admin/run_billing_confirm.html"
# The run-billing page lists at most this many invoices; the counts above it cover all of them.
RUN_BILLING_LISTED = 200


def can_run_billing(request) -> bool:
    """Who may start a billing run from the admin: whoever may change invoices (a run issues them), unless
    limited to some merchants: a run closes every merchant's periods and billing runs name no merchant, so
    their periods close on the beat schedule."""
    return request.user.has_perm("invoicing.change_invoice") and request_merchant_ids(request) is None


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 70}),
        error_messages={"required": "Give a reason: it is kept with what this changes."},
        help_text="Required. Kept with the change and shown in the history.",
    )


def offers_settlement(invoice: Invoice) -> bool:
    """Whether a credit note of ``invoice`` can go beyond what it owes: it is paid, or partly paid."""
    return invoice.status == InvoiceStatus.PAID or invoice_amount_paid(invoice=invoice) > 0


class CreditNoteForm(ReasonForm):
    """The credit note of one invoice: chosen amounts on chosen lines, or everything left to credit."""

    LINES, ALL = "lines", "all"
    scope = forms.ChoiceField(widget=forms.RadioSelect, initial=LINES, label="Credit")
    # Offered only when money was received (see ``offers_settlement``): the part of the credit note beyond
    # what the invoice still owes goes back to the customer one way or the other.
    settlement = forms.ChoiceField(
        widget=forms.RadioSelect,
        choices=[
            (CreditNoteSettlement.CUSTOMER_CREDIT, "Customer credit: applied to the customer's next invoices"),
            (CreditNoteSettlement.REFUND, "Refund: the money is paid back to the customer"),
        ],
        initial=CreditNoteSettlement.CUSTOMER_CREDIT,
        required=False,  # a post without it (an older page, a script) gets the service's default, customer credit
        label="Beyond what is due",
        help_text="The credit note first lowers what the invoice still owes; the rest becomes this.",
    )

    def __init__(self, *args, invoice: Invoice, creditable: list[selectors.CreditableLine], **kwargs):
        super().__init__(*args, **kwargs)
        self.invoice = invoice
        self.creditable = creditable
        if not offers_settlement(invoice):
            del self.fields["settlement"]
        currency = invoice.currency
        left = sum((item.remaining for item in creditable), Decimal(0))
        self.fields["scope"].choices = [
            (self.LINES, "Only the amounts entered on the lines below"),
            (self.ALL, f"Everything left to credit on the invoice ({format_money(left, currency)} before tax)"),
        ]
        for item in creditable:
            self.fields[self.amount_field(item)] = forms.DecimalField(
                required=False,
                max_digits=20,
                label=item.line.description,
                widget=forms.TextInput(attrs={"size": 10, "inputmode": "decimal"}),
                help_text=f"At most {format_money(item.remaining, currency)}.",
            )
        self.order_fields(["scope", *(self.amount_field(item) for item in creditable), "settlement", "reason"])

    @staticmethod
    def amount_field(item: selectors.CreditableLine) -> str:
        return f"amount_{item.line.pk}"

    def line_rows(self):
        """(line, billed, credited, left, bound amount field) for the template's table."""
        currency = self.invoice.currency
        return [
            {
                "line": item.line,
                "billed": format_money(item.line.amount, currency),
                "credited": format_money(item.credited, currency),
                "left": format_money(item.remaining, currency),
                "field": self[self.amount_field(item)],
            }
            for item in self.creditable
        ]

    def clean(self):
        cleaned = super().clean()
        currency = self.invoice.currency
        entered = {}
        for item in self.creditable:
            name = self.amount_field(item)
            amount = cleaned.get(name)
            if amount is None:
                continue
            if amount <= 0:
                self.add_error(name, "Enter an amount above zero, or leave the line empty.")
            elif round_money(amount, currency) != amount:
                self.add_error(name, f"{currency} amounts have at most {minor_units(currency)} decimals.")
            elif amount > item.remaining:
                self.add_error(
                    name,
                    f"At most {format_money(item.remaining, currency)} is left to credit on this line "
                    f"({format_money(item.line.amount, currency)} billed, "
                    f"{format_money(item.credited, currency)} already credited).",
                )
            else:
                entered[item.line.pk] = amount
        scope = cleaned.get("scope")
        has_amounts = any(str(self[self.amount_field(item)].value() or "").strip() for item in self.creditable)
        if scope == self.LINES and not has_amounts:
            self.add_error(None, "Enter an amount on at least one line, or choose to credit everything left.")
        if scope == self.ALL and has_amounts:
            self.add_error(
                "scope", "Amounts are entered on the lines: choose “Only the amounts entered”, or clear them."
            )
        self.amounts = entered
        return cleaned

    def chosen_settlement(self) -> str:
        """What ``credit_note_issue`` takes as ``settlement`` (the service's default when not offered)."""
        return self.cleaned_data.get("settlement") or CreditNoteSettlement.CUSTOMER_CREDIT

    def credited_amounts(self) -> dict[int, Decimal] | None:
        """What ``credit_note_issue`` takes: None credits everything left."""
        return None if self.cleaned_data["scope"] == self.ALL else self.amounts


def _invoice_rows(invoices, *, credit: bool = False) -> list[dict]:
    rows = []
    for invoice in invoices:
        row = {
            "invoice": invoice,
            "number": invoice.number or f"Draft {invoice.pk}",
            "customer": invoice.customer.name,
            "status": invoice.get_status_display(),
            "period": f"{invoice.period_start:%Y-%m-%d} – {invoice.period_end:%Y-%m-%d}",
            "total": format_money(invoice.total, invoice.currency),
        }
        if credit:
            left = sum((item.remaining for item in selectors.invoice_creditable_lines(invoice=invoice)), Decimal(0))
            row["left"] = format_money(left, invoice.currency)
        rows.append(row)
    return rows


VOID_EFFECT = (
    "Each invoice is voided: it is no longer owed and its number stays used (the sequence keeps no gap). "
    "A void cannot be undone. Invoices with credit notes, and paid invoices, are refused."
)
REISSUE_EFFECT = (
    "Each invoice is voided as above, and a new draft for the same period is written from the catalog and "
    "the usage as they are now, to review and issue."
)
CREDIT_EFFECT = (
    "Each invoice gets a credit note for everything not yet credited on it (tax at the invoice's rate). "
    "The invoices themselves do not change. Only issued or paid invoices can be credited."
)


class ConfirmedInvoiceActions:
    """The ``InvoiceAdmin`` actions and pages that confirm first (mixed into ``InvoiceAdmin``)."""

    def credit_note_issue(self, **kwargs):
        """The service the credit note page issues through; a higher layer's mixin (payments, composed by
        ``billing_site.admin``) replaces it to refund card payments through the provider as well."""
        return services.credit_note_issue(**kwargs)

    def _confirm_page(self, request, queryset, *, action: str, title: str, effect: str, submit: str, form, rows):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "effect": effect,
            "submit_label": submit,
            "rows": rows,
            "form": form,
            "action_name": action,
            "selected": [str(invoice.pk) for invoice in queryset],  # as the change list's checkboxes post them
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:invoicing_invoice_changelist"),
        }
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    def _confirmed(self, request, queryset, *, action, title, effect, submit, label, call, history, credit=False):
        """The confirmation page, or — on ``post=yes`` with a reason — ``call(invoice, reason)`` for each."""
        queryset = queryset.select_related("customer").order_by("period_start", "number", "pk")
        confirmed = request.POST.get("post") == "yes"
        form = ReasonForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            reason = form.cleaned_data["reason"]
            self._each(request, queryset, label, lambda invoice: call(invoice, reason), history=history(reason))
            return None
        rows = _invoice_rows(queryset, credit=credit)
        return self._confirm_page(
            request, queryset, action=action, title=title, effect=effect, submit=submit, form=form, rows=rows
        )

    def _each(self, request, queryset, label, call, history=None):
        done = 0
        for invoice in queryset:
            try:
                result = call(invoice)
                done += 1
            except InvoiceError as error:
                messages.error(request, f"{invoice}: {error}")
                continue
            if history is not None:
                self.log_change(request, invoice, history(result))
        if done:
            messages.success(request, f"{label}: {done} invoice(s).")

    @admin.action(description="Void selected invoices", permissions=["change"])
    def action_void(self, request, queryset):
        return self._confirmed(
            request,
            queryset,
            action="action_void",
            title="Void these invoices?",
            effect=VOID_EFFECT,
            submit="Void the invoices",
            label="Voided",
            call=lambda invoice, reason: services.invoice_void(invoice=invoice, now=timezone.now(), reason=reason),
            history=lambda reason: lambda _: f"Voided. Reason: {reason}",
        )

    @admin.action(description="Void selected invoices and reissue them as drafts", permissions=["change"])
    def action_void_and_reissue(self, request, queryset):
        return self._confirmed(
            request,
            queryset,
            action="action_void_and_reissue",
            title="Void these invoices and reissue them as drafts?",
            effect=REISSUE_EFFECT,
            submit="Void and reissue",
            label="Voided and reissued",
            call=lambda invoice, reason: services.invoice_void(
                invoice=invoice, now=timezone.now(), reason=reason, reissue=True
            ),
            history=lambda reason: lambda draft: f"Voided and reissued as draft {draft.pk}. Reason: {reason}",
        )

    @admin.action(description="Issue a credit note for selected invoices", permissions=["change"])
    def action_credit_note(self, request, queryset):
        if queryset.count() == 1:  # one invoice: the same page as its "Issue credit note" button (lines, amounts)
            return self._credit_note_page(request, queryset.select_related("customer", "merchant").get(), True)
        return self._confirmed(
            request,
            queryset,
            action="action_credit_note",
            title="Issue a credit note for each of these invoices?",
            effect=CREDIT_EFFECT,
            submit="Issue the credit notes",
            label="Credited",
            call=lambda invoice, reason: services.credit_note_issue(invoice=invoice, now=timezone.now(), reason=reason),
            history=lambda reason: lambda note: f"Credit note {note.number} issued. Reason: {reason}",
            credit=True,
        )

    # -- one invoice's credit note: chosen lines and amounts ---------------------------------------------

    def credit_note_view(self, request, object_id):
        invoice = self.scoped_object_or_404(
            request, object_id, self.get_queryset(request).select_related("customer", "merchant")
        )
        if not self.has_change_permission(request, invoice):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        return self._credit_note_page(request, invoice, False)

    def _credit_note_page(self, request, invoice: Invoice, as_action: bool):
        """The credit note page of one invoice. ``as_action``: reached through the change list's action, so
        the form re-posts the action (Django's intermediate page); otherwise it posts to itself."""
        submitted = request.method == "POST" and (request.POST.get("post") == "yes" or not as_action)
        form = CreditNoteForm(
            request.POST if submitted else None,
            invoice=invoice,
            creditable=selectors.invoice_creditable_lines(invoice=invoice),
        )
        change_url = reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)])
        if submitted and form.is_valid():
            reason = form.cleaned_data["reason"]
            try:
                note = self.credit_note_issue(
                    invoice=invoice,
                    now=timezone.now(),
                    reason=reason,
                    amounts=form.credited_amounts(),
                    settlement=form.chosen_settlement(),
                )
            except InvoiceError as error:
                form.add_error(None, str(error))
            else:
                self.log_change(request, invoice, f"Credit note {note.number} issued. Reason: {reason}")
                messages.success(
                    request, f"Credit note {note.number} issued for {format_money(note.total, note.currency)}."
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Issue a credit note for {invoice}",
            "effect": "The credit note credits the amounts chosen below, plus tax at the invoice's rate, and "
            "gets its own number. The invoice's lines and total do not change: the credit lowers what it still "
            "owes, and what goes beyond that is settled as chosen below.",
            "submit_label": "Issue the credit note",
            "rows": _invoice_rows([invoice], credit=True),
            "form": form,
            "credit_form": form,
            "change_url": change_url,
            "changelist_url": reverse("admin:invoicing_invoice_changelist"),
        }
        if as_action:
            context.update(
                action_name="action_credit_note",
                selected=[str(invoice.pk)],
                action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
            )
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.status in selectors.BILLED and self.has_change_permission(request, obj):
            context["credit_note_url"] = reverse("admin:invoicing_invoice_credit_note", args=[quote(obj.pk)])
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # -- "Run billing now" ----------------------------------------------------------------------------------

    def run_billing_view(self, request):
        """GET: what a run now would bill, and the reason asked; POST with a reason: the run."""
        if not can_run_billing(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            run = billing_run_enqueue(
                as_of=timezone.now(),
                trigger="admin",
                requested_by=request.user.get_username(),
                note=form.cleaned_data["reason"],
            )
            messages.success(request, f"Billing run {run.pk} started; follow its progress under Billing runs.")
            return HttpResponseRedirect(reverse("admin:invoicing_billingrun_change", args=[run.pk]))
        as_of = timezone.now()
        due = services.billing_run_due(as_of=as_of)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Run billing now?",
            "as_of": as_of,
            "form": form,
            "due": [
                {
                    "subscription": item.subscription,
                    "customer": item.subscription.customer.name,
                    "what": "Opening invoice (in-advance and one-off fees)"
                    if item.kind == InvoiceKind.OPENING
                    else "Period invoice",
                    "period": f"{item.period_start:%Y-%m-%d} – {item.period_end:%Y-%m-%d}"
                    if item.period_start is not None
                    else "—",
                }
                for item in due[:RUN_BILLING_LISTED]
            ],
            "invoice_count": len(due),
            "subscription_count": len({item.subscription.pk for item in due}),
            "more": max(0, len(due) - RUN_BILLING_LISTED),
            "runs_url": reverse("admin:invoicing_billingrun_changelist"),
        }
        return TemplateResponse(request, RUN_BILLING_TEMPLATE, context)

"""Finance's delivery pages: the delivery log (on each invoice and credit note, and as its own list), the
"Resend by e-mail" action, and each merchant's sender settings and e-mail templates.

Actions call the delivery services only (``invoicing/services/delivery.py``).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from catalog.admin_scoping import MerchantScopedAdminMixin

from . import services
from .mail_templates import MAIL_VARIABLES, SAFE_TAGS, mail_template_defaults
from .models import DeliverySettings, DocumentDelivery, InvoiceError, MailKind, MailTemplate

DELIVERY_FIELDS = ("reason", "status", "recipients_list", "attempts", "queued_at", "sent_at", "error", "requested_by")


def _recipients(delivery: DocumentDelivery) -> str:
    return ", ".join(delivery.recipients) or "—"


class DeliveryInline(MerchantScopedAdminMixin, admin.TabularInline):
    """The delivery log of one document: read only (the "Resend by e-mail" action adds a row)."""

    model = DocumentDelivery
    merchant_path = "merchant"
    extra = 0
    can_delete = False
    verbose_name = "e-mail"
    verbose_name_plural = "E-mail deliveries"
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    ordering = ("-queued_at", "-id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Recipients")
    def recipients_list(self, delivery: DocumentDelivery) -> str:
        return _recipients(delivery)


class InvoiceDeliveryInline(DeliveryInline):
    fk_name = "invoice"


class CreditNoteDeliveryInline(DeliveryInline):
    fk_name = "credit_note"


def _resend(modeladmin, request, documents) -> None:
    now, sent = timezone.now(), 0
    for document in documents:
        try:
            services.document_delivery_resend(document=document, now=now, requested_by=request.user.get_username())
        except InvoiceError as error:
            modeladmin.message_user(request, f"{document}: {error}", messages.ERROR)
            continue
        sent += 1
    if sent:
        modeladmin.message_user(
            request,
            f"Queued {sent} e-mail(s) to the customers' billing addresses; the delivery log shows the result.",
            messages.SUCCESS,
        )


class DocumentResendAdminMixin:
    """The "Resend by e-mail" action of the invoice and credit note pages (change permission)."""

    @admin.action(description="Resend selected documents by e-mail", permissions=["change"])
    def action_resend(self, request, queryset):
        _resend(self, request, queryset.select_related("merchant", "customer"))


@admin.register(DocumentDelivery)
class DocumentDeliveryAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """Every e-mail of every document: failed ones first to look at (filter by status)."""

    merchant_path = "merchant"
    list_display = ("document_link", "customer", "reason", "status", "recipients_list", "attempts", "queued_at")
    list_filter = ("status", "reason", "merchant")
    list_select_related = ("invoice__customer", "credit_note__customer")
    search_fields = ("invoice__number", "credit_note__number", "invoice__id", "credit_note__id", "recipients")
    date_hierarchy = "queued_at"
    actions = ("action_resend",)
    fields = (
        "merchant",
        "invoice",
        "credit_note",
        "reason",
        "status",
        "recipients_list",
        "sender",
        "subject",
        "message_id",
        "provider_message_id",
        "attempts",
        "error",
        "requested_by",
        "queued_at",
        "next_attempt_at",
        "last_attempt_at",
        "sent_at",
        "bounced_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the log of what was sent to customers

    @admin.display(description="Document")
    def document_link(self, delivery: DocumentDelivery):
        return str(delivery.document)

    @admin.display(description="Customer")
    def customer(self, delivery: DocumentDelivery):
        return delivery.document.customer

    @admin.display(description="Recipients")
    def recipients_list(self, delivery: DocumentDelivery) -> str:
        return _recipients(delivery)

    @admin.action(description="Resend the documents of selected deliveries", permissions=["change"])
    def action_resend(self, request, queryset):
        deliveries = queryset.select_related("invoice__merchant", "credit_note__merchant", "credit_note__invoice")
        unique = {delivery.document.pk: delivery.document for delivery in deliveries}
        _resend(self, request, unique.values())


@admin.register(DeliverySettings)
class DeliverySettingsAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    merchant_path = "merchant"
    list_display = ("merchant", "enabled", "from_name", "from_email", "reply_to")
    fieldsets = (
        (None, {"fields": ("merchant", "enabled", "send_zero_total")}),
        ("Sender", {"fields": ("from_name", "from_email", "reply_to", "bcc")}),
    )

    def get_readonly_fields(self, request, obj=None):
        return ("merchant",) if obj is not None else ()


class MailTemplateForm(forms.ModelForm):
    class Meta:
        model = MailTemplate
        fields = ("merchant", "kind", "subject", "body_text", "body_html")
        widgets = {
            "subject": forms.TextInput(attrs={"style": "width: 60em"}),
            "body_text": forms.Textarea(attrs={"rows": 16, "style": "width: 60em; font-family: monospace"}),
            "body_html": forms.Textarea(attrs={"rows": 24, "style": "width: 60em; font-family: monospace"}),
        }


@admin.register(MailTemplate)
class MailTemplateAdmin(MerchantScopedAdminMixin, admin.ModelAdmin):
    """A merchant's wording of an e-mail; a new one starts from the default text (``?kind=credit_note`` for
    the credit note's)."""

    merchant_path = "merchant"
    form = MailTemplateForm
    list_display = ("merchant", "kind", "subject", "updated_at")
    list_filter = ("kind", "merchant")
    fieldsets = (
        (None, {"fields": ("merchant", "kind")}),
        ("Message", {"fields": ("subject", "body_text", "body_html", "variables")}),
    )
    readonly_fields = ("variables",)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        kind = initial.get("kind") if initial.get("kind") in MailKind.values else MailKind.INVOICE
        return {"kind": kind, **mail_template_defaults(kind), **initial}

    @admin.display(description="What a template may use")
    def variables(self, template: MailTemplate | None):
        blocks = [
            format_html(
                "<p><strong>{}</strong></p><ul>{}</ul>",
                MailKind(kind).label,
                format_html_join("", "<li><code>{{{{ {} }}}}</code>: {}</li>", names.items()),
            )
            for kind, names in MAIL_VARIABLES.items()
        ]
        return format_html(
            "{}<p>Django template syntax; tags: {}; every built-in filter (e.g. <code>{{{{ customer_name|upper }}}}</code>)."
            " The HTML body is escaped automatically.</p>",
            format_html_join("", "{}", ((block,) for block in blocks)),
            ", ".join(SAFE_TAGS),
        )

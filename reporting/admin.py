"""Admin extensions behind the billing home's links.

The invoice list gains a "Payment" filter (``?payment=past_due``), so the home page's "past due" list links
to the full filtered list. Following the project's rule, this higher app subclasses whatever admin is
registered for ``Invoice`` (invoicing's), unregisters it and registers the subclass.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from invoicing.models import Invoice

from . import selectors


class PaymentDueListFilter(admin.SimpleListFilter):
    title = "payment"
    parameter_name = "payment"

    def lookups(self, request, model_admin):
        return [("past_due", "Issued, unpaid, past due")]

    def queryset(self, request, queryset):
        if self.value() == "past_due":
            return queryset.filter(pk__in=selectors.invoices_past_due(now=timezone.now()).values("pk"))
        return queryset


_InvoiceAdminBase = type(admin.site._registry[Invoice]) if admin.site.is_registered(Invoice) else admin.ModelAdmin


class InvoiceWithPaymentFilterAdmin(_InvoiceAdminBase):
    list_filter = (*getattr(_InvoiceAdminBase, "list_filter", ()), PaymentDueListFilter)


if admin.site.is_registered(Invoice):
    admin.site.unregister(Invoice)
admin.site.register(Invoice, InvoiceWithPaymentFilterAdmin)

"""Admin extensions behind the billing home's links.

The invoice list gains a "Payment" filter (``?payment=past_due``), so the home page's "past due" list links
to the full filtered list: ``InvoicePaymentFilterAdminMixin``, which ``billing_site.admin`` mixes into
invoicing's ``InvoiceAdmin`` before registering it (this module registers nothing).
"""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

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


class InvoicePaymentFilterAdminMixin:
    """Adds the "Payment" filter after the invoice admin's own filters."""

    def get_list_filter(self, request):
        return (*super().get_list_filter(request), PaymentDueListFilter)

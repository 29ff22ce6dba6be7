"""The admin pages that span apps, composed here, the one place that may import every app.

The customer page belongs to catalog and the invoice page to invoicing, but higher apps add to them:
metering, wallets and invoicing panels on the customer page, reporting a filter on the invoice list. Each
app offers a mixin and registers nothing for a lower app's model; this module composes the final classes
in an explicit order and registers them. Django's admin autodiscovery imports it (``billing_site`` is the
last of ``INSTALLED_APPS``, ``billing_site.apps``), so the registry is complete wherever Django is set up:
requests, ``manage.py check``, tests.
"""

from __future__ import annotations

from django.contrib import admin

from catalog import admin as catalog_admin
from catalog.models import Customer
from invoicing import admin as invoicing_admin
from invoicing.admin import CustomerInvoicingAdminMixin
from invoicing.models import Invoice
from metering.admin import CustomerUsageAdminMixin
from reporting.admin import InvoicePaymentFilterAdminMixin
from wallets.admin import CustomerCreditAdminMixin


@admin.register(Customer)
class CustomerAdmin(
    CustomerInvoicingAdminMixin,
    CustomerCreditAdminMixin,
    CustomerUsageAdminMixin,
    catalog_admin.CustomerAdmin,
):
    """Catalog's customer page with, below its own sections: usage this month (metering), prepaid credit
    with the grant / top-up pages (wallets), upcoming invoice and late usage (invoicing)."""

    panels = (
        *catalog_admin.CustomerAdmin.panels,
        *CustomerUsageAdminMixin.panels,
        *CustomerCreditAdminMixin.panels,
        *CustomerInvoicingAdminMixin.panels,
    )


@admin.register(Invoice)
class InvoiceAdmin(InvoicePaymentFilterAdminMixin, invoicing_admin.InvoiceAdmin):
    """Invoicing's invoice page with reporting's "Payment: past due" filter (the billing home links to it)."""

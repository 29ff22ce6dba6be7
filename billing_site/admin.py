"""The admin pages that span apps, composed here, the one place that may import every app.

The customer page belongs to catalog and the invoice page to invoicing, but higher apps add to them:
metering, wallets, invoicing and payments panels on the customer page, invoicing the add page and lifecycle buttons
of the subscription page, reporting a filter on the invoice list. Each app offers a mixin and registers
nothing for a lower app's model; this module composes the final classes in an explicit order and registers
them. It is also the one place that replaces a third-party app's admin (Django's users, django-celery-beat's
schedule) with the project's, so no app module unregisters anything. Django's admin autodiscovery imports it (``billing_site`` is the
last of ``INSTALLED_APPS``, ``billing_site.apps``), so the registry is complete wherever Django is set up:
requests, ``manage.py check``, tests.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model

from catalog import admin as catalog_admin
from catalog.admin_schedule import SCHEDULE_ADMINS
from catalog.models import Customer, Subscription
from invoicing import admin as invoicing_admin
from invoicing.admin import CustomerInvoicingAdminMixin
from invoicing.admin_adjustments import SubscriptionAdjustmentsAdminMixin
from invoicing.admin_one_off import CustomerOneOffInvoiceAdminMixin
from invoicing.admin_purchases import CustomerPurchasesAdminMixin
from invoicing.admin_receivables import CustomerReceivablesAdminMixin
from invoicing.admin_subscriptions import SubscriptionServicesAdminMixin
from invoicing.models import Invoice
from metering.admin import CustomerUsageAdminMixin
from payments.admin import CustomerPaymentsAdminMixin, InvoicePaymentsAdminMixin
from reporting.admin import CustomerStatementAdminMixin, InvoicePaymentFilterAdminMixin, InvoiceReceivablesAdminMixin
from wallets.admin import CustomerCreditAdminMixin


@admin.register(Customer)
class CustomerAdmin(
    CustomerPaymentsAdminMixin,
    CustomerStatementAdminMixin,
    CustomerOneOffInvoiceAdminMixin,
    CustomerReceivablesAdminMixin,
    CustomerPurchasesAdminMixin,
    CustomerInvoicingAdminMixin,
    CustomerCreditAdminMixin,
    CustomerUsageAdminMixin,
    catalog_admin.CustomerAdmin,
):
    """Catalog's customer page with, below its own sections: usage this month (metering), prepaid credit
    with the grant page (wallets), upcoming invoice and late usage (invoicing), the top-up and reserved capacity
    sales (invoicing, on an invoice), customer credit balances and "Record payment" (invoicing's receivables),
    "Issue a one-off invoice" (invoicing), the account statement page and PDF (reporting), and the saved payment
    methods (payments)."""

    panels = (
        *catalog_admin.CustomerAdmin.panels,
        *CustomerUsageAdminMixin.panels,
        *CustomerCreditAdminMixin.panels,
        *CustomerInvoicingAdminMixin.panels,
        # one "Receivables" section: credit balances (invoicing) and the account statement (reporting)
        ("Receivables", (*CustomerReceivablesAdminMixin.panels[0][1], *CustomerStatementAdminMixin.panels[0][1])),
        *CustomerPaymentsAdminMixin.panels,
    )


@admin.register(Invoice)
class InvoiceAdmin(
    InvoicePaymentsAdminMixin,
    InvoiceReceivablesAdminMixin,
    InvoicePaymentFilterAdminMixin,
    invoicing_admin.InvoiceAdmin,
):
    """Invoicing's invoice page with reporting's "Payment: past due" filter (the billing home links to it) and
    its receivables aging report (``aging/``, CSV ``aging/export/``), and payments' panel of the automatic
    charge attempts (provider reference, failure reason)."""

    panels = (*invoicing_admin.InvoiceAdmin.panels, *InvoicePaymentsAdminMixin.panels)


@admin.register(Subscription)
class SubscriptionAdmin(
    SubscriptionAdjustmentsAdminMixin, SubscriptionServicesAdminMixin, catalog_admin.SubscriptionAdmin
):
    """Catalog's subscription page (lifecycle fields read-only) with invoicing's add page and lifecycle buttons,
    which start, re-plan and end subscriptions through ``invoicing.services`` as the API does, and its
    adjustments (listed; added and deleted through ``invoicing.services.adjustments``)."""


# Third-party admins replaced by the project's: ``billing_site`` is the last installed app, so theirs are
# registered by now (``unregister`` raises otherwise: a reordered INSTALLED_APPS fails loudly at start-up).
for _model, _model_admin in ((get_user_model(), catalog_admin.StaffUserAdmin), *SCHEDULE_ADMINS.items()):
    admin.site.unregister(_model)
    admin.site.register(_model, _model_admin)

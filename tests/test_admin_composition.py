"""The customer and invoice admins are composed explicitly in ``billing_site.admin`` from each app's mixin,
whatever the order of ``INSTALLED_APPS``; no app registers an admin for a lower app's model."""

from __future__ import annotations

from django.contrib import admin
from django.test import RequestFactory

import billing_site.admin
from catalog import admin as catalog_admin
from catalog.admin_history import AttributedHistoryAdmin
from catalog.admin_numbers import NormalizedNumbersAdminMixin
from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.models import Customer
from invoicing import admin as invoicing_admin
from invoicing.admin_confirmations import ConfirmedInvoiceActions
from invoicing.models import Invoice
from metering.admin import CustomerUsageAdminMixin
from reporting.admin import InvoicePaymentFilterAdminMixin, PaymentDueListFilter
from wallets.admin import CustomerCreditAdminMixin


def test_the_registered_customer_admin_is_the_composed_one():
    model_admin = admin.site.get_model_admin(Customer)

    assert type(model_admin) is billing_site.admin.CustomerAdmin
    for part in (
        CustomerUsageAdminMixin,
        CustomerCreditAdminMixin,
        invoicing_admin.CustomerInvoicingAdminMixin,
        catalog_admin.CustomerAdmin,
        MerchantScopedAdminMixin,
        NormalizedNumbersAdminMixin,
        AttributedHistoryAdmin,
    ):
        assert isinstance(model_admin, part), part


def test_the_customer_panels_follow_the_apps_in_page_order():
    model_admin = admin.site.get_model_admin(Customer)

    assert [title for title, _ in model_admin.panels] == ["Usage this month", "Prepaid credit", "Invoicing"]
    assert model_admin.panels[1] == ("Prepaid credit", ("prepaid_balances", "prepaid_ledger", "upcoming_expiries"))


def test_the_registered_invoice_admin_adds_reportings_filter_after_invoicings(admin_user):
    model_admin = admin.site.get_model_admin(Invoice)
    request = RequestFactory().get("/admin/invoicing/invoice/")
    request.user = admin_user

    assert type(model_admin) is billing_site.admin.InvoiceAdmin
    for part in (
        InvoicePaymentFilterAdminMixin,
        invoicing_admin.InvoiceAdmin,
        ConfirmedInvoiceActions,
        MerchantScopedAdminMixin,
        NormalizedNumbersAdminMixin,
        AttributedHistoryAdmin,
    ):
        assert isinstance(model_admin, part), part
    assert tuple(model_admin.get_list_filter(request)) == (
        *invoicing_admin.InvoiceAdmin.list_filter,
        PaymentDueListFilter,
    )


def test_the_apps_mixins_register_nothing_and_are_no_model_admins():
    for mixin in (
        CustomerUsageAdminMixin,
        CustomerCreditAdminMixin,
        invoicing_admin.CustomerInvoicingAdminMixin,
        InvoicePaymentFilterAdminMixin,
    ):
        assert not issubclass(mixin, admin.ModelAdmin), mixin

"""The customer, subscription and invoice admins are composed explicitly in ``billing_site.admin`` from each
app's mixin, whatever the order of ``INSTALLED_APPS``; no app registers an admin for a lower app's model, and
only ``billing_site.admin`` replaces a third-party app's admin."""

from __future__ import annotations

import ast
from pathlib import Path

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

import billing_site.admin
from catalog import admin as catalog_admin
from catalog.admin_history import AttributedHistoryAdmin
from catalog.admin_numbers import NormalizedNumbersAdminMixin
from catalog.admin_schedule import PlatformWideAdminMixin
from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.models import Customer, Subscription
from invoicing import admin as invoicing_admin
from invoicing.admin_confirmations import ConfirmedInvoiceActions
from invoicing.admin_subscriptions import SubscriptionServicesAdminMixin
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

    assert [title for title, _ in model_admin.panels] == [
        "Usage this month",
        "Prepaid credit",
        "Invoicing",
        "Receivables",
        "Payment methods",
    ]
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
        SubscriptionServicesAdminMixin,
    ):
        assert not issubclass(mixin, admin.ModelAdmin), mixin


def test_the_registered_subscription_admin_is_catalogs_page_with_invoicings_services():
    model_admin = admin.site.get_model_admin(Subscription)

    assert type(model_admin) is billing_site.admin.SubscriptionAdmin
    assert isinstance(model_admin, SubscriptionServicesAdminMixin)
    assert isinstance(model_admin, catalog_admin.SubscriptionAdmin)
    assert model_admin.change_form_template == "invoicing/admin/subscription_change_form.html"


def test_third_party_admins_are_replaced_by_the_projects():
    assert type(admin.site.get_model_admin(get_user_model())) is catalog_admin.StaffUserAdmin
    for model in (PeriodicTask, ClockedSchedule, CrontabSchedule, IntervalSchedule, SolarSchedule):
        assert isinstance(admin.site.get_model_admin(model), PlatformWideAdminMixin), model


ROOT = Path(__file__).resolve().parent.parent
APPS = ("core", "catalog", "metering", "wallets", "invoicing", "payments", "reporting", "billing_site")


def replacements(source: str) -> list[int]:
    """Lines of ``source`` that unregister an admin or reach into the admin site's ``_registry``."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in ("unregister", "_registry")
    ]


def test_the_check_finds_an_unregister_and_the_registry():
    assert replacements("from django.contrib import admin\nadmin.site.unregister(Model)\n") == [2]
    assert replacements("x = admin.site._registry[Model]\n") == [1]
    assert replacements("admin.site.register(Model, ModelAdmin)\n") == []


def test_only_billing_site_admin_replaces_a_registered_admin():
    found = {
        str(path.relative_to(ROOT)): lines
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts and (lines := replacements(path.read_text()))
    }

    assert set(found) == {"billing_site/admin.py"}

"""No page of the billing admin prints a decimal at its stored scale (``25.000000000000``) or with an exponent
(``0E-12``, ``1E+3``): every change list and change page, as a superuser and as a "Billing viewer".

Generic on purpose, like ``test_admin_viewer_changes_nothing``: every registered admin of the billing apps is
walked, with a row of every model (its ``every_admin_object`` fixture), so a page added later is covered.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from catalog.admin_numbers import NormalizedNumbersAdminMixin
from catalog.models import Customer
from invoicing.models import CreditNote, Invoice
from tests.test_admin_viewer_changes_nothing import BILLING_APPS, every_admin_object, viewer, viewer_client  # noqa: F401
from wallets.models import LedgerEntry, Wallet
from wallets.services import credit_grant

pytestmark = pytest.mark.django_db

# A digit, a point, then zeros a person would never write (a stored scale), or a scientific exponent.
# (A number, not the inside of a public id such as cus_a1e5.)
UNNORMALIZED = re.compile(r"\d\.\d*0{3,}(?!\d)|(?<![\w.])\d+(?:\.\d+)?[eE][-+]?\d+\b")
MEANINGFUL_TEXT = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*type=\"hidden\"[^>]*>| step=\"[^\"]*\"", re.S)
MERCHANT_APPS = tuple(app for app in BILLING_APPS if app != "django_celery_beat")


def billing_models(app_labels=BILLING_APPS):
    return [
        model for model in apps.get_models() if model._meta.app_label in app_labels and admin.site.is_registered(model)
    ]


@pytest.fixture
def big_numbers(request):
    """A row of every model, and a million of credit, so a stored scale would print as 1000000.000000000000."""
    request.getfixturevalue("every_admin_object")
    customer = Customer.objects.get(external_id="viewer-test")
    credit_grant(
        customer=customer,
        currency="USD",
        amount=Decimal("1000000"),
        idempotency_key="million",
        now=datetime(2026, 1, 2, tzinfo=UTC),
    )
    return customer


@pytest.fixture
def superuser_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def unnormalized_numbers(html: str) -> list[str]:
    return UNNORMALIZED.findall(MEANINGFUL_TEXT.sub("", html))


def pages_of_every_admin():
    # django-celery-beat's solar schedule names itself "sunrise (52.520000, 13.400000)" (its model's __str__).
    for model in billing_models(MERCHANT_APPS):
        info = (model._meta.app_label, model._meta.model_name)
        yield f"{model._meta.label} list", reverse("admin:{}_{}_changelist".format(*info))
        for pk in model._default_manager.order_by("pk").values_list("pk", flat=True)[:3]:
            yield f"{model._meta.label} {pk}", reverse("admin:{}_{}_change".format(*info), args=[quote(pk)])


def test_every_merchant_admin_shows_numbers_normalized():
    assert [
        model._meta.label
        for model in billing_models()
        if model._meta.app_label in MERCHANT_APPS
        and not isinstance(admin.site.get_model_admin(model), NormalizedNumbersAdminMixin)
    ] == []


@pytest.mark.parametrize("who", ["superuser", "viewer"])
def test_no_page_shows_a_stored_scale_or_an_exponent(big_numbers, who, request):
    client = request.getfixturevalue(f"{who}_client")
    found = {}
    pages = 0
    for name, url in pages_of_every_admin():
        response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        pages += 1
        numbers = unnormalized_numbers(response.content.decode())
        if numbers:
            found[name] = numbers
    assert found == {}
    assert pages > 40


def test_money_is_shown_in_its_currency(big_numbers, superuser_client):
    wallet = Wallet.objects.get(customer__external_id="viewer-test", currency="USD")
    entry = LedgerEntry.objects.get(wallet=wallet, amount=Decimal("1000000"))
    invoice = Invoice.objects.filter(customer__external_id="viewer-test").order_by("pk").first()
    credit_note = CreditNote.objects.get(invoice=invoice)

    wallet_page = superuser_client.get(reverse("admin:wallets_wallet_change", args=[quote(wallet.pk)]))
    entry_page = superuser_client.get(reverse("admin:wallets_ledgerentry_change", args=[quote(entry.pk)]))
    invoice_page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[quote(invoice.pk)]))
    note_page = superuser_client.get(reverse("admin:invoicing_creditnote_change", args=[quote(credit_note.pk)]))

    assert "$1,000,025.00" in wallet_page.content.decode()
    assert "$1,000,000.00" in entry_page.content.decode()
    assert f"${invoice.total:,.2f}" in invoice_page.content.decode()
    assert f"${credit_note.total:,.2f}" in note_page.content.decode()

"""The Stripe connection in the admin: saved through the same service as the API, secrets write-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from payments.credentials import credential_decrypt
from payments.models import MerchantIntegration
from tests.factories import CustomerFactory

from .conftest import SECRET_KEY
from .factories import payments_rows

pytestmark = pytest.mark.django_db

ADD = reverse("admin:payments_merchantintegration_add")


def _form(merchant, **fields) -> dict:
    return {
        "merchant": merchant.pk,
        "provider": "stripe",
        "external_id": "",
        "publishable_key": "",
        "metadata": "{}",
    } | fields


def test_connecting_stripe_in_the_admin_stores_the_key_encrypted_and_never_shows_it(superuser_client, merchant):
    response = superuser_client.post(ADD, _form(merchant, secret_key=SECRET_KEY, webhook_secret="whsec_abcdefgh1234"))

    integration = MerchantIntegration.objects.get()
    assert response.status_code == 302
    assert credential_decrypt(integration.secret_key_encrypted) == SECRET_KEY
    assert (integration.status, integration.secret_key_hint, integration.webhook_secret_hint) == (
        "active",
        "sk_test_…6789",
        "whsec_…1234",
    )
    page = superuser_client.get(reverse("admin:payments_merchantintegration_change", args=[integration.pk]))
    listing = superuser_client.get(reverse("admin:payments_merchantintegration_changelist"))
    for shown in (page, listing):
        assert SECRET_KEY not in shown.content.decode() and "abcdefgh1234" not in shown.content.decode()
    assert "sk_test_…6789" in page.content.decode()


def test_the_form_names_what_is_wrong_beside_the_field(superuser_client, merchant):
    missing = superuser_client.post(ADD, _form(merchant))
    wrong = superuser_client.post(ADD, _form(merchant, secret_key="pk_test_0123456789abc", webhook_secret="nope"))

    assert missing.status_code == wrong.status_code == 200
    assert list(missing.context["adminform"].form.errors) == ["secret_key"]
    assert sorted(wrong.context["adminform"].form.errors) == ["secret_key", "webhook_secret"]
    assert not MerchantIntegration.objects.exists()


def test_saving_without_a_new_key_keeps_the_stored_one(superuser_client, merchant):
    superuser_client.post(ADD, _form(merchant, secret_key=SECRET_KEY))
    integration = MerchantIntegration.objects.get()
    change = reverse("admin:payments_merchantintegration_change", args=[integration.pk])

    response = superuser_client.post(change, _form(merchant, external_id="acct_123", secret_key=""))

    integration.refresh_from_db()
    assert response.status_code == 302
    assert (integration.external_id, credential_decrypt(integration.secret_key_encrypted)) == ("acct_123", SECRET_KEY)


def test_the_disconnect_action_erases_the_secrets(superuser_client, merchant, now):
    payments_rows(customer=CustomerFactory(merchant=merchant), name="Ada", now=now)
    integration = MerchantIntegration.objects.get()

    superuser_client.post(
        reverse("admin:payments_merchantintegration_changelist"),
        {"action": "disconnect", "_selected_action": [integration.pk]},
    )

    integration.refresh_from_db()
    assert (integration.status, integration.secret_key_encrypted, integration.secret_key_hint) == (
        "disconnected",
        "",
        "",
    )


def test_the_payment_method_pages_open(superuser_client, merchant, now):
    method = payments_rows(customer=CustomerFactory(merchant=merchant), name="Ada", now=now)

    listing = superuser_client.get(reverse("admin:payments_paymentmethod_changelist"))
    page = superuser_client.get(reverse("admin:payments_paymentmethod_change", args=[method.pk]))

    assert listing.status_code == page.status_code == 200
    assert "visa •••• 4242" in listing.content.decode()


def test_the_customer_page_shows_the_saved_methods_and_the_default(superuser_client, merchant, now):
    customer = CustomerFactory(merchant=merchant)
    empty = superuser_client.get(reverse("admin:catalog_customer_change", args=[customer.pk])).content.decode()
    payments_rows(customer=customer, name="Ada", now=now)

    page = superuser_client.get(reverse("admin:catalog_customer_change", args=[customer.pk])).content.decode()

    assert "Payment methods" in page and "None saved" in empty
    assert "visa •••• 4242" in page and "08/2030" in page and "default" in page
    assert "pm_test_Ada" in page and "cus_test_Ada (test)" in page

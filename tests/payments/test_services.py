"""The payments services against the local Stripe server, through the real ``stripe`` library: credentials
encrypted at rest, the Stripe customer created once, cards saved by SetupIntent, the mirror and its default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import InvalidToken
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection

from payments import selectors
from payments.credentials import credential_decrypt
from payments.errors import PaymentsNotConnected
from payments.models import IntegrationStatus, MerchantIntegration, PaymentMethod, ProviderCustomer
from payments.services import (
    integration_disconnect,
    integration_upsert,
    payment_method_save,
    payment_method_set_default,
    payment_methods_sync,
    payment_session_setup_create,
    provider_customer_ensure,
)
from tests.factories import CustomerFactory, MerchantFactory

from .conftest import SECRET_KEY

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_secret_key_is_stored_encrypted_and_shown_only_as_a_hint(merchant, now):
    integration = integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM payments_merchantintegration")
        stored = " ".join(str(value) for value in cursor.fetchone())
    assert SECRET_KEY not in stored and "0123456789" not in stored
    assert credential_decrypt(integration.secret_key_encrypted) == SECRET_KEY
    assert (integration.secret_key_hint, integration.mode, integration.status) == ("sk_test_…6789", "test", "active")


def test_a_key_encrypted_with_a_retired_key_is_still_read_after_rotation(merchant, now, settings):
    from cryptography.fernet import Fernet

    integration = integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
    old = list(settings.METERLINE_CREDENTIAL_KEYS)

    settings.METERLINE_CREDENTIAL_KEYS = [Fernet.generate_key().decode(), *old]
    rotated = credential_decrypt(integration.secret_key_encrypted)
    settings.METERLINE_CREDENTIAL_KEYS = [Fernet.generate_key().decode()]

    assert rotated == SECRET_KEY
    with pytest.raises(Exception) as unreadable:
        credential_decrypt(integration.secret_key_encrypted)
    assert type(unreadable.value).__name__ == "CredentialUnreadable"
    assert isinstance(unreadable.value.__context__, InvalidToken)


def test_connecting_refuses_what_is_not_a_stripe_key(merchant, now):
    with pytest.raises(ValidationError) as no_key:
        integration_upsert(merchant=merchant, provider="stripe", now=now)
    with pytest.raises(ValidationError) as publishable:
        integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key="pk_test_0123456789abc")
    with pytest.raises(ValidationError) as other_mode:
        integration_upsert(
            merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY, publishable_key="pk_live_abc"
        )
    with pytest.raises(ValidationError) as provider:
        integration_upsert(merchant=merchant, provider="salesforce", now=now, secret_key=SECRET_KEY)

    assert list(no_key.value.message_dict) == ["secret_key"]
    assert list(publishable.value.message_dict) == ["secret_key"]
    assert list(other_mode.value.message_dict) == ["publishable_key"]
    assert list(provider.value.message_dict) == ["provider"]
    assert not MerchantIntegration.objects.exists()


def test_an_upsert_keeps_what_it_does_not_name_and_the_database_keeps_one_per_provider(merchant, now):
    first = integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)

    later = integration_upsert(merchant=merchant, provider="stripe", now=now + timedelta(hours=1), metadata={"a": 1})

    assert later.pk == first.pk and later.secret_key_encrypted == first.secret_key_encrypted
    assert (later.metadata, later.connected_at, later.updated_at) == ({"a": 1}, now, now + timedelta(hours=1))
    with pytest.raises(IntegrityError):
        MerchantIntegration.objects.create(
            merchant=merchant,
            provider="stripe",
            secret_key_encrypted="x",
            connected_at=now,
            created_at=now,
            updated_at=now,
        )


def test_disconnecting_erases_the_secrets_and_connecting_again_needs_the_key(merchant, now):
    integration = integration_upsert(
        merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY, webhook_secret="whsec_abcdefgh"
    )

    gone = integration_disconnect(integration=integration, now=now + timedelta(days=1))
    with pytest.raises(ValidationError) as without_key:
        integration_upsert(merchant=merchant, provider="stripe", now=now + timedelta(days=2))
    back = integration_upsert(
        merchant=merchant, provider="stripe", now=now + timedelta(days=3), secret_key="sk_live_0123456789abcdef"
    )

    assert (gone.status, gone.disconnected_at, gone.secret_key_encrypted, gone.webhook_secret_hint) == (
        IntegrationStatus.DISCONNECTED,
        now + timedelta(days=1),
        "",
        "",
    )
    assert list(without_key.value.message_dict) == ["secret_key"]
    assert (back.status, back.mode, back.disconnected_at, back.connected_at) == (
        "active",
        "live",
        None,
        now + timedelta(days=3),
    )


def test_the_stripe_customer_is_created_on_first_need_and_remembered(stripe_connected, stripe_server, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant, name="Ada", email="ada@example.com")

    first = provider_customer_ensure(customer=customer, now=now)
    again = provider_customer_ensure(customer=customer, now=now)

    assert first.pk == again.pk and first.reference.startswith("cus_")
    [sent] = stripe_server.calls("POST", "/v1/customers")
    assert sent.params["metadata[meterline_customer]"] == customer.pk
    assert sent.idempotency_key == f"meterline-customer-{stripe_connected.pk}-test-{customer.pk}"
    assert sent.api_key == SECRET_KEY


def test_two_requests_creating_the_stripe_customer_at_once_make_one(stripe_connected, stripe_server, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant)
    first = provider_customer_ensure(customer=customer, now=now)
    ProviderCustomer.objects.all().delete()  # the second request had read "none" before the first wrote

    second = provider_customer_ensure(customer=customer, now=now)

    assert second.reference == first.reference
    assert len(stripe_server.state.customers) == 1


def test_without_a_connected_provider_nothing_reaches_stripe(merchant, now, stripe_server):
    customer = CustomerFactory(merchant=merchant)

    with pytest.raises(PaymentsNotConnected):
        payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)
    payment_methods_sync(customer=customer, now=now)

    assert stripe_server.requests == []


def test_a_saved_card_is_mirrored_and_the_first_becomes_the_default(stripe_connected, stripe_server, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant)

    visa = payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)
    master = payment_method_save(customer=customer, payment_method="pm_card_mastercard", now=now)

    assert (visa.brand, visa.last4, visa.type, visa.is_default) == ("visa", "4242", "card", True)
    assert (master.brand, master.last4, master.is_default) == ("mastercard", "4444", False)
    assert visa.reference in stripe_server.state.payment_methods
    [setup, _] = stripe_server.calls("POST", "/v1/setup_intents")
    assert setup.params["customer"] == visa.provider_customer.reference
    assert selectors.payment_method_default(customer=customer) == visa


def test_choosing_another_default_leaves_exactly_one(stripe_connected, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant)
    visa = payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)
    master = payment_method_save(customer=customer, payment_method="pm_card_mastercard", now=now)

    payment_method_set_default(payment_method=master)

    assert list(PaymentMethod.objects.filter(is_default=True)) == [master]
    with pytest.raises(IntegrityError):
        PaymentMethod.objects.filter(pk=visa.pk).update(is_default=True)


def test_the_sync_adds_a_card_saved_on_stripes_page_and_detaches_one_removed_there(
    stripe_connected, stripe_server, now
):
    customer = CustomerFactory(merchant=stripe_connected.merchant)
    visa = payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)
    pc = visa.provider_customer
    # the customer saves a card on the hosted page, and the first one is removed in Stripe's dashboard
    added = stripe_server.customer_completes_setup(customer=pc.reference, card="pm_card_mastercard")
    del stripe_server.state.payment_methods[visa.reference]

    payment_methods_sync(customer=customer, now=now + timedelta(hours=1))

    visa.refresh_from_db()
    assert (visa.detached_at, visa.is_default) == (now + timedelta(hours=1), False)
    [current] = selectors.payment_method_list(customer=customer)
    assert (current.reference, current.last4, current.is_default) == (added["id"], "4444", True)


def test_a_setup_session_is_a_stripe_checkout_session_in_setup_mode(stripe_connected, stripe_server, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant, currency="EUR")

    session = payment_session_setup_create(
        customer=customer, now=now, success_url="https://app.example/ok", metadata={"origin": "portal"}
    )
    later = payment_session_setup_create(customer=customer, now=now, expires_at=now + timedelta(days=10))

    assert session.id.startswith("ps_") and session.url.startswith("https://checkout.stripe.com/")
    assert (session.mode, session.status, session.expires_at) == ("setup", "pending", now + timedelta(hours=24))
    assert later.expires_at == now + timedelta(hours=24)  # Stripe's longest
    sent = stripe_server.calls("POST", "/v1/checkout/sessions")[0]
    assert (sent.params["mode"], sent.params["currency"], sent.params["success_url"]) == (
        "setup",
        "eur",
        "https://app.example/ok",
    )
    assert sent.params["metadata[meterline_session]"] == session.id
    assert sent.idempotency_key == f"meterline-session-{session.id}"


@pytest.mark.parametrize("ahead", [timedelta(0), timedelta(minutes=10), timedelta(days=31)])
def test_a_setup_session_refuses_an_expiry_stripe_or_the_client_would_not(stripe_connected, stripe_server, now, ahead):
    customer = CustomerFactory(merchant=stripe_connected.merchant)

    with pytest.raises(ValidationError) as refused:
        payment_session_setup_create(customer=customer, now=now, expires_at=now + ahead)

    assert list(refused.value.message_dict) == ["expires_at"]
    assert stripe_server.calls("POST", "/v1/checkout/sessions") == []


def test_another_merchants_integration_is_not_found(stripe_connected):
    from django.http import Http404

    with pytest.raises(Http404):
        selectors.integration_get(merchant=MerchantFactory(), integration_id=stripe_connected.pk)


# -- concurrent requests (PostgreSQL: concurrent transactions) -------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_requests_saving_the_first_cards_at_once_make_one_stripe_customer_and_one_default(stripe_server, settings):
    import threading

    from django.db import connection as db_connection

    merchant = MerchantFactory()
    customer = CustomerFactory(merchant=merchant)
    integration_upsert(merchant=merchant, provider="stripe", now=NOW, secret_key=SECRET_KEY)
    # Both requests reach Stripe while the other's customer creation is still being answered: Stripe answers
    # the second 409 idempotency_key_in_use, and the library retries it (as in production) into the first's.
    stripe_server.latency = 0.3
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    barrier = threading.Barrier(2)
    saved, failures = [], []

    def worker(card: str):
        try:
            barrier.wait(timeout=10)
            saved.append(payment_method_save(customer=customer, payment_method=card, now=NOW))
        except Exception as error:  # surfaced below
            failures.append(error)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker, args=(card,)) for card in ("pm_card_visa", "pm_card_mastercard")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    customer_calls = stripe_server.calls("POST", "/v1/customers")
    assert len(customer_calls) >= 3  # two, and at least one retry of the refused one
    assert len(stripe_server.state.customers) == 1 and ProviderCustomer.objects.count() == 1
    assert PaymentMethod.objects.count() == 2
    assert PaymentMethod.objects.filter(is_default=True).count() == 1


def test_switching_to_live_keys_starts_a_live_customer_whose_first_card_is_its_default(stripe_connected, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant)
    test_card = payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)

    integration_upsert(
        merchant=stripe_connected.merchant, provider="stripe", now=now, secret_key="sk_live_0123456789abcdef"
    )
    live_card = payment_method_save(customer=customer, payment_method="pm_card_mastercard", now=now)

    assert live_card.provider_customer.mode == "live" and live_card.provider_customer != test_card.provider_customer
    assert (test_card.is_default, live_card.is_default) == (True, True)  # each in its own mode
    assert list(selectors.payment_method_list(customer=customer)) == [live_card]
    assert selectors.payment_method_default(customer=customer) == live_card

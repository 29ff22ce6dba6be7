"""Prepaid credit in the admin: the customer page, grant/top-up buttons, low balances, read-only ledger."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone

from catalog.models import Customer
from wallets.admin import CustomerCreditAdminMixin
from wallets.models import (
    BalancePolicy,
    DeliveryStatus,
    EntryKind,
    LedgerEntry,
    Wallet,
    WebhookDelivery,
    WebhookEndpoint,
)
from wallets.services import credit_grant, credit_top_up, usage_debit, wallet_policy_update
from wallets.webhooks import webhook_event_emit

from .factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("finance", "finance@example.com", "pw")
    client.force_login(user)
    return client


def test_the_customer_admin_has_the_prepaid_credit_mixin():
    registered = admin.site.get_model_admin(Customer)
    assert isinstance(registered, CustomerCreditAdminMixin)
    # the composed page's template (invoicing's, which adds "Record payment") extends wallets' buttons
    source = get_template(registered.change_form_template).template.source
    assert '{% extends "admin/wallets/customer_change_form.html" %}' in source


def test_the_customer_page_shows_balances_ledger_and_expiries(staff_client, customer):
    now = timezone.now()
    credit_grant(
        customer=customer,
        currency="USD",
        amount=Decimal("40"),
        idempotency_key="g",
        expires_at=now + timedelta(days=3),
        now=now,
    )
    usage_debit(customer=customer, currency="USD", amount=Decimal("12.5"), now=now)

    page = staff_client.get(reverse("admin:catalog_customer_change", args=[customer.pk]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "<td>USD</td><td>27.5</td><td>27.5</td><td>0</td><td>0</td>" in html
    assert "<td>Usage debit</td><td>USD</td><td>-12.5</td><td>27.5</td>" in html
    assert "27.5 USD (Free grant) expires" in html
    assert reverse("admin:catalog_customer_credit_grant", args=[quote(customer.pk)]) in html


def test_granting_credit_from_the_admin_calls_the_service_once_per_form(staff_client, customer):
    url = reverse("admin:catalog_customer_credit_grant", args=[quote(customer.pk)])
    form = staff_client.get(url)
    key = form.context["form"]["idempotency_key"].initial
    body = {"amount": "15", "currency": "usd", "description": "Goodwill", "idempotency_key": key, "expires_at": ""}

    first = staff_client.post(url, body)
    second = staff_client.post(url, body)  # a double submit

    assert (first.status_code, second.status_code) == (302, 302)
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.amount, entry.description, entry.wallet.currency) == (
        EntryKind.GRANT,
        Decimal("15"),
        "Goodwill",
        "USD",
    )


def test_a_top_up_with_a_past_expiry_shows_the_error(staff_client, customer):
    url = reverse("admin:catalog_customer_credit_top_up", args=[quote(customer.pk)])
    response = staff_client.post(
        url,
        {"amount": "15", "currency": "USD", "idempotency_key": "k", "expires_at": "2020-01-01 00:00:00"},
    )

    assert response.status_code == 200
    assert "The expiry must be in the future." in response.content.decode()
    assert not LedgerEntry.objects.exists()


def test_ledger_entries_are_read_only_in_the_admin(staff_client, customer):
    entry = credit_top_up(
        customer=customer, currency="USD", amount=Decimal("5"), idempotency_key="t", now=timezone.now()
    ).entry
    url = reverse("admin:wallets_ledgerentry_change", args=[entry.pk])

    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"amount": "500"}).status_code == 403
    assert staff_client.get(reverse("admin:wallets_ledgerentry_add")).status_code == 403
    assert (
        staff_client.post(reverse("admin:wallets_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert LedgerEntry.objects.get().amount == Decimal("5")


def test_the_low_balance_list_shows_customers_under_their_threshold(staff_client, customer, merchant):
    now = timezone.now()
    poor = customer
    rich = Customer.objects.create(merchant=merchant, name="Rich Co", email="rich@example.com")
    for who, amount in ((poor, "3"), (rich, "300")):
        credit_top_up(customer=who, currency="USD", amount=Decimal(amount), idempotency_key="t", now=now)
        wallet_policy_update(
            customer=who, currency="USD", policy=BalancePolicy.BLOCK, low_balance_threshold=Decimal("10"), now=now
        )

    page = staff_client.get(reverse("admin:wallets_lowbalancewallet_changelist"))
    filtered = staff_client.get(reverse("admin:wallets_wallet_changelist") + "?below_threshold=yes")

    assert [w.customer.name for w in page.context["cl"].result_list] == ["Acme AI"]
    assert [w.customer.name for w in filtered.context["cl"].result_list] == ["Acme AI"]


def test_changing_the_policy_in_the_admin_never_overwrites_the_balance(staff_client, customer):
    now = timezone.now()
    credit_top_up(customer=customer, currency="USD", amount=Decimal("50"), idempotency_key="t", now=now)
    wallet = Wallet.objects.get()
    url = reverse("admin:wallets_wallet_change", args=[wallet.pk])
    staff_client.get(url)
    usage_debit(customer=customer, currency="USD", amount=Decimal("20"), now=now)  # while the form is open

    response = staff_client.post(
        url,
        {
            "policy": "auto_top_up",
            "low_balance_threshold": "5",
            "auto_top_up_threshold": "10",
            "auto_top_up_amount": "25",
        },
    )

    assert response.status_code == 302
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.policy, wallet.auto_top_up_amount) == (Decimal("30"), "auto_top_up", Decimal("25"))


def test_retry_now_resends_a_failed_delivery(staff_client, merchant):
    WebhookEndpointFactory(merchant=merchant, url="http://127.0.0.1:9/closed")
    [delivery] = webhook_event_emit(merchant_id=merchant.pk, event_type="balance.low", data={}, now=timezone.now())
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, attempts=8)

    response = staff_client.post(
        reverse("admin:wallets_webhookdelivery_changelist"),
        {"action": "retry_now", "_selected_action": [delivery.pk]},
    )

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.status) == (9, DeliveryStatus.FAILED)


@pytest.mark.parametrize(
    "model",
    [
        "wallet",
        "lowbalancewallet",
        "ledgerentry",
        "creditlot",
        "commitment",
        "webhookendpoint",
        "webhookdelivery",
        "webhooksettings",
    ],
)
def test_every_wallets_changelist_opens(staff_client, customer, model):
    credit_top_up(customer=customer, currency="USD", amount=Decimal("5"), idempotency_key="t", now=timezone.now())

    assert staff_client.get(reverse(f"admin:wallets_{model}_changelist")).status_code == 200


def test_a_commitment_is_created_from_the_admin_through_the_service(staff_client, customer):
    response = staff_client.post(
        reverse("admin:wallets_commitment_add"),
        {
            "customer": customer.pk,
            "currency": "USD",
            "amount": "120000",
            "term_start_0": "2026-01-01",
            "term_start_1": "00:00:00",
            "term_end_0": "2027-01-01",
            "term_end_1": "00:00:00",
            "metric_ids": "[]",
            "description": "Annual contract",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    from wallets.models import Commitment

    commitment = Commitment.objects.get()
    assert (commitment.merchant_id, commitment.amount, commitment.description) == (
        customer.merchant_id,
        Decimal("120000"),
        "Annual contract",
    )


def test_an_endpoint_is_added_with_ticked_event_types_and_a_generated_secret(staff_client, merchant):
    response = staff_client.post(
        reverse("admin:wallets_webhookendpoint_add"),
        {
            "merchant": merchant.pk,
            "url": "https://erp.example/hooks",
            "description": "ERP",
            "event_types": ["invoice.issued.v0", "invoice.paid.v0"],
            "enabled": "on",
        },
    )

    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.event_types, endpoint.secret[:6]) == (["invoice.issued.v0", "invoice.paid.v0"], "whsec_")


def test_rotating_a_secret_keeps_the_old_one_signing(staff_client, merchant):
    endpoint = WebhookEndpointFactory(merchant=merchant)

    staff_client.post(
        reverse("admin:wallets_webhookendpoint_changelist"),
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
    )

    old = endpoint.secret
    endpoint.refresh_from_db()
    assert (endpoint.previous_secret, endpoint.secret != old) == (old, True)

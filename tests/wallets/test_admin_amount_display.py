"""Wallet pages show balances and ledger amounts in their currency, and inputs without 12 trailing zeros."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from wallets.models import BalancePolicy, Wallet
from wallets.services import credit_top_up, wallet_policy_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("finance", "finance@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def wallet(customer):
    now = timezone.now()
    credit_top_up(customer=customer, currency="USD", amount=Decimal("1000000"), idempotency_key="t", now=now)
    wallet_policy_update(
        customer=customer, currency="USD", policy=BalancePolicy.BLOCK, low_balance_threshold=Decimal("59.5"), now=now
    )
    return Wallet.objects.get()


def _page(client, url: str) -> str:
    return re.sub(r">\s+<", "><", client.get(url).content.decode())


def test_wallet_list_and_ledger_show_money_in_its_currency(staff_client, wallet):
    wallets = _page(staff_client, reverse("admin:wallets_wallet_changelist"))
    ledger = _page(staff_client, reverse("admin:wallets_ledgerentry_changelist"))

    assert '<td class="field-balance_display">$1,000,000.00</td>' in wallets
    assert '<td class="field-low_balance_threshold_display">$59.50</td>' in wallets
    assert '<td class="field-amount_display">$1,000,000.00</td>' in ledger
    assert "1000000.000000000000" not in wallets + ledger


def test_wallet_page_shows_the_balance_and_a_normalized_threshold_input(staff_client, wallet):
    page = _page(staff_client, reverse("admin:wallets_wallet_change", args=[wallet.pk]))

    assert '<div class="readonly">$1,000,000.00</div>' in page
    assert re.search(r'<input[^>]*name="low_balance_threshold"[^>]*value="59.5"', page)
    assert "59.500000000000" not in page

"""The Stripe adapter against Stripe's real test mode: skipped unless ``STRIPE_TEST_SECRET_KEY`` (an
``sk_test_…`` key) is set; no machine of this project reaches Stripe, so CI never runs it. Run it by hand
after changing the adapter: ``STRIPE_TEST_SECRET_KEY=sk_test_… pytest tests/payments/test_stripe_test_mode.py``.
The same scenarios run against the local server in ``test_stripe_provider.py``."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from payments.providers import ChargeStatus, PaymentProviderError
from payments.providers.stripe_provider import StripeProvider

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

pytestmark = pytest.mark.skipif(not KEY.startswith("sk_test_"), reason="set STRIPE_TEST_SECRET_KEY=sk_test_…")


@pytest.fixture
def provider(settings) -> StripeProvider:
    settings.STRIPE_API_BASE = "https://api.stripe.com"
    return StripeProvider(secret_key=KEY)


def test_the_adapter_against_stripe_test_mode(provider):
    run = uuid.uuid4().hex  # idempotency keys unique per run (Stripe keeps them 24 hours)
    customer = provider.customer_create(
        customer_id=f"cus_{run}", name="Meterline test", email="test@example.com", idempotency_key=f"{run}-c"
    )
    card = provider.payment_method_setup(
        provider_customer=customer, payment_method="pm_card_visa", idempotency_key=f"{run}-s"
    )
    failing = provider.payment_method_setup(
        provider_customer=customer, payment_method="pm_card_chargeCustomerFail", idempotency_key=f"{run}-f"
    )

    paid = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("12.34"),
        currency="USD",
        idempotency_key=f"{run}-inv",
    )
    replay = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("12.34"),
        currency="USD",
        idempotency_key=f"{run}-inv",
    )
    declined = provider.invoice_charge(
        provider_customer=customer,
        payment_method=failing.reference,
        amount=Decimal("5.00"),
        currency="USD",
        idempotency_key=f"{run}-dec",
    )
    refund = provider.refund(
        charge_reference=paid.reference, amount=Decimal("2.00"), currency="USD", idempotency_key=f"{run}-r"
    )
    session = provider.session_create(
        mode="setup",
        provider_customer=customer,
        currency="USD",
        success_url="https://example.com/ok",
        cancel_url="https://example.com/no",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        idempotency_key=f"{run}-ps",
    )
    with pytest.raises(PaymentProviderError) as refused:
        provider.payment_method_setup(
            provider_customer=customer, payment_method="pm_card_chargeDeclined", idempotency_key=f"{run}-d"
        )

    assert (card.brand, card.last4) == ("visa", "4242")
    assert (paid.status, paid.amount, replay.reference) == (ChargeStatus.SUCCEEDED, Decimal("12.34"), paid.reference)
    assert (declined.status, declined.failure_code) == (ChargeStatus.FAILED, "generic_decline")
    assert (refund.status, refund.amount) == ("succeeded", Decimal("2.00"))
    assert session.url.startswith("https://checkout.stripe.com/")
    assert refused.value.code == "card_declined"
    assert {m.reference for m in provider.payment_methods_list(provider_customer=customer)} == {
        card.reference,
        failing.reference,
    }

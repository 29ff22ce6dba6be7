"""Rows of the payments app for tests that need one of each (the admin's cross-cutting tests): the
integration through its service; the provider's customer, a saved card, a session and a received event as the
services record them after Stripe answered, and a failed refund to a card when the customer has a credit note and
a payment (these tests do not start the local Stripe server)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from catalog.models import Customer
from invoicing.models import CreditNote, Payment
from payments.models import (
    PaymentMethod,
    PaymentRetrySettings,
    PaymentSession,
    ProviderCustomer,
    ProviderEvent,
    ProviderRefund,
)
from payments.services import integration_upsert


def payments_rows(*, customer: Customer, name: str, now: datetime) -> PaymentMethod:
    integration = integration_upsert(
        merchant=customer.merchant, provider="stripe", now=now, secret_key=f"sk_test_{name.lower()}0123456789"
    )
    provider_customer = ProviderCustomer.objects.create(
        integration=integration, customer=customer, mode="test", reference=f"cus_test_{name}", created_at=now
    )
    PaymentRetrySettings.objects.create(merchant=customer.merchant, retry_days=[2, 4])
    PaymentSession.objects.create(
        merchant=customer.merchant,
        customer=customer,
        provider_customer=provider_customer,
        mode="setup",
        reference=f"cs_test_{name}",
        url=f"https://checkout.stripe.com/c/pay/cs_test_{name}",
        expires_at=now + timedelta(hours=24),
        created_at=now,
    )
    note = CreditNote.objects.filter(customer=customer).first()
    payment = Payment.objects.filter(customer=customer).first()
    if note is not None and payment is not None:  # a refund to the card that Stripe refused (finance retries it)
        ProviderRefund.objects.create(
            credit_note=note,
            payment=payment,
            number=1,
            amount=Decimal("1.00"),
            currency=payment.currency,
            provider="stripe",
            charge_reference=f"pi_test_{name}",
            idempotency_key=f"meterline-refund-{note.pk}",
            status="failed",
            failure_code="charge_already_refunded",
            failure_message="The amount to refund exceeds what is left of the charge.",
            created_at=now,
            updated_at=now,
        )
    ProviderEvent.objects.create(
        integration=integration,
        provider="stripe",
        event_id=f"evt_test_{name}",
        type="customer.created",
        created_at=now,
        received_at=now,
        processed_at=now,
        outcome="ignored: no handler for customer.created",
        payload={"id": f"cus_test_{name}", "object": "customer"},
    )
    return PaymentMethod.objects.create(
        customer=customer,
        provider_customer=provider_customer,
        reference=f"pm_test_{name}",
        type="card",
        brand="visa",
        last4="4242",
        exp_month=8,
        exp_year=2030,
        is_default=True,
        created_at=now,
    )

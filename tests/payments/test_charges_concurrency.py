"""Exactly-once automatic charge under a race (PostgreSQL: row locks between concurrent transactions; skipped on
SQLite): two workers charge the same invoice at the same moment, against a Stripe server slow enough that the
first one's call is still under way when the second arrives. One PaymentIntent, one attempt, one Payment."""

from __future__ import annotations

import pytest

from invoicing.models import InvoiceStatus, Payment
from payments.charges import invoice_auto_charge, invoices_auto_charge_due
from payments.models import PaymentAttempt
from payments.services import payment_method_save
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued
from tests.invoicing.test_receivables_concurrency import at_once

from .conftest import SECRET_KEY

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROUNDS = 3


def fresh(now):
    from payments.services import integration_upsert

    merchant = MerchantFactory()
    integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
    subscription = account(merchant)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    payment_method_save(customer=subscription.customer, payment_method="pm_card_visa", now=now)
    return issued(subscription, "250.00", now=now)


def test_two_workers_charging_the_same_invoice_charge_it_once(stripe_server, now):
    stripe_server.latency = 0.3
    for _ in range(ROUNDS):
        invoice = fresh(now)
        before = len(stripe_server.calls("POST", "/v1/payment_intents"))

        results = at_once(
            lambda invoice_id=invoice.pk: invoice_auto_charge(invoice_id=invoice_id, now=now),
            lambda: invoices_auto_charge_due(now=now),
        )

        assert not any(isinstance(result, Exception) for result in results), results
        assert len(stripe_server.calls("POST", "/v1/payment_intents")) - before == 1
        [attempt] = PaymentAttempt.objects.filter(invoice=invoice)
        assert attempt.status == "succeeded"
        [payment] = Payment.objects.filter(customer=invoice.customer)
        assert (attempt.payment_id, payment.reference, payment.method) == (payment.pk, attempt.reference, "card")
        invoice.refresh_from_db()
        assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)

"""Exactly-once retries under a race (PostgreSQL: row locks between concurrent transactions; skipped on SQLite):
the beat sweep, a second worker's retry and a retry requested through the service claim the same due retry at
the same moment, against a Stripe server slow enough that the first call is still under way when the others
arrive. One PaymentIntent for attempt 2, one attempt 2, one payment."""

from __future__ import annotations

from datetime import timedelta

import pytest

from invoicing.models import InvoiceStatus, Payment
from payments.charges import invoice_auto_charge
from payments.models import PaymentAttempt
from payments.retries import RetryRefused, invoice_payment_retry, invoice_payment_retry_now, invoices_payment_retry_due
from payments.services import payment_method_save, payment_method_set_default
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued
from tests.invoicing.test_receivables_concurrency import at_once

from .conftest import SECRET_KEY

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROUNDS = 3
DAY = timedelta(days=1)


def declined_then_replaced(now):
    """An invoice declined at ``now`` whose customer then replaced the card (the retry will succeed)."""
    from payments.services import integration_upsert

    merchant = MerchantFactory()
    integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
    subscription = account(merchant)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    payment_method_save(customer=subscription.customer, payment_method="pm_card_chargeCustomerFail", now=now)
    invoice = issued(subscription, "250.00", now=now)
    assert invoice_auto_charge(invoice_id=invoice.pk, now=now).status == "failed"
    card = payment_method_save(customer=subscription.customer, payment_method="pm_card_visa", now=now + DAY)
    payment_method_set_default(payment_method=card)
    return invoice


def test_concurrent_claims_of_one_due_retry_charge_it_once(stripe_server, now):
    stripe_server.latency = 0.3
    due = now + 3 * DAY
    for _ in range(ROUNDS):
        invoice = declined_then_replaced(now)
        key = f"meterline-charge-{invoice.pk}-2"

        results = at_once(
            lambda: invoices_payment_retry_due(now=due),
            lambda invoice_id=invoice.pk: invoice_payment_retry(invoice_id=invoice_id, now=due),
            lambda invoice=invoice: invoice_payment_retry_now(invoice=invoice, now=due),
        )

        unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, RetryRefused)]
        assert not unexpected, results
        assert [call.idempotency_key for call in stripe_server.calls("POST", "/v1/payment_intents")].count(key) == 1
        [second] = PaymentAttempt.objects.filter(invoice=invoice, number=2)
        assert second.status == "succeeded"
        assert PaymentAttempt.objects.filter(invoice=invoice).count() == 2
        [payment] = Payment.objects.filter(customer=invoice.customer)
        assert (second.payment_id, payment.reference) == (payment.pk, second.reference)
        invoice.refresh_from_db()
        assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)

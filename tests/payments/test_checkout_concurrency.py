"""Exactly-once settlement of a paid Checkout Session under a race (PostgreSQL: row locks between concurrent
transactions; skipped on SQLite): the webhook function and the customer's return page record the same paid
session at the same moment. One Payment, linked to the session; the invoice PAID once."""

from __future__ import annotations

import pytest

from invoicing.models import InvoiceStatus, Payment
from payments.checkout import checkout_session_completed, checkout_session_refresh, invoice_checkout_create
from payments.models import PaymentSession
from payments.services import integration_upsert
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued
from tests.invoicing.test_receivables_concurrency import at_once

from .conftest import SECRET_KEY

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROUNDS = 3


def test_the_webhook_and_the_return_page_at_once_record_one_payment(stripe_server, now):
    for _ in range(ROUNDS):
        merchant = MerchantFactory()
        integration = integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
        invoice = issued(account(merchant), "250.00", now=now)
        session = invoice_checkout_create(invoice=invoice, now=now)
        completed = stripe_server.customer_pays_session(session.reference)

        def webhook(integration=integration, completed=completed):
            return checkout_session_completed(integration=integration, session=completed, now=now)

        def return_page(session=session):
            return checkout_session_refresh(session=session, now=now)

        results = at_once(webhook, return_page, webhook)

        assert not any(isinstance(result, Exception) for result in results), results
        [payment] = Payment.objects.filter(customer=invoice.customer)
        row = PaymentSession.objects.get(pk=session.pk)
        assert (row.status, row.payment_id, payment.reference) == ("completed", payment.pk, completed["payment_intent"])
        invoice.refresh_from_db()
        assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)

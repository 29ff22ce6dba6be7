"""The webhook against the charge call, and against itself (PostgreSQL: row locks between concurrent
transactions; skipped on SQLite). Stripe's event about a PaymentIntent may arrive while the charge call that
created it is still waiting for its answer, or at the very moment the answer is recorded, or twice at once:
one attempt, one Payment, the attempt succeeded, whatever the order."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from invoicing.models import InvoiceStatus, Payment
from payments.charges import invoice_auto_charge, invoices_auto_charge_due
from payments.models import PaymentAttempt, ProviderEvent
from payments.services import integration_upsert, payment_method_save
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued
from tests.invoicing.test_receivables_concurrency import at_once

from .conftest import SECRET_KEY
from .stripe_events import WEBHOOK_SECRET, body, deliver, event

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

ROUNDS = 3
INTENTS = "/v1/payment_intents"


def fresh(now):
    merchant = MerchantFactory()
    integration = integration_upsert(
        merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET
    )
    subscription = account(merchant)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    payment_method_save(customer=subscription.customer, payment_method="pm_card_visa", now=now)
    return integration, issued(subscription, "250.00", now=now)


def succeeded_event_of(answer: dict) -> dict:
    return event("payment_intent.succeeded", answer)


def delivered_from_the_server(integration, answer: dict):
    """A delivery made from Stripe's side (the local server's thread), with its own database connection."""
    try:
        return deliver(integration, succeeded_event_of(answer))
    finally:
        connection.close()


def test_the_event_arriving_before_the_charge_call_returns_is_recorded_once(stripe_server, now):
    for _ in range(ROUNDS):
        integration, invoice = fresh(now)
        answers = []

        def stripe_sends_the_event_first(method, path, status, answer, integration=integration, answers=answers):
            if (method, path, status) == ("POST", INTENTS, 200):
                answers.append(delivered_from_the_server(integration, answer))

        stripe_server.before_reply = stripe_sends_the_event_first
        attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
        stripe_server.before_reply = None

        [webhook] = answers
        [payment] = Payment.objects.filter(customer=invoice.customer)
        assert webhook.status_code == 200
        assert webhook.json()["outcome"] == f"attempt 1 succeeded, payment {payment.pk} recorded"
        assert (attempt.status, attempt.payment_id, attempt.reference) == ("succeeded", payment.pk, payment.reference)
        invoice.refresh_from_db()
        assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)


def test_the_event_and_the_calls_answer_recorded_at_the_same_moment_make_one_payment(stripe_server, now):
    for _ in range(ROUNDS):
        integration, invoice = fresh(now)
        deliveries: list = []
        threads: list[threading.Thread] = []

        def deliver_meanwhile(integration, answer, deliveries=deliveries):
            deliveries.append(delivered_from_the_server(integration, answer))

        def stripe_sends_the_event_meanwhile(method, path, status, answer, integration=integration, threads=threads):
            if (method, path, status) == ("POST", INTENTS, 200):
                # not waited for: the delivery races the caller's record of this very answer
                thread = threading.Thread(target=deliver_meanwhile, args=(integration, answer))
                thread.start()
                threads.append(thread)

        stripe_server.before_reply = stripe_sends_the_event_meanwhile
        attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
        stripe_server.before_reply = None
        for thread in threads:
            thread.join(timeout=30)

        [webhook] = deliveries
        assert webhook.status_code == 200, webhook.content
        [payment] = Payment.objects.filter(customer=invoice.customer)
        attempt.refresh_from_db()
        assert (attempt.status, attempt.payment_id) == ("succeeded", payment.pk)
        assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


def test_two_workers_and_the_event_on_one_invoice_make_one_payment_intent_and_one_payment(stripe_server, now):
    stripe_server.latency = 0.3
    for _ in range(ROUNDS):
        integration, invoice = fresh(now)
        before = len(stripe_server.calls("POST", INTENTS))
        deliveries = []

        def stripe_sends_the_event_first(method, path, status, answer, integration=integration, deliveries=deliveries):
            if (method, path, status) == ("POST", INTENTS, 200) and not deliveries:
                deliveries.append(delivered_from_the_server(integration, answer))

        stripe_server.before_reply = stripe_sends_the_event_first
        results = at_once(
            lambda invoice_id=invoice.pk: invoice_auto_charge(invoice_id=invoice_id, now=now),
            lambda: invoices_auto_charge_due(now=now),
        )
        stripe_server.before_reply = None

        assert not any(isinstance(result, Exception) for result in results), results
        assert len(stripe_server.calls("POST", INTENTS)) - before == 1
        assert [d.status_code for d in deliveries] == [200]
        [attempt] = PaymentAttempt.objects.filter(invoice=invoice)
        [payment] = Payment.objects.filter(customer=invoice.customer)
        assert (attempt.status, attempt.payment_id) == ("succeeded", payment.pk)


def test_one_event_delivered_twice_at_once_is_handled_once(stripe_server, now, monkeypatch):
    from payments import charges

    for _ in range(ROUNDS):
        integration, invoice = fresh(now)
        # The charge reached Stripe, its worker died before recording: only the event will record it.
        monkeypatch.setattr(charges, "_record", lambda **kwargs: (_ for _ in ()).throw(RuntimeError("worker lost")))
        with pytest.raises(RuntimeError):
            invoice_auto_charge(invoice_id=invoice.pk, now=now)
        monkeypatch.undo()
        [intent] = [
            i for i in stripe_server.state.payment_intents.values() if i["metadata"]["meterline_invoice"] == invoice.pk
        ]
        payload = body(succeeded_event_of(intent))

        results = at_once(*[lambda integration=integration, payload=payload: deliver(integration, payload)] * 2)

        assert sorted(r.status_code for r in results) == [200, 200], list(
            ProviderEvent.objects.values_list("error", flat=True)
        )
        assert ProviderEvent.objects.filter(integration=integration).count() == 1
        [payment] = Payment.objects.filter(customer=invoice.customer)
        attempt = PaymentAttempt.objects.get(invoice=invoice)
        assert (attempt.status, attempt.payment_id) == ("succeeded", payment.pk)

"""Automatic charge of issued invoices (payments/charges.py) against the local Stripe server, through the real
``stripe`` library: what is sent, how each outcome is recorded, and that a charge happens once whatever runs
twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from catalog.models import Subscription
from invoicing.api.serializers import InvoiceStatusField
from invoicing.models import CustomerCreditEntry, Invoice, InvoiceStatus, Payment
from invoicing.receivables import invoice_pay_in_full
from payments import charges
from payments.charges import (
    CLAIM_LEASE,
    auto_charge_due_invoices,
    invoice_auto_charge,
    invoices_auto_charge_due,
)
from payments.models import PaymentAttempt
from payments.providers import IDEMPOTENCY_KEY_LIFETIME, PaymentProviderError
from payments.services import payment_method_save
from tests.factories import TestClockFactory
from tests.invoicing.receivables import account, issued

pytestmark = pytest.mark.django_db

INTENTS = "/v1/payment_intents"


def auto_charged(merchant, now, *, card: str | None = "pm_card_visa", amount: str = "123.45", auto_charge=True):
    """An issued invoice of ``amount`` USD of an autoCharge subscription whose customer saved ``card``."""
    subscription = account(merchant)
    subscription.auto_charge = auto_charge
    subscription.save(update_fields=["auto_charge"])
    if card:
        payment_method_save(customer=subscription.customer, payment_method=card, now=now)
    return issued(subscription, amount, now=now)


def test_a_successful_charge_pays_the_invoice_with_one_card_payment(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)

    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    [sent] = stripe_server.calls("POST", INTENTS)
    customer = invoice.customer.provider_customers.get().reference
    assert sent.params["amount"] == "12345" and sent.params["currency"] == "usd"
    assert (sent.params["customer"], sent.params["off_session"], sent.params["confirm"]) == (customer, "true", "true")
    assert sent.params["payment_method"] == invoice.customer.payment_methods.get().reference
    assert sent.idempotency_key == f"meterline-charge-{invoice.pk}-1"
    assert sent.params["metadata[meterline_invoice]"] == invoice.pk
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due, invoice.payment_failed_at) == (InvoiceStatus.PAID, 0, None)
    [payment] = Payment.objects.filter(customer=invoice.customer)
    assert (payment.method, payment.amount, payment.currency) == ("card", Decimal("123.45"), "USD")
    assert payment.reference == attempt.reference and attempt.reference.startswith("pi_")
    assert [(a.invoice_id, a.amount) for a in payment.allocations.all()] == [(invoice.pk, Decimal("123.45"))]
    attempt.refresh_from_db()
    assert (attempt.status, attempt.number, attempt.payment_id, attempt.amount) == (
        "succeeded",
        1,
        payment.pk,
        Decimal("123.45"),
    )


def test_a_declined_card_fails_the_attempt_with_stripes_reason_and_the_invoice_shows_payment_failed(
    stripe_connected, stripe_server, merchant, now
):
    invoice = auto_charged(merchant, now, card="pm_card_chargeCustomerFail")

    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    assert len(stripe_server.calls("POST", INTENTS)) == 1
    attempt.refresh_from_db()
    assert (attempt.status, attempt.failure_code, attempt.payment_id) == ("failed", "generic_decline", None)
    assert attempt.failure_message == "Your card was declined."
    assert attempt.reference.startswith("pi_")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due, invoice.payment_failed_at) == (
        InvoiceStatus.ISSUED,
        Decimal("123.45"),
        now,
    )
    assert InvoiceStatusField().to_representation(invoice) == "PAYMENT_FAILED"
    assert not Payment.objects.filter(customer=invoice.customer).exists()


def test_a_card_needing_authentication_is_recorded_as_requires_action(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now, card="pm_card_visa")
    # The card saved, then Stripe asks for 3-D Secure on the off-session charge.
    method = invoice.customer.payment_methods.get()
    stripe_server.state.behaviours[method.reference] = "authenticate"

    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    attempt.refresh_from_db()
    assert (attempt.status, attempt.failure_code) == ("requires_action", "authentication_required")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.payment_failed_at) == (InvoiceStatus.ISSUED, None)


def test_a_customer_without_a_payment_method_fails_without_calling_stripe(
    stripe_connected, stripe_server, merchant, now
):
    invoice = auto_charged(merchant, now, card=None)

    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    assert stripe_server.calls("POST", INTENTS) == []
    assert (attempt.status, attempt.failure_code, attempt.reference) == ("failed", "no_payment_method", None)
    invoice.refresh_from_db()
    assert invoice.payment_failed_at == now


def test_running_the_charge_twice_charges_once(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)

    first = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    second = invoice_auto_charge(invoice_id=invoice.pk, now=now + timedelta(minutes=1))

    assert second is None
    assert len(stripe_server.calls("POST", INTENTS)) == 1
    assert PaymentAttempt.objects.get(invoice=invoice).pk == first.pk
    assert Payment.objects.filter(customer=invoice.customer).count() == 1


def test_two_beat_runs_charge_once(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)

    assert [a.invoice_id for a in invoices_auto_charge_due(now=now)] == [invoice.pk]
    assert invoices_auto_charge_due(now=now + timedelta(minutes=1)) == []

    assert len(stripe_server.calls("POST", INTENTS)) == 1
    assert Payment.objects.filter(customer=invoice.customer).count() == 1


def test_a_worker_dying_between_the_charge_and_its_record_is_resumed_with_the_same_key(
    stripe_connected, stripe_server, merchant, now, monkeypatch
):
    invoice = auto_charged(merchant, now)
    real_record = charges._record

    def crash(**kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(charges, "_record", crash)
    with pytest.raises(RuntimeError):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)
    monkeypatch.setattr(charges, "_record", real_record)

    # Within the lease the claim is its worker's: nothing is charged again.
    assert auto_charge_due_invoices(now=now + CLAIM_LEASE - timedelta(seconds=1)).count() == 0
    later = now + CLAIM_LEASE
    [attempt] = invoices_auto_charge_due(now=later)

    first, again = stripe_server.calls("POST", INTENTS)
    assert first.idempotency_key == again.idempotency_key == f"meterline-charge-{invoice.pk}-1"
    assert len(stripe_server.state.payment_intents) == 1
    assert attempt.status == "succeeded" and attempt.reference in stripe_server.state.payment_intents
    assert Payment.objects.filter(customer=invoice.customer).count() == 1
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


@pytest.mark.parametrize("card", ["pm_card_visa", "pm_card_chargeCustomerFail"])
def test_an_attempt_resumed_after_stripe_forgot_its_key_records_the_first_charge_and_sends_none(
    stripe_connected, stripe_server, merchant, now, monkeypatch, card
):
    invoice = auto_charged(merchant, now, card=card)
    real_record = charges._record

    def crash(**kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(charges, "_record", crash)
    with pytest.raises(RuntimeError):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)
    monkeypatch.setattr(charges, "_record", real_record)
    [intent] = stripe_server.state.payment_intents.values()
    stripe_server.forget_idempotency_keys()  # a day has passed at Stripe too

    [attempt] = invoices_auto_charge_due(now=now + IDEMPOTENCY_KEY_LIFETIME)

    # The charge is found by the attempt's metadata, and not sent again under a key Stripe no longer knows.
    assert len(stripe_server.calls("POST", INTENTS)) == 1 and len(stripe_server.calls("GET", INTENTS)) == 1
    assert attempt.reference == intent["id"] and len(stripe_server.state.payment_intents) == 1
    invoice.refresh_from_db()
    if card == "pm_card_visa":
        assert (attempt.status, invoice.status) == ("succeeded", InvoiceStatus.PAID)
        assert Payment.objects.get(customer=invoice.customer).reference == intent["id"]
    else:
        assert (attempt.status, attempt.failure_code) == ("failed", "generic_decline")
        assert not Payment.objects.exists() and invoice.payment_failed_at is not None


def test_an_attempt_resumed_after_a_day_whose_first_call_never_reached_stripe_is_charged_once(
    stripe_connected, stripe_server, merchant, now, monkeypatch
):
    invoice = auto_charged(merchant, now)
    real_charge = charges.integration_provider

    def unreachable(integration):
        provider = real_charge(integration)

        def refuse(**kwargs):
            raise PaymentProviderError("Stripe unreachable", retryable=True)

        provider.invoice_charge = refuse
        return provider

    monkeypatch.setattr(charges, "integration_provider", unreachable)
    with pytest.raises(PaymentProviderError):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)
    monkeypatch.setattr(charges, "integration_provider", real_charge)

    [attempt] = invoices_auto_charge_due(now=now + timedelta(days=2))

    [sent] = stripe_server.calls("POST", INTENTS)
    assert sent.idempotency_key == f"meterline-charge-{invoice.pk}-1" and attempt.status == "succeeded"
    assert Payment.objects.filter(customer=invoice.customer).count() == 1


def test_an_invoice_paid_while_the_charge_was_under_way_keeps_the_money_as_customer_credit(
    stripe_connected, stripe_server, merchant, now, monkeypatch
):
    invoice = auto_charged(merchant, now)
    real_record = charges._record

    def paid_meanwhile(**kwargs):
        invoice_pay_in_full(invoice=invoice, at=now)
        return real_record(**kwargs)

    monkeypatch.setattr(charges, "_record", paid_meanwhile)

    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    assert attempt.status == "succeeded"
    card = Payment.objects.get(customer=invoice.customer, method="card")
    assert card.allocations.count() == 0 and card.pk == attempt.payment_id
    [credit] = CustomerCreditEntry.objects.filter(customer=invoice.customer)
    assert (credit.kind, credit.amount) == ("overpayment", Decimal("123.45"))


def test_what_the_beat_picks(stripe_connected, stripe_server, merchant, now):
    due = auto_charged(merchant, now)
    auto_charged(merchant, now, auto_charge=False)
    before_connecting = auto_charged(merchant, now)
    before_connecting.issued_at = stripe_connected.connected_at - timedelta(days=1)
    before_connecting.save(update_fields=["issued_at"])
    paid = auto_charged(merchant, now)
    invoice_pay_in_full(invoice=paid, at=now)

    assert list(auto_charge_due_invoices(now=now)) == [due]


def test_a_test_clocks_invoices_count_from_when_they_were_written_not_from_the_clocks_time(
    stripe_connected, stripe_server, merchant, now
):
    clock = TestClockFactory(merchant=merchant, current_time=stripe_connected.connected_at - timedelta(days=30))
    written_now = auto_charged(merchant, now)
    Subscription.objects.filter(pk=written_now.subscription_id).update(test_clock=clock)
    Invoice.objects.filter(pk=written_now.pk).update(issued_at=clock.current_time)  # the clock's time
    written_before = auto_charged(merchant, now)
    Subscription.objects.filter(pk=written_before.subscription_id).update(test_clock=clock)
    Invoice.objects.filter(pk=written_before.pk).update(
        issued_at=clock.current_time, created_at=stripe_connected.connected_at - timedelta(minutes=1)
    )

    assert list(auto_charge_due_invoices(now=now)) == [written_now]


def test_nothing_is_charged_without_a_connected_provider(merchant, now, stripe_server):
    subscription = account(merchant)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    invoice = issued(subscription, "10.00", now=now)

    assert invoice_auto_charge(invoice_id=invoice.pk, now=now) is None
    assert invoices_auto_charge_due(now=now) == []
    assert stripe_server.requests == [] and not PaymentAttempt.objects.exists()


def test_one_row_per_attempt_number_and_per_provider_reference(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    copy = dict(invoice=invoice, amount=1, currency="USD", provider="stripe", created_at=now, updated_at=now)

    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.create(number=1, **copy)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.create(number=2, reference=attempt.reference, **copy)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.create(number=3, payment=attempt.payment, status="succeeded", **copy)


def test_the_beat_schedules_the_auto_charge(settings):
    from billing_site.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["payments-invoices-auto-charge-due"]
    assert entry["task"] == "payments.invoices_auto_charge_due" and entry["task"] in app.tasks


def test_the_invoice_page_shows_each_attempt_with_its_stripe_reference_and_failure_reason(
    stripe_connected, stripe_server, merchant, now, superuser_client
):
    from django.urls import reverse

    failed = auto_charged(merchant, now, card="pm_card_chargeCustomerFail")
    attempt = invoice_auto_charge(invoice_id=failed.pk, now=now)
    untouched = auto_charged(merchant, now, auto_charge=False)

    page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[failed.pk])).content.decode()
    empty = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[untouched.pk])).content.decode()

    assert "Payment attempts" in page and attempt.reference in page
    assert "generic_decline Your card was declined." in page and "Failed" in page
    assert "$123.45" in page and "visa •••• 0341" in page
    assert "Payment attempts" in empty and "None (an invoice of an autoCharge subscription" in empty


def test_the_api_shows_a_declined_invoice_as_payment_failed_and_filters_by_it(
    stripe_connected, stripe_server, merchant, now, api_client
):
    declined = auto_charged(merchant, now, card="pm_card_chargeCustomerFail")
    invoice_auto_charge(invoice_id=declined.pk, now=now)
    still_issued = auto_charged(merchant, now, auto_charge=False)

    one = api_client.get(f"/v2/invoices/{declined.pk}").json()
    failed = api_client.get("/v2/invoices", {"status": "PAYMENT_FAILED"}).json()
    issued_ = api_client.get("/v2/invoices", {"status": "ISSUED"}).json()

    assert one["status"] == "PAYMENT_FAILED"
    assert [row["id"] for row in failed["data"]] == [declined.pk]
    assert [row["id"] for row in issued_["data"]] == [still_issued.pk]


def test_a_charge_abandoned_after_stripe_took_the_money_is_recorded_even_if_the_invoice_was_paid_since(
    stripe_connected, stripe_server, merchant, now, monkeypatch
):
    invoice = auto_charged(merchant, now)
    real_record = charges._record

    def crash(**kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(charges, "_record", crash)
    with pytest.raises(RuntimeError):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)
    monkeypatch.setattr(charges, "_record", real_record)
    invoice_pay_in_full(invoice=invoice, at=now)  # finance recorded a transfer meanwhile

    [attempt] = invoices_auto_charge_due(now=now + CLAIM_LEASE)

    assert len(stripe_server.state.payment_intents) == 1 and attempt.status == "succeeded"
    card = Payment.objects.get(customer=invoice.customer, method="card")
    assert card.pk == attempt.payment_id and card.allocations.count() == 0
    [credit] = CustomerCreditEntry.objects.filter(customer=invoice.customer)
    assert credit.amount == Decimal("123.45")


def test_a_method_stripe_no_longer_knows_fails_the_attempt_with_stripes_code(
    stripe_connected, stripe_server, merchant, now
):
    invoice = auto_charged(merchant, now)
    invoice.customer.payment_methods.update(reference="pm_removed_at_stripe")

    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    assert (attempt.status, attempt.failure_code, attempt.reference) == ("failed", "resource_missing", None)
    assert "pm_removed_at_stripe" in attempt.failure_message
    invoice.refresh_from_db()
    assert invoice.payment_failed_at == now and invoice.status == InvoiceStatus.ISSUED
    assert invoices_auto_charge_due(now=now + CLAIM_LEASE) == []


def test_stripe_unreachable_leaves_the_attempt_pending_for_a_later_run(
    stripe_connected, stripe_server, merchant, now, settings
):
    invoice = auto_charged(merchant, now)
    base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens

    assert invoices_auto_charge_due(now=now) == []
    [attempt] = PaymentAttempt.objects.filter(invoice=invoice)
    assert attempt.status == "pending"

    settings.STRIPE_API_BASE = base
    [resumed] = invoices_auto_charge_due(now=now + CLAIM_LEASE)
    assert resumed.pk == attempt.pk and resumed.status == "succeeded"
    assert len(stripe_server.calls("POST", INTENTS)) == 1

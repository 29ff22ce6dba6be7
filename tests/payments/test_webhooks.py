"""The Stripe webhook (POST /webhooks/stripe/{integration}, payments/webhooks/): deliveries signed as Stripe
signs them and verified by the real ``stripe`` library; each event handled once; the charge outcomes meet the
charge call's own record on one attempt and one payment, in any order."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from invoicing.models import InvoiceStatus, Payment
from payments import charges
from payments.charges import CLAIM_LEASE, invoice_auto_charge, invoices_auto_charge_due
from payments.models import PaymentAttempt, ProviderEvent
from payments.services import integration_disconnect
from payments.webhooks.views import MAX_BODY_BYTES
from tests.factories import MerchantFactory

from .stripe_events import body, deliver, event, intent_of, sign
from .test_charges import auto_charged

pytestmark = pytest.mark.django_db


def worker_dies_after_the_call(invoice, now, monkeypatch) -> PaymentAttempt:
    """The charge reached Stripe, its answer was never recorded: the attempt is pending, without reference."""

    def crash(**kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(charges, "_record", crash)
    with pytest.raises(RuntimeError):
        invoice_auto_charge(invoice_id=invoice.pk, now=now)
    monkeypatch.undo()
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert (attempt.status, attempt.reference) == ("pending", None)
    return attempt


# -- the endpoint -------------------------------------------------------------------------------------------


def test_a_delivery_signed_with_the_integrations_secret_is_verified_and_stored(stripe_connected, now):
    payload = event("customer.created", {"id": "cus_test_1", "object": "customer"}, ident="evt_test_first")

    response = deliver(stripe_connected, payload, client=Client(enforce_csrf_checks=True))  # no CSRF token

    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "id": "evt_test_first",
        "replay": False,
        "outcome": "ignored: no handler for customer.created",
    }
    row = ProviderEvent.objects.get()
    assert (row.integration, row.provider, row.event_id, row.type) == (
        stripe_connected,
        "stripe",
        "evt_test_first",
        "customer.created",
    )
    assert row.processed_at is not None and row.error == "" and row.payload["id"] == "cus_test_1"


@pytest.mark.parametrize(
    "how",
    ["tampered", "wrong secret", "too old", "missing", "garbage"],
)
def test_a_delivery_that_does_not_verify_is_refused_with_400_and_never_handled(stripe_connected, how):
    raw = body(event("payment_intent.succeeded", {"id": "pi_test_1", "object": "payment_intent", "amount": 1000}))
    signature = {
        "tampered": sign(raw),
        "wrong secret": sign(raw, secret="whsec_someone_else"),
        "too old": sign(raw, at=1_700_000_000),
        "missing": "",
        "garbage": "not a signature",
    }[how]
    sent = raw.replace(b"1000", b"9000") if how == "tampered" else raw

    response = Client().post(
        f"/webhooks/stripe/{stripe_connected.pk}",
        data=sent,
        content_type="application/json",
        headers={"Stripe-Signature": signature} if signature else {},
    )

    assert response.status_code == 400
    assert response.json()["error"] == ("signature_missing" if how == "missing" else "signature_invalid")
    assert response.json()["message"]
    assert not ProviderEvent.objects.exists()


def test_an_unknown_or_disconnected_integration_is_404(stripe_connected, now):
    payload = event("customer.created", {"id": "cus_test_1"})
    assert deliver(stripe_connected, payload).status_code == 200

    unknown = Client().post("/webhooks/stripe/mi_nope", data=body(payload), content_type="application/json")
    integration_disconnect(integration=stripe_connected, now=now)
    disconnected = deliver(stripe_connected, event("customer.created", {"id": "cus_test_2"}))

    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert disconnected.status_code == 404
    assert ProviderEvent.objects.count() == 1


def test_a_body_over_the_bound_is_413_and_the_endpoint_answers_only_post(stripe_connected):
    big = body(event("customer.created", {"id": "cus_test_1", "note": "x" * MAX_BODY_BYTES}))

    assert deliver(stripe_connected, big).status_code == 413
    assert Client().get(f"/webhooks/stripe/{stripe_connected.pk}").status_code == 405
    assert reverse("payments-stripe-webhook", args=[stripe_connected.pk]) == f"/webhooks/stripe/{stripe_connected.pk}"
    assert not ProviderEvent.objects.exists()


def test_a_replayed_delivery_is_acknowledged_and_changes_nothing(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    refund = event("charge.refunded", {"object": "charge", "payment_intent": attempt.reference, "amount_refunded": 500})

    first = deliver(stripe_connected, refund)
    again = deliver(stripe_connected, refund)

    assert (first.status_code, first.json()["replay"]) == (200, False)
    assert (again.status_code, again.json()["replay"]) == (200, True)
    assert again.json()["outcome"] == first.json()["outcome"]
    row = ProviderEvent.objects.get()
    assert (row.deliveries, row.invoice_id, row.attempt_id) == (2, invoice.pk, attempt.pk)


# -- payment_intent.* ---------------------------------------------------------------------------------------


def test_succeeded_settles_an_attempt_whose_call_never_recorded_found_by_its_metadata(
    stripe_connected, stripe_server, merchant, now, monkeypatch
):
    invoice = auto_charged(merchant, now)
    attempt = worker_dies_after_the_call(invoice, now, monkeypatch)
    intent = intent_of(stripe_server, attempt)

    response = deliver(stripe_connected, event("payment_intent.succeeded", intent))
    # Settled: the sweep no longer resumes it after the lease (no replay of the key needed).
    assert invoices_auto_charge_due(now=now + CLAIM_LEASE) == []

    attempt.refresh_from_db()
    [payment] = Payment.objects.filter(customer=invoice.customer)
    assert response.json()["outcome"] == f"attempt 1 succeeded, payment {payment.pk} recorded"
    assert (attempt.status, attempt.reference, attempt.payment_id) == ("succeeded", intent["id"], payment.pk)
    assert (payment.method, payment.amount, payment.reference) == ("card", Decimal("123.45"), intent["id"])
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)
    assert len(stripe_server.calls("POST", "/v1/payment_intents")) == 1


def test_succeeded_after_the_call_recorded_it_is_acknowledged_with_no_second_payment(
    stripe_connected, stripe_server, merchant, now
):
    invoice = auto_charged(merchant, now)
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)

    response = deliver(stripe_connected, event("payment_intent.succeeded", intent_of(stripe_server, attempt)))

    assert response.json()["outcome"] == "ignored: attempt 1 is succeeded already"
    assert Payment.objects.filter(customer=invoice.customer).count() == 1
    row = ProviderEvent.objects.get()
    assert (row.invoice_id, row.attempt_id) == (invoice.pk, attempt.pk)


def test_succeeded_settles_a_processing_bank_debit(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)
    method = invoice.customer.payment_methods.get()
    stripe_server.state.behaviours[method.reference] = "process"
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    assert attempt.status == "processing"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED

    intent = intent_of(stripe_server, attempt, status="succeeded", amount_received=12345)
    deliver(stripe_connected, event("payment_intent.succeeded", intent))

    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == "succeeded" and attempt.payment.amount == Decimal("123.45")
    assert invoice.status == InvoiceStatus.PAID


def test_payment_failed_fails_the_attempt_with_the_decline_and_flags_the_invoice(
    stripe_connected, stripe_server, merchant, now, monkeypatch, api_client
):
    invoice = auto_charged(merchant, now)
    attempt = worker_dies_after_the_call(invoice, now, monkeypatch)
    declined = intent_of(
        stripe_server,
        attempt,
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds", "message": "No money."},
    )

    response = deliver(stripe_connected, event("payment_intent.payment_failed", declined))

    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert response.json()["outcome"] == "attempt 1 failed (insufficient_funds)"
    assert (attempt.status, attempt.failure_code, attempt.failure_message) == (
        "failed",
        "insufficient_funds",
        "No money.",
    )
    assert (invoice.status, invoice.payment_failed_at is not None) == (InvoiceStatus.ISSUED, True)
    listed = api_client.get("/v2/invoices", {"status": "PAYMENT_FAILED"}).json()
    assert [row["id"] for row in listed["data"]] == [invoice.pk]
    assert api_client.get("/v2/invoices", {"status": "ISSUED"}).json()["data"] == []


def test_a_failure_arriving_after_the_success_never_unpays(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    stale = intent_of(
        stripe_server, attempt, status="requires_payment_method", last_payment_error={"code": "card_declined"}
    )

    failed = deliver(stripe_connected, event("payment_intent.payment_failed", stale))
    action = deliver(stripe_connected, event("payment_intent.requires_action", stale | {"status": "requires_action"}))

    assert failed.json()["outcome"] == action.json()["outcome"] == "ignored: attempt 1 is succeeded already"
    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert (attempt.status, attempt.failure_code) == ("succeeded", "")
    assert (invoice.status, invoice.payment_failed_at) == (InvoiceStatus.PAID, None)
    assert Payment.objects.filter(customer=invoice.customer).count() == 1


@pytest.mark.parametrize(("behaviour", "first"), [("authenticate", "requires_action"), ("decline_charges", "failed")])
def test_a_success_after_a_failure_or_3ds_pays_and_the_invoice_leaves_payment_failed(
    stripe_connected, stripe_server, merchant, now, api_client, behaviour, first
):
    invoice = auto_charged(merchant, now)
    stripe_server.state.behaviours[invoice.customer.payment_methods.get().reference] = behaviour
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    assert attempt.status == first
    # the customer completed the same PaymentIntent on Stripe's page (authenticated, or another card)
    intent = intent_of(stripe_server, attempt, status="succeeded", amount_received=12345)

    deliver(stripe_connected, event("payment_intent.succeeded", intent))

    attempt.refresh_from_db()
    assert (attempt.status, attempt.failure_code) == ("succeeded", "")
    assert api_client.get(f"/v2/invoices/{invoice.pk}").json()["status"] == "PAID"
    assert [row["id"] for row in api_client.get("/v2/invoices", {"status": "PAID"}).json()["data"]] == [invoice.pk]
    assert api_client.get("/v2/invoices", {"status": "PAYMENT_FAILED"}).json()["data"] == []


def test_requires_action_is_recorded_on_a_pending_attempt(stripe_connected, stripe_server, merchant, now, monkeypatch):
    invoice = auto_charged(merchant, now)
    attempt = worker_dies_after_the_call(invoice, now, monkeypatch)

    deliver(stripe_connected, event("payment_intent.requires_action", intent_of(stripe_server, attempt)))

    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == "requires_action" and invoice.status == InvoiceStatus.ISSUED


def test_a_payment_intent_not_ours_is_ignored_even_with_another_merchants_metadata(
    stripe_connected, stripe_server, merchant, now, monkeypatch
):
    from payments.services import integration_upsert

    invoice = auto_charged(merchant, now)
    attempt = worker_dies_after_the_call(invoice, now, monkeypatch)
    other = integration_upsert(
        merchant=MerchantFactory(),
        provider="stripe",
        now=now,
        secret_key="sk_test_other_0123456789",
        webhook_secret="whsec_test_0123456789",
    )

    foreign = deliver(other, event("payment_intent.succeeded", intent_of(stripe_server, attempt)))
    stray = deliver(stripe_connected, event("payment_intent.succeeded", {"id": "pi_test_stray", "amount": 100}))

    assert foreign.json()["outcome"].startswith("ignored: no automatic charge of ours")
    assert stray.json()["outcome"] == "ignored: no automatic charge of ours is PaymentIntent pi_test_stray"
    attempt.refresh_from_db()
    assert attempt.status == "pending" and not Payment.objects.exists()


def test_an_integration_without_a_signing_secret_verifies_nothing(merchant, stripe_server, now):
    from payments.services import integration_upsert

    unsigned = integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key="sk_test_nosecret0123456")

    response = deliver(unsigned, event("customer.created", {"id": "cus_test_1"}))

    assert (response.status_code, response.json()["error"]) == (400, "signature_invalid")
    assert "no webhook signing secret" in response.json()["message"]
    assert not ProviderEvent.objects.exists()

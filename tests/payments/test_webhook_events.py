"""The Stripe webhook's other events (payments/webhooks/stripe_handlers.py): refunds and disputes of a charge,
hosted setup pages completing, an event whose handling fails and is delivered again; the events in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from invoicing.models import InvoiceStatus, Payment
from invoicing.services import invoice_refund_create
from payments.charges import invoice_auto_charge
from payments.checkout import checkout_session_refresh, invoice_checkout_create
from payments.models import PaymentSession, ProviderEvent
from payments.services import payment_method_save, payment_session_setup_create
from tests.factories import CustomerFactory
from tests.invoicing.receivables import account, issued

from .stripe_events import deliver, event
from .test_charges import auto_charged

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, currency="USD")


@pytest.fixture
def paid(stripe_connected, stripe_server, merchant, now):
    invoice = auto_charged(merchant, now)
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    assert attempt.status == "succeeded"
    return attempt


def refunded(attempt, minor_units: int) -> dict:
    return event(
        "charge.refunded",
        {"id": "ch_test_1", "object": "charge", "payment_intent": attempt.reference, "amount_refunded": minor_units},
    )


def test_a_refund_made_at_stripe_is_kept_and_shown_as_not_yet_recorded(stripe_connected, paid, now):
    response = deliver(stripe_connected, refunded(paid, 5000))

    paid.refresh_from_db()
    assert (paid.provider_refunded, paid.provider_refunded_at is not None) == (Decimal("50.00"), True)
    assert response.json()["outcome"] == (
        "refunded at Stripe: $50.00; refund credit notes: $0.00; $50.00 not recorded as a refund credit note yet"
    )
    # No money moved here: the payment and the invoice are as they were.
    assert Payment.objects.get().amount == Decimal("123.45")
    paid.invoice.refresh_from_db()
    assert paid.invoice.status == InvoiceStatus.PAID


def test_a_refund_our_credit_note_recorded_has_no_second_effect_and_an_older_event_never_lowers_it(
    stripe_connected, paid, now
):
    invoice_refund_create(invoice=paid.invoice, now=now)  # finance refunded in full: a refund credit note

    full = deliver(stripe_connected, refunded(paid, 12345))
    older = deliver(stripe_connected, refunded(paid, 5000))  # a partial refund's event, delivered late

    assert full.json()["outcome"] == "refunded at Stripe: $123.45; refund credit notes: $123.45"
    assert older.json()["outcome"] == full.json()["outcome"]
    paid.refresh_from_db()
    assert paid.provider_refunded == Decimal("123.45")
    assert Payment.objects.count() == 1


def test_a_dispute_flags_the_charge_once_and_moves_no_money(stripe_connected, paid, superuser_client):
    dispute = {
        "id": "dp_test_1",
        "object": "dispute",
        "amount": 12345,
        "charge": "ch_test_1",
        "payment_intent": paid.reference,
        "reason": "fraudulent",
        "status": "needs_response",
    }

    first = deliver(stripe_connected, event("charge.dispute.created", dispute))
    again = deliver(stripe_connected, event("charge.dispute.created", dispute))  # another event id, same dispute

    assert first.json()["outcome"] == "disputed (fraudulent): $123.45"
    assert again.json()["outcome"] == "ignored: attempt 1 disputed already (dp_test_1)"
    paid.refresh_from_db()
    assert (paid.dispute_reference, paid.dispute_reason, paid.disputed_at is not None) == (
        "dp_test_1",
        "fraudulent",
        True,
    )
    paid.invoice.refresh_from_db()
    assert paid.invoice.status == InvoiceStatus.PAID and Payment.objects.count() == 1
    page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[paid.invoice_id])).content.decode()
    assert "Disputed" in page and "dp_test_1, fraudulent" in page


def test_a_completed_setup_page_completes_the_session_and_mirrors_the_card_saved_there(
    stripe_connected, stripe_server, customer, now
):
    session = payment_session_setup_create(customer=customer, now=now)
    stripe_server.customer_completes_setup(customer=session.provider_customer.reference, card="pm_card_mastercard")
    completed = {"id": session.reference, "object": "checkout.session", "mode": "setup", "status": "complete"}

    response = deliver(stripe_connected, event("checkout.session.completed", completed))
    again = deliver(stripe_connected, event("checkout.session.completed", completed))

    session.refresh_from_db()
    [method] = customer.payment_methods.all()
    assert (session.status, session.completed_at is not None) == ("completed", True)
    synced = "payment methods synced"  # the hand-made object names no SetupIntent: the first card's rule
    assert response.json()["outcome"] == f"setup session {session.pk} completed; {synced}"
    assert again.json()["outcome"] == f"setup session {session.pk} completed already; {synced}"
    assert (method.brand, method.last4, method.is_default) == ("mastercard", "4444", True)


def test_a_card_saved_on_a_later_setup_page_replaces_the_default(stripe_connected, stripe_server, customer, now):
    declining = payment_method_save(customer=customer, payment_method="pm_card_chargeCustomerFail", now=now)
    session = payment_session_setup_create(customer=customer, now=now)
    stripe_server.customer_completes_setup(
        customer=session.provider_customer.reference, card="pm_card_visa", session=session.reference
    )
    completed = stripe_server.state.sessions[session.reference]
    assert (completed["status"], completed["setup_intent"][:5]) == ("complete", "seti_")

    response = deliver(stripe_connected, event("checkout.session.completed", completed))

    declining.refresh_from_db()
    replacing = customer.payment_methods.exclude(pk=declining.pk).get()
    assert (declining.is_default, declining.detached_at) == (False, None)
    assert (replacing.last4, replacing.is_default) == ("4242", True)
    assert response.json()["outcome"].endswith(f"payment methods synced; {replacing.pk} is the default")
    assert stripe_server.calls("GET", f"/v1/setup_intents/{completed['setup_intent']}")


def test_a_paid_checkout_session_delivered_signed_records_one_payment_with_its_replay_and_the_return_page(
    stripe_connected, stripe_server, merchant, now
):
    invoice = issued(account(merchant), "123.45", now=now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    completed = stripe_server.customer_pays_session(session.reference)

    response = deliver(stripe_connected, event("checkout.session.completed", completed))
    replay = deliver(stripe_connected, event("checkout.session.async_payment_succeeded", completed))
    checkout_session_refresh(session=session, now=now)  # the customer's return page, after the webhook

    [payment] = Payment.objects.all()
    session.refresh_from_db()
    invoice.refresh_from_db()
    assert (invoice.status, payment.amount, session.status) == (InvoiceStatus.PAID, Decimal("123.45"), "completed")
    assert response.json()["outcome"] == f"payment session {session.pk} completed, payment {payment.pk}"
    assert replay.json()["outcome"] == response.json()["outcome"]  # recorded already: nothing added


def test_a_payment_mode_session_not_ours_is_acknowledged_and_changes_nothing(stripe_connected, customer, now):
    completed = {"id": "cs_test_pay", "object": "checkout.session", "mode": "payment", "payment_status": "paid"}

    response = deliver(stripe_connected, event("checkout.session.completed", completed))

    assert response.json()["outcome"] == "ignored: no payment session of ours is cs_test_pay"
    assert not Payment.objects.exists() and not PaymentSession.objects.exists()


def test_an_event_whose_handling_fails_is_recorded_answered_503_and_handled_when_delivered_again(
    stripe_connected, stripe_server, customer, now, settings
):
    session = payment_session_setup_create(customer=customer, now=now)
    stripe_server.customer_completes_setup(customer=session.provider_customer.reference)
    payload = event("checkout.session.completed", {"id": session.reference, "mode": "setup"})
    base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable for the sync

    failed = deliver(stripe_connected, payload)

    assert (failed.status_code, failed.json()["error"]) == (503, "handling_failed")
    row = ProviderEvent.objects.get()
    assert row.processed_at is None and row.error.startswith("PaymentProviderError")

    settings.STRIPE_API_BASE = base
    delivered_again = deliver(stripe_connected, payload)

    assert (delivered_again.status_code, delivered_again.json()["replay"]) == (200, False)
    row.refresh_from_db()
    assert (row.deliveries, row.error, row.processed_at is not None) == (2, "", True)
    assert customer.payment_methods.count() == 1


def test_the_admin_lists_the_events_read_only(stripe_connected, paid, superuser_client):
    deliver(stripe_connected, refunded(paid, 5000))
    row = ProviderEvent.objects.get()

    listing = superuser_client.get(reverse("admin:payments_providerevent_changelist")).content.decode()
    detail = superuser_client.get(reverse("admin:payments_providerevent_change", args=[row.pk]))

    assert row.event_id in listing and "charge.refunded" in listing and "not recorded as a refund" in listing
    assert detail.status_code == 200 and b'name="outcome"' not in detail.content  # viewed, never edited
    assert superuser_client.get(reverse("admin:payments_providerevent_add")).status_code == 403


def test_an_expired_checkout_session_delivered_signed_expires_our_pending_session_once(
    stripe_connected, stripe_server, merchant, customer, now
):
    invoice = issued(account(merchant), "40.00", now=now)
    paying = invoice_checkout_create(invoice=invoice, now=now)
    setup = payment_session_setup_create(customer=customer, now=now)
    expired = {**stripe_server.state.sessions[paying.reference], "status": "expired"}

    response = deliver(stripe_connected, event("checkout.session.expired", expired, ident="evt_test_expired"))
    replay = deliver(stripe_connected, event("checkout.session.expired", expired, ident="evt_test_expired"))
    setup_expired = deliver(
        stripe_connected,
        event("checkout.session.expired", {**stripe_server.state.sessions[setup.reference], "status": "expired"}),
    )
    unknown = deliver(
        stripe_connected, event("checkout.session.expired", {"id": "cs_test_elsewhere", "status": "expired"})
    )

    paying.refresh_from_db()
    setup.refresh_from_db()
    assert (response.status_code, response.json()["outcome"]) == (200, f"payment session {paying.pk} expired")
    assert (replay.json()["replay"], paying.status) == (True, "expired")
    assert ProviderEvent.objects.get(event_id="evt_test_expired").invoice_id == invoice.pk
    assert (setup_expired.json()["outcome"], setup.status) == (f"setup session {setup.pk} expired", "expired")
    assert unknown.json()["outcome"] == "ignored: no session of ours is cs_test_elsewhere"


def test_an_expiry_arriving_after_the_payment_leaves_the_session_completed(
    stripe_connected, stripe_server, merchant, now
):
    invoice = issued(account(merchant), "40.00", now=now)
    session = invoice_checkout_create(invoice=invoice, now=now)
    completed = stripe_server.customer_pays_session(session.reference)
    deliver(stripe_connected, event("checkout.session.completed", completed))

    late = deliver(stripe_connected, event("checkout.session.expired", {**completed, "status": "expired"}))

    session.refresh_from_db()
    assert (late.json()["outcome"], session.status) == (f"payment session {session.pk} completed", "completed")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and Payment.objects.filter(customer=invoice.customer).count() == 1

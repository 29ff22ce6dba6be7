"""The client's ``POST /v2/invoices/{id}/retryPayment`` through DRF's client and through the unmodified
paygentic-sdk 0.6.3 against a live server, Stripe played by the local server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from invoicing.models import InvoiceStatus, Payment
from payments.charges import invoice_auto_charge
from payments.models import PaymentAttempt
from payments.services import integration_disconnect, payment_method_save, payment_method_set_default
from tests.factories import MerchantFactory

from .conftest import SECRET_KEY
from .test_charges import INTENTS, auto_charged

pytestmark = pytest.mark.django_db


def retry(api_client, invoice_id: str, body: dict | None = None):
    return api_client.post(f"/v2/invoices/{invoice_id}/retryPayment", body or {}, format="json")


def declined_yesterday(merchant):
    """An invoice whose first automatic charge was declined a day ago (real time: the API acts now)."""
    from django.utils import timezone

    yesterday = timezone.now() - timedelta(days=1)
    invoice = auto_charged(merchant, yesterday, card="pm_card_chargeCustomerFail")
    invoice_auto_charge(invoice_id=invoice.pk, now=yesterday)
    return invoice


def test_a_declined_retry_answers_402_with_the_decline_code(stripe_connected, stripe_server, merchant, api_client):
    invoice = declined_yesterday(merchant)

    response = retry(api_client, invoice.pk, {"reason": "customer asked"})

    attempt = PaymentAttempt.objects.get(invoice=invoice, number=2)
    assert response.status_code == 402
    assert response.json() == {
        "object": "retry_payment_result",
        "success": False,
        "invoiceId": invoice.pk,
        "paymentIntentId": attempt.reference,
        "error": {
            "message": "Your card was declined.",
            "type": "card_error",
            "code": "generic_decline",
            "declineCode": "generic_decline",
        },
    }
    assert (attempt.trigger, attempt.requested_reason) == ("requested", "customer asked")
    assert stripe_server.calls("POST", INTENTS)[-1].idempotency_key == f"meterline-charge-{invoice.pk}-2"


def test_after_the_card_is_replaced_the_retry_pays_the_invoice(stripe_connected, stripe_server, merchant, api_client):
    invoice = declined_yesterday(merchant)
    card = payment_method_save(customer=invoice.customer, payment_method="pm_card_visa", now=invoice.issued_at)
    payment_method_set_default(payment_method=card)

    response = retry(api_client, invoice.pk)
    again = retry(api_client, invoice.pk)

    attempt = PaymentAttempt.objects.get(invoice=invoice, number=2)
    assert response.status_code == 200
    assert response.json() == {
        "object": "retry_payment_result",
        "success": True,
        "invoiceId": invoice.pk,
        "paymentIntentId": attempt.reference,
    }
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert Payment.objects.filter(customer=invoice.customer).count() == 1
    assert again.status_code == 409 and again.json()["error"]["code"] == "PAYMENT_ALREADY_COMPLETED"
    assert len(stripe_server.calls("POST", INTENTS)) == 2


def test_the_refusals_have_their_status_and_code(stripe_connected, stripe_server, merchant, api_client, now):
    invoice = declined_yesterday(merchant)

    def code(response) -> tuple[int, str]:
        body = response.json()
        return response.status_code, body["error"]["code"] if isinstance(body.get("error"), dict) else body["code"]

    latest = PaymentAttempt.objects.filter(invoice=invoice)
    latest.update(status="pending", next_retry_at=None)
    assert code(retry(api_client, invoice.pk)) == (409, "concurrent_attempt")
    latest.update(status="failed")
    invoice.customer.payment_methods.update(detached_at=now, is_default=False)
    assert code(retry(api_client, invoice.pk)) == (422, "no_payment_method")
    off = auto_charged(merchant, now, auto_charge=False)
    assert code(retry(api_client, off.pk)) == (400, "AUTO_CHARGE_OFF")
    integration_disconnect(integration=stripe_connected, now=now)
    assert code(retry(api_client, invoice.pk)) == (409, "PAYMENT_PROVIDER_NOT_CONNECTED")
    assert retry(api_client, "inv_missing").status_code == 404
    assert retry(api_client, invoice.pk, {"unknown": 1}).status_code == 400
    assert len(stripe_server.calls("POST", INTENTS)) == 1


def test_a_retry_just_after_another_is_rate_limited(stripe_connected, stripe_server, merchant, api_client):
    invoice = declined_yesterday(merchant)
    assert retry(api_client, invoice.pk).status_code == 402

    response = retry(api_client, invoice.pk)

    assert response.status_code == 429 and response.json()["code"] == "RATE_LIMITED"
    assert len(stripe_server.calls("POST", INTENTS)) == 2


def test_stripe_unreachable_answers_502_and_leaves_the_attempt_to_be_resumed(
    stripe_connected, stripe_server, merchant, api_client, settings
):
    invoice = declined_yesterday(merchant)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there

    response = retry(api_client, invoice.pk)

    assert response.status_code == 502 and response.json()["error"]["code"] == "provider_unavailable"
    assert PaymentAttempt.objects.get(invoice=invoice, number=2).status == "pending"


def test_another_merchants_invoice_is_not_found(stripe_connected, stripe_server, merchant, api_client):
    other = auto_charged(MerchantFactory(), stripe_connected.connected_at, card=None)
    assert retry(api_client, other.pk).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_paygentic_client_retries_a_payment(live_server, stripe_server):
    from django.utils import timezone

    from payments.services import integration_upsert

    merchant = MerchantFactory()
    integration_upsert(merchant=merchant, provider="stripe", now=timezone.now(), secret_key=SECRET_KEY)
    invoice = declined_yesterday(merchant)
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        with pytest.raises(errors.RetryPaymentResponseError) as declined:
            sdk.invoices_v2.retry_invoice_payment(id=invoice.pk, reason="card declined yesterday")
        card = payment_method_save(customer=invoice.customer, payment_method="pm_card_visa", now=timezone.now())
        payment_method_set_default(payment_method=card)
        PaymentAttempt.objects.filter(invoice=invoice).update(created_at=timezone.now() - timedelta(minutes=2))
        paid = sdk.invoices_v2.retry_invoice_payment(id=invoice.pk)

    assert declined.value.raw_response.status_code == 402
    assert (declined.value.data.success, declined.value.data.error.code) == (False, "generic_decline")
    assert (paid.object, paid.success, paid.invoice_id) == ("retry_payment_result", True, invoice.pk)
    assert paid.payment_intent_id == PaymentAttempt.objects.get(invoice=invoice, number=3).reference
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID

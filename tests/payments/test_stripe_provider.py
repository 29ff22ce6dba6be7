"""The Stripe adapter through the real ``stripe`` library, over HTTP, against the local Stripe server: what
is sent (minor units, currency, customer, off_session, idempotency keys) and how Stripe's answers are read."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe

from payments.providers import ChargeStatus, InvalidProviderEvent, PaymentProviderError
from payments.providers.stripe_provider import StripeProvider

SECRET_KEY = "sk_test_meterline_0123456789"
WEBHOOK_SECRET = "whsec_test_meterline_secret"


@pytest.fixture
def provider(stripe_server) -> StripeProvider:
    return StripeProvider(secret_key=SECRET_KEY, webhook_secret=WEBHOOK_SECRET)


@pytest.fixture
def customer(provider) -> str:
    return provider.customer_create(customer_id="cus_ours", name="Ada", email="ada@example.com", idempotency_key="c1")


def test_a_customer_is_created_once_per_idempotency_key(provider, stripe_server):
    first = provider.customer_create(customer_id="cus_A", name="Ada", email="ada@example.com", idempotency_key="k")
    again = provider.customer_create(customer_id="cus_A", name="Ada", email="ada@example.com", idempotency_key="k")

    assert first == again and first.startswith("cus_")
    [sent, _] = stripe_server.calls("POST", "/v1/customers")
    assert sent.params == {"name": "Ada", "email": "ada@example.com", "metadata[meterline_customer]": "cus_A"}
    assert (sent.idempotency_key, sent.api_key) == ("k", SECRET_KEY)
    assert len(stripe_server.state.customers) == 1


def test_a_card_is_saved_through_a_confirmed_setup_intent_for_off_session_use(provider, customer, stripe_server):
    saved = provider.payment_method_setup(
        provider_customer=customer, payment_method="pm_card_visa", idempotency_key="s1"
    )

    assert (saved.type, saved.brand, saved.last4, saved.exp_month, saved.exp_year) == ("card", "visa", "4242", 8, 2030)
    assert saved.reference.startswith("pm_") and saved.created_at.tzinfo is UTC
    [sent] = stripe_server.calls("POST", "/v1/setup_intents")
    assert sent.params["customer"] == customer
    assert (sent.params["confirm"], sent.params["usage"], sent.idempotency_key) == ("true", "off_session", "s1")
    assert [m.reference for m in provider.payment_methods_list(provider_customer=customer)] == [saved.reference]


def test_every_page_of_saved_methods_is_read(provider, customer, stripe_server):
    stripe_server.max_page_size = 2
    saved = [stripe_server.customer_completes_setup(customer=customer)["id"] for _ in range(5)]

    listed = provider.payment_methods_list(provider_customer=customer)

    assert sorted(m.reference for m in listed) == sorted(saved)
    assert len(stripe_server.calls("GET", "/v1/payment_methods")) == 3


def test_a_key_still_in_use_is_a_409_the_library_retries_into_the_first_answer(stripe_server, settings):
    import threading

    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    stripe_server.latency = 0.3
    provider = StripeProvider(secret_key=SECRET_KEY)
    barrier = threading.Barrier(2)
    created = []

    def create():
        barrier.wait(timeout=10)
        created.append(provider.customer_create(customer_id="c", name="n", email="e@example.com", idempotency_key="k"))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(created) == 2 and created[0] == created[1]
    assert len(stripe_server.state.customers) == 1
    # the refused one was retried (once, or twice when its first retry's jittered wait was shorter than 0.3 s)
    assert len(stripe_server.calls("POST", "/v1/customers")) in (3, 4)


def test_charging_sends_minor_units_lower_case_currency_off_session_and_the_key(provider, customer, stripe_server):
    card = provider.payment_method_setup(provider_customer=customer, payment_method="pm_card_visa", idempotency_key="s")

    result = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("1234.50"),
        currency="USD",
        idempotency_key="inv_123",
        description="Invoice INV-1",
        metadata={"meterline_invoice": "inv_123"},
    )

    assert (result.status, result.amount, result.currency) == (ChargeStatus.SUCCEEDED, Decimal("1234.50"), "USD")
    assert result.reference.startswith("pi_")
    [sent] = stripe_server.calls("POST", "/v1/payment_intents")
    assert sent.params == {
        "amount": "123450",
        "currency": "usd",
        "customer": customer,
        "payment_method": card.reference,
        "off_session": "true",
        "confirm": "true",
        "description": "Invoice INV-1",
        "metadata[meterline_invoice]": "inv_123",
    }
    assert sent.idempotency_key == "inv_123"


def test_a_zero_decimal_currency_is_sent_in_whole_units_and_a_fraction_of_a_cent_is_refused(provider, customer):
    card = provider.payment_method_setup(provider_customer=customer, payment_method="pm_card_visa", idempotency_key="s")

    yen = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("500"),
        currency="JPY",
        idempotency_key="jpy",
    )
    with pytest.raises(ValueError, match="not a whole number of minor units"):
        provider.invoice_charge(
            provider_customer=customer,
            payment_method=card.reference,
            amount=Decimal("1.005"),
            currency="USD",
            idempotency_key="x",
        )

    assert yen.amount == Decimal("500")


def test_the_same_invoice_key_charges_once_and_other_parameters_under_it_are_refused(provider, customer, stripe_server):
    card = provider.payment_method_setup(provider_customer=customer, payment_method="pm_card_visa", idempotency_key="s")
    charge = dict(provider_customer=customer, payment_method=card.reference, currency="EUR", idempotency_key="inv_9")

    first = provider.invoice_charge(amount=Decimal("10.00"), **charge)
    again = provider.invoice_charge(amount=Decimal("10.00"), **charge)
    with pytest.raises(PaymentProviderError) as changed:
        provider.invoice_charge(amount=Decimal("11.00"), **charge)

    assert first.reference == again.reference
    assert len(stripe_server.state.payment_intents) == 1
    assert changed.value.code == "" and "idempotent" in changed.value.message
    assert changed.value.http_status == 400 and not changed.value.retryable


def test_a_card_declined_on_setup_is_refused_and_not_saved(provider, customer, stripe_server):
    with pytest.raises(PaymentProviderError) as declined:
        provider.payment_method_setup(
            provider_customer=customer, payment_method="pm_card_chargeDeclined", idempotency_key="s"
        )

    assert (declined.value.code, declined.value.http_status, declined.value.retryable) == ("card_declined", 402, False)
    assert declined.value.message == "Your card was declined."
    assert provider.payment_methods_list(provider_customer=customer) == []


def test_a_saved_card_whose_charges_fail_is_a_failed_charge_with_stripes_reason(provider, customer, stripe_server):
    card = provider.payment_method_setup(
        provider_customer=customer, payment_method="pm_card_chargeCustomerFail", idempotency_key="s"
    )

    result = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("20.00"),
        currency="USD",
        idempotency_key="inv_d",
    )
    again = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("20.00"),
        currency="USD",
        idempotency_key="inv_d",
    )

    assert (result.status, result.failure_code) == (ChargeStatus.FAILED, "generic_decline")
    assert result.reference.startswith("pi_") and result.failure_message == "Your card was declined."
    assert again == result  # Stripe replays the 402 under the same key: no second attempt
    assert stripe_server.state.payment_intents[result.reference]["status"] == "requires_payment_method"


def test_a_card_needing_3d_secure_cannot_be_saved_without_the_customer(provider, customer):
    with pytest.raises(PaymentProviderError) as needs_customer:
        provider.payment_method_setup(
            provider_customer=customer, payment_method="pm_card_authenticationRequired", idempotency_key="s"
        )

    assert needs_customer.value.code == "authentication_required"


def test_a_card_needing_3d_secure_off_session_asks_for_the_customer(provider, customer, stripe_server):
    # saved on the hosted page, where the customer authenticated; every later charge needs it again
    card = stripe_server.customer_completes_setup(customer=customer, card="pm_card_authenticationRequired")

    result = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card["id"],
        amount=Decimal("20.00"),
        currency="USD",
        idempotency_key="inv_3ds",
    )

    assert (result.status, result.failure_code) == (ChargeStatus.REQUIRES_ACTION, "authentication_required")
    intent = stripe_server.state.payment_intents[result.reference]
    assert intent["status"] == "requires_payment_method"


def test_a_method_of_another_customer_and_an_unknown_customer_are_refused(provider, customer):
    other = provider.customer_create(customer_id="cus_B", name="Bob", email="bob@example.com", idempotency_key="c2")
    card = provider.payment_method_setup(provider_customer=other, payment_method="pm_card_visa", idempotency_key="s")

    with pytest.raises(PaymentProviderError) as foreign:
        provider.invoice_charge(
            provider_customer=customer,
            payment_method=card.reference,
            amount=Decimal("1.00"),
            currency="USD",
            idempotency_key="f",
        )
    with pytest.raises(PaymentProviderError) as missing:
        provider.payment_methods_list(provider_customer="cus_nope")

    assert foreign.value.http_status == 400
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_a_hosted_setup_session_and_a_payment_session(provider, customer, stripe_server):
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)

    setup = provider.session_create(
        mode="setup",
        provider_customer=customer,
        currency="EUR",
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/no",
        expires_at=expires,
        idempotency_key="ps_1",
        metadata={"k": "v"},
    )
    pay = provider.session_create(
        mode="payment",
        provider_customer=customer,
        currency="USD",
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/no",
        expires_at=expires,
        idempotency_key="ps_2",
        amount=Decimal("99.99"),
        description="Invoice INV-7",
    )

    assert setup.reference.startswith("cs_test_") and setup.url.startswith("https://checkout.stripe.com/")
    assert setup.expires_at == expires
    [sent_setup, sent_pay] = stripe_server.calls("POST", "/v1/checkout/sessions")
    assert (sent_setup.params["mode"], sent_setup.params["currency"], sent_setup.params["customer"]) == (
        "setup",
        "eur",
        customer,
    )
    assert sent_setup.params["expires_at"] == str(int(expires.timestamp()))
    assert sent_setup.params["metadata[k]"] == "v" and sent_setup.idempotency_key == "ps_1"
    assert sent_pay.params["line_items[0][price_data][unit_amount]"] == "9999"
    assert sent_pay.params["line_items[0][price_data][currency]"] == "usd"
    assert sent_pay.params["payment_intent_data[setup_future_usage]"] == "off_session"
    assert pay.reference != setup.reference


def test_a_refund_gives_back_part_of_a_charge_once_per_key(provider, customer, stripe_server):
    card = provider.payment_method_setup(provider_customer=customer, payment_method="pm_card_visa", idempotency_key="s")
    charge = provider.invoice_charge(
        provider_customer=customer,
        payment_method=card.reference,
        amount=Decimal("50.00"),
        currency="USD",
        idempotency_key="inv_r",
    )

    first = provider.refund(
        charge_reference=charge.reference, amount=Decimal("20.00"), currency="USD", idempotency_key="r1"
    )
    again = provider.refund(
        charge_reference=charge.reference, amount=Decimal("20.00"), currency="USD", idempotency_key="r1"
    )
    with pytest.raises(PaymentProviderError) as too_much:
        provider.refund(
            charge_reference=charge.reference, amount=Decimal("40.00"), currency="USD", idempotency_key="r2"
        )

    assert (first.status, first.amount, first.reference) == ("succeeded", Decimal("20.00"), again.reference)
    [sent, *_] = stripe_server.calls("POST", "/v1/refunds")
    assert sent.params == {"payment_intent": charge.reference, "amount": "2000"}
    assert too_much.value.http_status == 400


def _signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp=at)


def test_a_provider_event_is_read_only_when_its_signature_verifies(provider):
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1767225600,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 1000}},
    }
    payload = json.dumps(event).encode()

    parsed = provider.event_parse(payload=payload, signature=_signed(payload))
    with pytest.raises(InvalidProviderEvent):
        provider.event_parse(payload=payload.replace(b"1000", b"9000"), signature=_signed(payload))
    with pytest.raises(InvalidProviderEvent):
        provider.event_parse(payload=payload, signature=_signed(payload, secret="whsec_other"))
    with pytest.raises(InvalidProviderEvent):
        provider.event_parse(payload=payload, signature=_signed(payload, at=int(time.time()) - 3600))

    assert (parsed.id, parsed.type, parsed.object["id"]) == ("evt_1", "payment_intent.succeeded", "pi_1")
    assert parsed.created_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_stripe_unreachable_is_a_retryable_error(settings):
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    provider = StripeProvider(secret_key=SECRET_KEY, api_base="http://127.0.0.1:9")

    with pytest.raises(PaymentProviderError) as unreachable:
        provider.customer_create(customer_id="c", name="n", email="e@example.com", idempotency_key="k")

    assert (unreachable.value.code, unreachable.value.retryable) == ("api_connection_error", True)


def test_a_payment_session_is_retrieved_as_stripe_has_it_before_and_after_the_customer_paid(
    provider, customer, stripe_server
):
    hosted = provider.session_create(
        mode="payment",
        provider_customer=customer,
        currency="EUR",
        amount=Decimal("42.10"),
        description="Invoice INV-7",
        success_url="https://example.com/ok",
        cancel_url="https://example.com/ko",
        expires_at=datetime.now(UTC) + timedelta(hours=24),
        idempotency_key="session-1",
        metadata={"meterline_invoice": "inv_1", "meterline_payment_session": "ps_1"},
    )

    before = provider.session_retrieve(reference=hosted.reference)
    stripe_server.customer_pays_session(hosted.reference)
    after = provider.session_retrieve(reference=hosted.reference)

    assert (before["status"], before["payment_status"], before["payment_intent"]) == ("open", "unpaid", None)
    assert (after["status"], after["payment_status"], after["amount_total"], after["currency"]) == (
        "complete",
        "paid",
        4210,
        "eur",
    )
    intent = stripe_server.state.payment_intents[after["payment_intent"]]
    assert intent["metadata"] == {"meterline_invoice": "inv_1", "meterline_payment_session": "ps_1"}
    assert (intent["amount_received"], intent["status"]) == (4210, "succeeded")
    [sent] = stripe_server.calls("GET", f"/v1/checkout/sessions/{hosted.reference}")[:1]
    assert sent.api_key == SECRET_KEY


def test_retrieving_a_session_stripe_does_not_know_is_a_provider_error(provider, stripe_server):
    with pytest.raises(PaymentProviderError) as refused:
        provider.session_retrieve(reference="cs_test_unknown")

    assert (refused.value.code, refused.value.http_status, refused.value.retryable) == ("resource_missing", 404, False)


def test_the_method_a_completed_setup_page_saved_is_read_from_its_setup_intent(provider, customer, stripe_server):
    hosted = provider.session_create(
        mode="setup",
        provider_customer=customer,
        currency="USD",
        success_url="https://example.com/ok",
        cancel_url="https://example.com/ko",
        expires_at=datetime.now(UTC) + timedelta(hours=24),
        idempotency_key="setup-session-1",
        metadata={"meterline_session": "ps_1"},
    )
    method = stripe_server.customer_completes_setup(customer=customer, card="pm_card_visa", session=hosted.reference)
    setup_intent = stripe_server.state.sessions[hosted.reference]["setup_intent"]

    assert provider.setup_intent_payment_method(reference=setup_intent) == method["id"]
    with pytest.raises(PaymentProviderError) as refused:
        provider.setup_intent_payment_method(reference="seti_test_unknown")
    assert (refused.value.code, refused.value.http_status) == ("resource_missing", 404)

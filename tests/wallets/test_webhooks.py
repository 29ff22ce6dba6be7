"""Webhooks: signed bodies a receiver can verify, sent after commit, retried with back-off.

Only a loopback server on 127.0.0.1 is contacted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.formatting import iso_utc
from wallets.models import (
    BalancePolicy,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
    webhook_secret_new,
)
from wallets.services import credit_top_up, usage_debit, wallet_policy_update
from wallets.webhooks import (
    WEBHOOK_MAX_ATTEMPTS,
    endpoint_signing_secrets,
    webhook_deliveries_retry_due,
    webhook_delivery_attempt,
    webhook_delivery_replay,
    webhook_endpoint_secret_rotate,
    webhook_event_emit,
    webhook_headers,
    webhook_signature_header,
    webhook_signature_verify,
    webhooks_enable,
    webhooks_update,
)

from .factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records requests and answers with queued status codes."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/meterline"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_a_delivered_body_verifies_with_the_standardwebhooks_library(receiver, merchant):
    # given (the library checks the timestamp against the wall clock: the attempt is made now)
    now = timezone.now()
    endpoint = WebhookEndpointFactory(merchant=merchant, url=receiver.url)
    [delivery] = webhook_event_emit(
        merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={"balance": "9"}, now=now
    )

    # when
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

    # then
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == (DeliveryStatus.SUCCEEDED, 1, 200)
    [(headers, body)] = receiver.requests
    payload = standardwebhooks.Webhook(endpoint.secret).verify(body, headers)
    assert payload == {
        "id": delivery.event_id,
        "type": "balance.low.v0",
        "timestamp": iso_utc(now),
        "data": {"balance": "9"},
    }
    lowered = {name.lower(): value for name, value in headers.items()}
    assert lowered["webhook-id"] == delivery.event_id
    assert lowered["webhook-timestamp"] == str(int(now.timestamp()))
    assert lowered["webhook-signature"].startswith("v1,")
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(webhook_secret_new()).verify(body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(endpoint.secret).verify(body + b" ", headers)
    # our own helper agrees, and refuses a stale timestamp
    assert webhook_signature_verify(secret=endpoint.secret, headers=headers, body=body, now=now) is True
    assert webhook_signature_verify(secret=webhook_secret_new(), headers=headers, body=body, now=now) is False
    assert (
        webhook_signature_verify(secret=endpoint.secret, headers=headers, body=body, now=now + timedelta(minutes=6))
        is False
    )


def test_the_signature_is_base64_hmac_sha256_over_id_dot_timestamp_dot_body():
    # the Standard Webhooks test vector (https://github.com/standard-webhooks/standard-webhooks, spec)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    header = webhook_signature_header(
        secrets=[secret], msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body
    )
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_after_a_rotation_both_secrets_sign_until_the_old_one_expires(merchant, now):
    endpoint = WebhookEndpointFactory(merchant=merchant)
    old_secret = endpoint.secret

    endpoint = webhook_endpoint_secret_rotate(endpoint=endpoint, now=now)

    assert endpoint.secret != old_secret and endpoint.secret.startswith("whsec_")
    assert endpoint_signing_secrets(endpoint, now=now) == [endpoint.secret, old_secret]
    assert endpoint_signing_secrets(endpoint, now=now + timedelta(hours=24)) == [endpoint.secret]


def test_failed_attempts_back_off_exponentially_then_give_up(receiver, merchant, now):
    # given an endpoint that answers 500 every time
    receiver.statuses = [500] * WEBHOOK_MAX_ATTEMPTS
    WebhookEndpointFactory(merchant=merchant, url=receiver.url)
    [delivery] = webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now)

    # when the beat sweep keeps retrying whatever is due
    waits = []
    clock = now
    for _ in range(WEBHOOK_MAX_ATTEMPTS):
        assert webhook_deliveries_retry_due(now=clock - timedelta(seconds=1)) == []  # not due yet: nothing sent
        [delivery] = webhook_deliveries_retry_due(now=clock)
        if delivery.next_attempt_at:
            waits.append(delivery.next_attempt_at - clock)
            clock = delivery.next_attempt_at

    # then the waits double from 30 s and the delivery gives up after the last attempt
    assert waits == [timedelta(seconds=30 * 2**n) for n in range(WEBHOOK_MAX_ATTEMPTS - 1)]
    assert (delivery.status, delivery.attempts, delivery.last_response_code, delivery.last_error) == (
        DeliveryStatus.FAILED,
        WEBHOOK_MAX_ATTEMPTS,
        500,
        "HTTP 500",
    )
    assert len(receiver.requests) == WEBHOOK_MAX_ATTEMPTS
    assert webhook_deliveries_retry_due(now=clock + timedelta(days=1)) == []

    # when an operator retries it by hand and the endpoint is back
    delivery = webhook_delivery_replay(delivery=delivery, now=clock + timedelta(days=1))
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, WEBHOOK_MAX_ATTEMPTS + 1)


def test_an_unreachable_endpoint_is_retried(merchant, now):
    WebhookEndpointFactory(merchant=merchant, url="http://127.0.0.1:9/closed")  # discard port: refused
    [delivery] = webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now)

    delivery = webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

    assert (delivery.status, delivery.attempts, delivery.last_response_code) == (DeliveryStatus.PENDING, 1, None)
    assert delivery.last_error != ""
    assert delivery.next_attempt_at == now + timedelta(seconds=30)


def test_a_low_balance_notice_is_sent_after_the_debit_commits(
    receiver, customer, now, django_capture_on_commit_callbacks
):
    # given
    WebhookEndpointFactory(merchant=customer.merchant, url=receiver.url, event_types=["balance.low"])
    credit_top_up(customer=customer, currency="USD", amount=Decimal("20"), idempotency_key="t", now=now)
    wallet_policy_update(
        customer=customer, currency="USD", policy=BalancePolicy.BLOCK, low_balance_threshold=Decimal("5"), now=now
    )

    # when the debit commits
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        usage_debit(customer=customer, currency="USD", amount=Decimal("16"), now=now)
    assert receiver.requests == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()

    # then (the task reads the wall clock, which is after `now`)
    assert WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED
    [(headers, body)] = receiver.requests
    assert b'"type":"balance.low.v0"' in body
    assert b'"balance":"4"' in body


def test_disabled_endpoints_get_nothing(merchant, now):
    WebhookEndpointFactory(merchant=merchant, enabled=False)
    assert webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now) == []


def test_an_event_about_one_object_is_delivered_once_per_endpoint(merchant, now):
    endpoint = WebhookEndpointFactory(merchant=merchant)

    first = webhook_event_emit(
        merchant_id=merchant.pk, event_type=WebhookEventType.INVOICE_PAID, data={}, now=now, key="inv_1"
    )
    again = webhook_event_emit(
        merchant_id=merchant.pk, event_type=WebhookEventType.INVOICE_PAID, data={}, now=now, key="inv_1"
    )
    with pytest.raises(IntegrityError), transaction.atomic():  # the constraint, should two emitters race
        WebhookDelivery.objects.create(
            endpoint=endpoint, event_id=first[0].event_id, event_type="invoice.paid.v0", payload={}
        )

    assert (len(first), again) == (1, [])
    assert WebhookDelivery.objects.count() == 1


def test_an_endpoint_subscribes_to_a_type_or_to_its_family(merchant, now):
    exact = WebhookEndpointFactory(merchant=merchant, event_types=["invoice.paid.v0"])
    family = WebhookEndpointFactory(merchant=merchant, event_types=["invoice.paid"])
    other = WebhookEndpointFactory(merchant=merchant, event_types=["invoice.voided.v0"])

    deliveries = webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.INVOICE_PAID, data={}, now=now)

    assert {d.endpoint_id for d in deliveries} == {exact.pk, family.pk}
    assert other.wants("invoice.paid.v0") is False
    with pytest.raises(ValidationError):
        WebhookEndpointFactory.build(merchant=merchant, event_types=["invoice.payed"]).full_clean()


def test_paused_webhooks_record_nothing_and_hold_pending_deliveries_until_resumed(receiver, merchant, now):
    # given a pending delivery, then the merchant pauses
    WebhookEndpointFactory(merchant=merchant, url=receiver.url)
    webhooks_enable(merchant=merchant, now=now)
    [pending] = webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now)
    webhooks_update(merchant=merchant, enabled=False, now=now)

    # when events happen and the sweep runs while paused
    assert webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now) == []
    assert webhook_deliveries_retry_due(now=now) == []
    assert receiver.requests == []

    # then resuming sends the held delivery at the next sweep
    webhooks_update(merchant=merchant, enabled=True, now=now)
    [sent] = webhook_deliveries_retry_due(now=now)
    assert (sent.pk, sent.status) == (pending.pk, DeliveryStatus.SUCCEEDED)


def test_the_migration_keeps_the_key_of_an_existing_secret(merchant, now):
    # given an endpoint whose secret predates the whsec_ form (it was the HMAC key, byte for byte)
    from django.apps import apps

    migration = importlib.import_module("wallets.migrations.0007_webhooks_standard")
    endpoint = WebhookEndpointFactory(merchant=merchant)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret="legacy-secret")

    # when
    migration.secrets_to_standard_form(apps, None)

    # then the secret is standard and signs with the same key
    endpoint.refresh_from_db()
    assert endpoint.secret == "whsec_" + base64.b64encode(b"legacy-secret").decode()
    body = b'{"id":"evt_1"}'
    headers = webhook_headers(secrets=[endpoint.secret], msg_id="evt_1", timestamp=int(now.timestamp()), body=body)
    expected = hmac.new(b"legacy-secret", f"evt_1.{int(now.timestamp())}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()

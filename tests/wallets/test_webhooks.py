"""Webhooks: signed bodies a receiver can verify, sent after commit, retried with back-off.

Only a loopback server on 127.0.0.1 is contacted."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wallets.models import BalancePolicy, DeliveryStatus, WebhookDelivery
from wallets.services import credit_top_up, usage_debit, wallet_policy_update
from wallets.webhooks import (
    SIGNATURE_HEADER,
    WEBHOOK_MAX_ATTEMPTS,
    webhook_deliveries_retry_due,
    webhook_delivery_attempt,
    webhook_delivery_retry_now,
    webhook_event_emit,
    webhook_signature_header,
    webhook_signature_verify,
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


def test_a_delivered_body_verifies_with_the_endpoint_secret(receiver, merchant, now):
    # given
    endpoint = WebhookEndpointFactory(merchant=merchant, url=receiver.url, secret="whsec_abc")
    [delivery] = webhook_event_emit(merchant_id=merchant.pk, event_type="balance.low", data={"balance": "9"}, now=now)

    # when
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

    # then
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == (DeliveryStatus.SUCCEEDED, 1, 200)
    [(headers, body)] = receiver.requests
    signature = headers[SIGNATURE_HEADER]
    assert signature.startswith(f"t={int(now.timestamp())},v1=")
    assert webhook_signature_verify(secret=endpoint.secret, header=signature, body=body, now=now) is True
    assert webhook_signature_verify(secret="whsec_wrong", header=signature, body=body, now=now) is False
    assert webhook_signature_verify(secret=endpoint.secret, header=signature, body=body + b" ", now=now) is False
    assert (
        webhook_signature_verify(secret=endpoint.secret, header=signature, body=body, now=now + timedelta(minutes=6))
        is False
    )
    assert b'"type":"balance.low"' in body


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    # a fixed vector, so receivers in other languages can check their implementation
    header = webhook_signature_header(secret="whsec_test", timestamp=1700000000, body=b'{"id":"evt_1"}')
    assert header == "t=1700000000,v1=" + _hmac("whsec_test", b'1700000000.{"id":"evt_1"}')


def _hmac(secret, message):
    import hashlib
    import hmac

    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_failed_attempts_back_off_exponentially_then_give_up(receiver, merchant, now):
    # given an endpoint that answers 500 every time
    receiver.statuses = [500] * WEBHOOK_MAX_ATTEMPTS
    WebhookEndpointFactory(merchant=merchant, url=receiver.url)
    [delivery] = webhook_event_emit(merchant_id=merchant.pk, event_type="balance.low", data={}, now=now)

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
    delivery = webhook_delivery_retry_now(delivery=delivery, now=clock + timedelta(days=1))
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, WEBHOOK_MAX_ATTEMPTS + 1)


def test_an_unreachable_endpoint_is_retried(merchant, now):
    WebhookEndpointFactory(merchant=merchant, url="http://127.0.0.1:9/closed")  # discard port: refused
    [delivery] = webhook_event_emit(merchant_id=merchant.pk, event_type="balance.low", data={}, now=now)

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
    assert headers["Meterline-Event-Type"] == "balance.low"
    assert b'"balance":"4"' in body


def test_disabled_endpoints_get_nothing(merchant, now):
    WebhookEndpointFactory(merchant=merchant, enabled=False)
    assert webhook_event_emit(merchant_id=merchant.pk, event_type="balance.low", data={}, now=now) == []

"""Webhooks to merchants: signed JSON bodies, sent after commit, retried with exponential back-off.

Signing (verify on the receiving side, see README "Webhook signing"): the header
``Meterline-Signature: t=<unix seconds>,v1=<hex>`` where ``hex = HMAC-SHA256(secret, f"{t}." + body)``
over the exact request body bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction

from core.ids import new_public_id

from .metrics import WEBHOOK_DELIVERY_ATTEMPTS
from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

SIGNATURE_HEADER = "Meterline-Signature"
SIGNATURE_TOLERANCE = timedelta(minutes=5)
WEBHOOK_MAX_ATTEMPTS = 8
WEBHOOK_RETRY_BASE = timedelta(seconds=30)  # 30 s, 1 min, 2 min, 4 min … (attempt n waits base × 2^(n-1))
WEBHOOK_TIMEOUT_SECONDS = 10
# While one worker sends, the delivery is leased: nobody else picks it up until the lease runs out.
SEND_LEASE = timedelta(seconds=WEBHOOK_TIMEOUT_SECONDS * 3)

# Webhooks go straight to the merchant's URL, never through an environment proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def webhook_body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_signature_header(*, secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={webhook_signature(secret=secret, timestamp=timestamp, body=body)}"


def webhook_signature_verify(
    *, secret: str, header: str, body: bytes, now: datetime, tolerance: timedelta = SIGNATURE_TOLERANCE
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, parts.get("v1", ""))


def webhook_retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt."""
    return WEBHOOK_RETRY_BASE * (2 ** (attempts - 1))


def webhook_event_emit(*, merchant_id: str, event_type: str, data: dict, now: datetime) -> list[WebhookDelivery]:
    """Queue ``event_type`` for every enabled endpoint of the merchant that wants it; sending starts
    after the surrounding transaction commits (a rolled-back balance change notifies nobody)."""
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(merchant_id=merchant_id, enabled=True) if e.wants(event_type)
    ]
    if not endpoints:
        return []
    event_id = new_public_id("evt")
    payload = {"id": event_id, "type": event_type, "createdAt": now.isoformat(), "data": data}
    deliveries = [
        WebhookDelivery.objects.create(
            endpoint=endpoint, event_id=event_id, event_type=event_type, payload=payload, next_attempt_at=now
        )
        for endpoint in endpoints
    ]
    from .tasks import webhook_delivery_send_task

    for delivery in deliveries:
        transaction.on_commit(partial(webhook_delivery_send_task.delay, delivery.pk))
    return deliveries


def webhook_delivery_attempt(*, delivery_id: str, now: datetime) -> WebhookDelivery:
    """Send one pending delivery that is due, and record the result: delivered on 2xx; otherwise the
    next attempt waits ``webhook_retry_delay(attempts)``, and after ``WEBHOOK_MAX_ATTEMPTS`` it fails."""
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + SEND_LEASE)
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    if not claimed:
        return delivery  # delivered, given up, not due, or being sent by another worker
    body = webhook_body(delivery.payload)
    timestamp = int(now.timestamp())
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Meterline-Webhooks/1",
            SIGNATURE_HEADER: webhook_signature_header(secret=delivery.endpoint.secret, timestamp=timestamp, body=body),
            "Meterline-Event-Id": delivery.event_id,
            "Meterline-Event-Type": delivery.event_type,
        },
    )
    code, error = None, ""
    try:
        with _opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        error = str(getattr(exc, "reason", exc)) or type(exc).__name__
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_response_code = code
    delivery.last_error = error[:2000]
    if code is not None and 200 <= code < 300:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        result = "delivered"
    elif delivery.attempts >= WEBHOOK_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        result = "failed"
    else:
        delivery.next_attempt_at = now + webhook_retry_delay(delivery.attempts)
        result = "retry"
    delivery.save(
        update_fields=[
            "attempts",
            "last_attempt_at",
            "last_response_code",
            "last_error",
            "status",
            "delivered_at",
            "next_attempt_at",
        ]
    )
    WEBHOOK_DELIVERY_ATTEMPTS.labels(result=result).inc()
    return delivery


def webhook_deliveries_retry_due(*, now: datetime) -> list[WebhookDelivery]:
    """Attempt every pending delivery whose next attempt is due (the beat task calls this)."""
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now).order_by(
        "next_attempt_at", "id"
    )
    return [webhook_delivery_attempt(delivery_id=pk, now=now) for pk in list(due.values_list("pk", flat=True)[:500])]


def webhook_delivery_retry_now(*, delivery: WebhookDelivery, now: datetime) -> WebhookDelivery:
    """Admin "retry now": one more attempt immediately, even after the delivery gave up."""
    WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=DeliveryStatus.SUCCEEDED).update(
        status=DeliveryStatus.PENDING, next_attempt_at=now
    )
    return webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

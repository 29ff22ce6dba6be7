"""Webhooks to merchants, per the Standard Webhooks specification (https://www.standardwebhooks.com):
recorded with the change that caused them, sent after commit, retried with exponential back-off.

Every request carries ``webhook-id`` (the event id, the same on every attempt), ``webhook-timestamp``
(unix seconds of the attempt) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>``
where ``key`` is the base64-decoded part of the endpoint's ``whsec_…`` secret; after a rotation a
second, space-separated ``v1,…`` signs with the previous secret until it expires. Receivers verify with
the ``standardwebhooks`` or ``svix`` libraries (README "Webhook signing"); ``webhook_signature_verify``
is the same check in a few lines.

The body is ``{"id", "type", "timestamp", "data"}``. Event types are ``wallets.models.WebhookEventType``;
invoicing builds the data of its events (``invoicing/webhook_events.py``) and calls ``webhook_event_emit``
inside its own transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction

from catalog.models import Merchant
from core.formatting import iso_utc
from core.ids import new_public_id

from .metrics import WEBHOOK_DELIVERY_ATTEMPTS
from .models import (
    WEBHOOK_SECRET_PREFIX,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSettings,
    webhook_secret_new,
)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_TOLERANCE = timedelta(minutes=5)
# After a rotation the old secret keeps signing (beside the new one) this long: Svix's default.
PREVIOUS_SECRET_VALIDITY = timedelta(hours=24)
WEBHOOK_MAX_ATTEMPTS = 8
WEBHOOK_RETRY_BASE = timedelta(seconds=30)  # 30 s, 1 min, 2 min, 4 min … (attempt n waits base × 2^(n-1))
WEBHOOK_TIMEOUT_SECONDS = 10
# While one worker sends, the delivery is leased: nobody else picks it up until the lease runs out.
SEND_LEASE = timedelta(seconds=WEBHOOK_TIMEOUT_SECONDS * 3)

# Webhooks go straight to the merchant's URL, never through an environment proxy.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WebhooksAlreadyEnabled(Exception):
    """Webhooks were enabled before (the API answers 400 DUPLICATE_RESOURCE)."""

    def __init__(self):
        super().__init__("Webhooks are already set up for this merchant; turn them on or off with PATCH /v0/webhooks.")


class WebhooksNeverEnabled(Exception):
    """The merchant never enabled webhooks (the API answers 404)."""


# --- signing ------------------------------------------------------------------------------------------


def webhook_body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _key(secret: str) -> bytes:
    # As the Standard Webhooks libraries read it: padding added in case the base64 has none.
    return base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX) + "==")


def webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: ``v1,`` + base64 of HMAC-SHA256 over ``{msg_id}.{timestamp}.{body}``."""
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_signature_header(*, secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(webhook_signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets)


def webhook_headers(*, secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_signature_header(secrets=secrets, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def webhook_signature_verify(
    *, secret: str, headers: Mapping[str, str], body: bytes, now: datetime, tolerance: timedelta = SIGNATURE_TOLERANCE
) -> bool:
    """True when ``headers`` (any case) sign ``body`` with ``secret`` and their timestamp is within ``tolerance``
    of ``now``: the receiver's check of the Standard Webhooks libraries."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, signatures = lowered.get(ID_HEADER), lowered.get(SIGNATURE_HEADER, "")
    try:
        timestamp = int(lowered.get(TIMESTAMP_HEADER, ""))
        expected = webhook_signature(secret=secret, msg_id=msg_id or "", timestamp=timestamp, body=body)
    except (ValueError, binascii.Error):
        return False
    if not msg_id or abs(now.timestamp() - timestamp) > tolerance.total_seconds():
        return False
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" "))


def endpoint_signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets that sign a request now: the current one, and the previous one until it expires."""
    secrets = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        secrets.append(endpoint.previous_secret)
    return secrets


# --- the merchant's switch and endpoints ----------------------------------------------------------


def webhook_settings_get(*, merchant: Merchant) -> WebhookSettings:
    """The merchant's webhook settings; ``WebhooksNeverEnabled`` when webhooks were never enabled."""
    try:
        return WebhookSettings.objects.get(merchant=merchant)
    except WebhookSettings.DoesNotExist:
        raise WebhooksNeverEnabled from None


@transaction.atomic
def webhooks_enable(*, merchant: Merchant, now: datetime) -> WebhookSettings:
    """Turn webhooks on for the first time (the API's POST /v0/webhooks); once only: ``WebhooksAlreadyEnabled``."""
    settings, created = WebhookSettings.objects.get_or_create(
        merchant=merchant, defaults={"enabled": True, "created_at": now, "updated_at": now}
    )
    if not created:
        raise WebhooksAlreadyEnabled
    return settings


@transaction.atomic
def webhooks_update(*, merchant: Merchant, enabled: bool, now: datetime) -> WebhookSettings:
    """Pause (``enabled=False``) or resume delivery; endpoints and their subscriptions are kept. Deliveries
    that were pending when paused are sent by the next retry sweep after the switch is back on."""
    settings = WebhookSettings.objects.select_for_update().filter(merchant=merchant).first()
    if settings is None:
        raise WebhooksNeverEnabled
    settings.enabled = enabled
    settings.updated_at = now
    settings.save(update_fields=["enabled", "updated_at"])
    return settings


def webhook_endpoint_save(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Create or change an endpoint (URL, description, event types, enabled) after validating it."""
    endpoint.full_clean()
    endpoint.save()
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint with its deliveries and their attempts."""
    endpoint.delete()


@transaction.atomic
def webhook_endpoint_secret_rotate(*, endpoint: WebhookEndpoint, now: datetime) -> WebhookEndpoint:
    """A new signing secret; the old one keeps signing beside it for ``PREVIOUS_SECRET_VALIDITY``."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_VALIDITY
    endpoint.secret = webhook_secret_new()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint


# --- emitting events ----------------------------------------------------------------------------------


def webhook_endpoints_by_merchant(*, merchant_ids: Iterable[str]) -> dict[str, list[WebhookEndpoint]]:
    """The enabled endpoints of merchants whose webhooks are not paused, by merchant (one query). A
    billing run loads them once per chunk and hands them to ``webhook_event_emit``."""
    by_merchant: dict[str, list[WebhookEndpoint]] = defaultdict(list)
    endpoints = WebhookEndpoint.objects.filter(merchant_id__in=set(merchant_ids), enabled=True).exclude(
        merchant__webhook_settings__enabled=False
    )
    for endpoint in endpoints:
        by_merchant[endpoint.merchant_id].append(endpoint)
    return by_merchant


def webhook_event_id(*, merchant_id: str, event_type: str, key: str) -> str:
    """The id of the event ``event_type`` about ``key`` (e.g. an invoice id): the same on every call, so an
    emitter that runs twice (a retried task, a second code path) delivers the event once."""
    digest = hashlib.sha256(f"{merchant_id}\x00{event_type}\x00{key}".encode()).hexdigest()
    return f"evt_{digest[:32]}"


def webhook_event_emit(
    *,
    merchant_id: str,
    event_type: str,
    data: dict,
    now: datetime,
    key: str | None = None,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[WebhookDelivery]:
    """Record ``event_type`` for every enabled endpoint of the merchant that subscribes to it, unless the
    merchant paused webhooks; sending starts after the surrounding transaction commits (a rolled-back
    change notifies nobody). Run it inside the transaction of the change it reports.

    ``key`` names what the event is about (an invoice id, a payment id): the event id is derived from it
    and a (event, endpoint) pair that already exists is skipped, so the event is delivered exactly once;
    without ``key`` every call is a new event (e.g. each time a balance falls below its threshold).
    ``endpoints``: the merchant's endpoints from ``webhook_endpoints_by_merchant``, to spare the query.
    Returns the deliveries created."""
    if endpoints is None:
        endpoints = webhook_endpoints_by_merchant(merchant_ids=[merchant_id]).get(merchant_id, [])
    targets = [endpoint for endpoint in endpoints if endpoint.wants(event_type)]
    if not targets:
        return []
    event_id = (
        webhook_event_id(merchant_id=merchant_id, event_type=event_type, key=key) if key else new_public_id("evt")
    )
    payload = {"id": event_id, "type": event_type, "timestamp": iso_utc(now), "data": data}
    deliveries = [
        WebhookDelivery(
            endpoint=endpoint, event_id=event_id, event_type=event_type, payload=payload, next_attempt_at=now
        )
        for endpoint in targets
    ]
    if key:
        existing = set(
            WebhookDelivery.objects.filter(event_id=event_id, endpoint__in=targets).values_list(
                "endpoint_id", flat=True
            )
        )
        deliveries = [delivery for delivery in deliveries if delivery.endpoint_id not in existing]
    # The unique (event, endpoint) constraint has the last word when two emitters race.
    WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=bool(key))
    from .tasks import webhook_delivery_send_task

    for delivery in deliveries:
        transaction.on_commit(partial(webhook_delivery_send_task.delay, delivery.pk))
    return deliveries


# --- sending ------------------------------------------------------------------------------------------


def _sendable():
    """Deliveries that may be sent: endpoint enabled, merchant's webhooks not paused."""
    return WebhookDelivery.objects.filter(endpoint__enabled=True).exclude(
        endpoint__merchant__webhook_settings__enabled=False
    )


def webhook_delivery_attempt(
    *, delivery_id: str, now: datetime, replaying: str | None = None
) -> WebhookDelivery | None:
    """Send one pending delivery that is due, and record the result (and the attempt): delivered on 2xx;
    otherwise the next attempt waits ``webhook_retry_delay(attempts)``, and after ``WEBHOOK_MAX_ATTEMPTS``
    it fails. None when no such delivery exists (an emitter that lost a race to the unique constraint).
    ``replaying``: the status of a delivery sent again by hand, before it was (``webhook_delivery_replay``)."""
    claimed = (
        _sendable()
        .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .update(next_attempt_at=now + SEND_LEASE)
    )
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if not claimed or delivery is None:
        return delivery  # delivered, given up, not due, paused, or being sent by another worker
    body = webhook_body(delivery.payload)
    timestamp = int(now.timestamp())
    signing = endpoint_signing_secrets(delivery.endpoint, now=now)
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Meterline-Webhooks/2",
            **webhook_headers(secrets=signing, msg_id=delivery.event_id, timestamp=timestamp, body=body),
        },
    )
    code, error = None, ""
    try:
        with _opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
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
    elif replaying in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
        # A failed replay of a finished delivery changes only its last attempt: it keeps its status.
        delivery.status = replaying
        delivery.next_attempt_at = None
        result = "failed"
    elif delivery.attempts >= WEBHOOK_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        result = "failed"
    else:
        delivery.next_attempt_at = now + webhook_retry_delay(delivery.attempts)
        result = "retry"
    with transaction.atomic():
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
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            response_code=code,
            error=delivery.last_error,
            manual=replaying is not None,
        )
    WEBHOOK_DELIVERY_ATTEMPTS.labels(result=result).inc()
    return delivery


def webhook_retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt."""
    return WEBHOOK_RETRY_BASE * (2 ** (attempts - 1))


def webhook_deliveries_retry_due(*, now: datetime) -> list[WebhookDelivery]:
    """Attempt every pending delivery whose next attempt is due (the beat task calls this)."""
    due = (
        _sendable()
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)
    )
    attempted = (webhook_delivery_attempt(delivery_id=pk, now=now) for pk in list(due[:500]))
    return [delivery for delivery in attempted if delivery is not None]


def webhook_delivery_replay(*, delivery: WebhookDelivery, now: datetime) -> WebhookDelivery:
    """Send a delivery again now, whatever its state (the portal's "Replay", the admin's "Retry now"): the
    same ``webhook-id`` and body, freshly signed. Nothing is sent while the endpoint is disabled or the
    merchant's webhooks are paused."""
    with transaction.atomic():
        before = (
            _sendable().select_for_update(of=("self",)).filter(pk=delivery.pk).values_list("status", flat=True).first()
        )
        if before is None:  # paused or disabled: nothing to send
            return WebhookDelivery.objects.get(pk=delivery.pk)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, next_attempt_at=now)
    return webhook_delivery_attempt(delivery_id=delivery.pk, now=now, replaying=before) or delivery

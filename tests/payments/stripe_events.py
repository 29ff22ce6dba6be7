"""Stripe events as Stripe sends them, for the webhook tests: the event envelope around an object, signed the
way Stripe signs (``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
endpoint's whsec_ secret>``, Stripe's docs "Verify webhook signatures manually"), computed here independently
of the library that verifies it, and delivered over Django's test client."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time

from django.test import Client

from payments.models import PaymentAttempt

WEBHOOK_SECRET = "whsec_test_0123456789"  # stripe_connected's


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(kind: str, obj: dict, *, ident: str | None = None) -> dict:
    return {
        "id": ident or f"evt_test_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def deliver(integration, payload: dict | bytes, *, signature: str | None = None, client: Client | None = None):
    raw = payload if isinstance(payload, bytes) else body(payload)
    return (client or Client()).post(
        f"/webhooks/stripe/{integration.pk}",
        data=raw,
        content_type="application/json",
        headers={"Stripe-Signature": sign(raw) if signature is None else signature},
    )


def intent_of(stripe_server, attempt: PaymentAttempt | None = None, *, reference: str | None = None, **changes):
    """The PaymentIntent the local Stripe server holds for the attempt (as Stripe would put it in an event)."""
    if reference is None:
        [reference] = [
            ident
            for ident, intent in stripe_server.state.payment_intents.items()
            if intent["metadata"].get("meterline_invoice") == attempt.invoice_id
        ]
    return copy.deepcopy(stripe_server.state.payment_intents[reference]) | changes

"""``POST /webhooks/stripe/{integration}``: where a merchant's Stripe account sends its events (the endpoint's
address in Stripe's dashboard names our integration id; its signing secret ``whsec_…`` is saved on the
integration). Not the bearer-key API: no API key and no login; Stripe proves the delivery by its signature,
which the real library checks (``event_parse``: ``construct_event``, 5 minutes' tolerance). CSRF-exempt (a
server-to-server POST).

Answers (JSON): 200 handled, or acknowledged as a replay or an ignored type; 400 a missing or wrong signature,
a tampered or unreadable body (never handled); 404 no connected Stripe integration of that id; 413 a body over
``MAX_BODY_BYTES``; 503 the handling failed (recorded on the event; Stripe delivers again)."""

from __future__ import annotations

import logging

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import selectors
from ..gateway import integration_provider
from ..models import Provider
from ..providers import InvalidProviderEvent
from .receive import provider_event_receive

logger = logging.getLogger(__name__)

# Stripe's events are a few kilobytes (the object as it is, one level); 1 MiB leaves room for the largest
# objects and stays under Django's own bound on a request body (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB).
MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


@csrf_exempt
@require_POST
def stripe_webhook(request, integration_id: str):
    integration = selectors.integration_for_webhook(integration_id=integration_id, provider=Provider.STRIPE)
    if integration is None:
        return _error(404, "not_found", f"No connected Stripe integration {integration_id}.")
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error(400, "invalid_request", "The Content-Length header is not a number.")
    if length > MAX_BODY_BYTES:
        return _error(413, "payload_too_large", f"An event body is at most {MAX_BODY_BYTES} bytes.")
    signature = request.headers.get("Stripe-Signature", "")
    if not signature:
        return _error(400, "signature_missing", "The Stripe-Signature header is missing.")
    try:
        event = integration_provider(integration).event_parse(payload=request.body, signature=signature)
    except InvalidProviderEvent as error:
        return _error(400, "signature_invalid", f"The event was not verified: {error}")
    try:
        receipt = provider_event_receive(integration=integration, event=event, now=timezone.now())
    except Exception:  # a handler's error is recorded on the event; Stripe retries a failed delivery
        logger.exception("Stripe event %s (%s) for %s not handled", event.id, event.type, integration.pk)
        return _error(503, "handling_failed", f"Event {event.id} could not be handled now; deliver it again.")
    return JsonResponse(
        {"received": True, "id": event.id, "replay": receipt.replay, "outcome": receipt.event.outcome}, status=200
    )

"""A verified provider event, handled exactly once (``provider_event_receive``).

1. **Claim** (one short transaction): insert the event's ``ProviderEvent`` row, unique per integration and
   event id, or lock the one a former delivery inserted. Processed already: the delivery is a replay,
   acknowledged and ignored (its count goes up).
2. **Handle** (the handler's own transaction or transactions, never one around a provider call): the type's
   handler from the dispatch table; an unknown type is ``ignored``.
3. **Finish**: the outcome and ``processed_at``, or the error (then the caller answers 5xx, the provider
   delivers again, and step 2 runs again: every handler is safe to repeat).

Two deliveries of one event at the same moment may both handle it (the claim does not hold a lock across the
handler); the handlers converge on one effect by their own constraints and row locks, as they do for events
out of order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F

from ..models import MerchantIntegration, Provider, ProviderEvent
from .base import EventHandler, Handled, ParsedEvent, ignored
from .stripe_handlers import STRIPE_HANDLERS

HANDLERS: dict[str, dict[str, EventHandler]] = {Provider.STRIPE: STRIPE_HANDLERS}
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class EventReceipt:
    event: ProviderEvent
    replay: bool  # processed by an earlier delivery: nothing was done this time


def event_unknown(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled:
    return ignored(f"no handler for {event.type}")


def provider_event_receive(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> EventReceipt:
    """Handle a provider event whose signature the adapter verified (``event_parse``), once per event id.
    An exception of the handler is recorded on the event's row and raised again (the delivery must fail, so the
    provider retries)."""
    row, replay = _claim(integration=integration, event=event, now=now)
    if replay:
        return EventReceipt(event=row, replay=True)
    handler = HANDLERS.get(integration.provider, {}).get(event.type, event_unknown)
    try:
        handled = handler(integration=integration, event=event, now=now)
    except Exception as error:
        row.error = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
        row.save(update_fields=["error"])
        raise
    row.outcome = handled.outcome
    row.error = ""
    row.invoice_id = handled.invoice_id
    row.attempt_id = handled.attempt_id
    row.processed_at = now
    row.save(update_fields=["outcome", "error", "invoice", "attempt", "processed_at"])
    return EventReceipt(event=row, replay=False)


@transaction.atomic
def _claim(*, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> tuple[ProviderEvent, bool]:
    # get_or_create on the unique pair: of two first deliveries at once, the second waits for the first's
    # insert and reads its row; the lock then orders it behind the first's claim.
    row, created = ProviderEvent.objects.select_for_update().get_or_create(
        integration=integration,
        event_id=event.id,
        defaults={
            "provider": integration.provider,
            "type": event.type,
            "created_at": event.created_at,
            "received_at": now,
            "payload": event.object,
        },
    )
    if not created:
        ProviderEvent.objects.filter(pk=row.pk).update(deliveries=F("deliveries") + 1)
        row.refresh_from_db(fields=["deliveries"])
    return row, row.processed_at is not None

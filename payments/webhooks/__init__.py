"""Provider webhooks: ``POST /webhooks/stripe/{integration}`` (``views``), each event verified by the
integration's signing secret and handled once (``receive``), by a handler per event type (``stripe_handlers``).
payments/README.md, "Provider webhooks"."""

from .base import Handled
from .receive import EventReceipt, provider_event_receive

__all__ = ["EventReceipt", "Handled", "provider_event_receive"]

"""What an event handler answers (``Handled``) and the shape every handler has (``EventHandler``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..models import MerchantIntegration
from ..providers import ProviderEvent as ParsedEvent

IGNORED = "ignored"


@dataclass(frozen=True)
class Handled:
    """How one event was handled, kept on its ``ProviderEvent`` row for the admin: ``outcome`` in words
    (``ignored: …`` when the event changed nothing of ours), the invoice and attempt it concerned, if any."""

    outcome: str
    invoice_id: str | None = None
    attempt_id: str | None = None


class EventHandler(Protocol):
    def __call__(self, *, integration: MerchantIntegration, event: ParsedEvent, now: datetime) -> Handled: ...


def ignored(reason: str, **related) -> Handled:
    return Handled(outcome=f"{IGNORED}: {reason}", **related)

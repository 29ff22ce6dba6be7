"""What an idempotent request is remembered by besides its key: a digest of its canonical body, so that the
key replayed with another body is told apart (409) from a true replay (the first answer)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_fingerprint(canonical: dict[str, Any]) -> str:
    """SHA-256 of ``canonical`` as sorted-key JSON (64 hex characters). Values must already be JSON text
    forms (decimal strings, ISO timestamps): the digest is stored, so the form must not change."""
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


KEYS_DIFFER = "Differs from the Idempotency-Key header; send one key."


class IdempotencyKeysDiffer(ValueError):
    """The ``Idempotency-Key`` header and the body's ``idempotencyKey`` name two keys."""


def idempotency_key_given(*, header: str | None, body: str | None) -> str | None:
    """The key a request names: the ``Idempotency-Key`` header, else the body's ``idempotencyKey``; None when
    neither. Both given must agree (``IdempotencyKeysDiffer``)."""
    if header and body and header != body:
        raise IdempotencyKeysDiffer(KEYS_DIFFER)
    return header or body or None

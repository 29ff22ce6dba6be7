"""Provider secrets encrypted at rest: Fernet (AES-128-CBC + HMAC-SHA256, the ``cryptography`` library) with
the keys of ``settings.METERLINE_CREDENTIAL_KEYS``. MultiFernet encrypts with the first key and decrypts with
any, so a key is rotated by putting a new one in front (README "Credentials")."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialUnreadable(Exception):
    """A stored secret that none of the configured keys decrypts (a key was removed too early)."""


def _development_key() -> bytes:
    # DEBUG only: derived from SECRET_KEY, so a fresh `make run` stores and reads credentials without setup;
    # production refuses to start without METERLINE_CREDENTIAL_KEYS (settings/production.py).
    digest = hashlib.sha256(b"meterline-credentials:" + settings.SECRET_KEY.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _cipher() -> MultiFernet:
    keys = list(settings.METERLINE_CREDENTIAL_KEYS)
    if not keys:
        if not settings.DEBUG:
            raise ImproperlyConfigured("METERLINE_CREDENTIAL_KEYS is not set (payments/README.md, Credentials).")
        keys = [_development_key()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "METERLINE_CREDENTIAL_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None


def credential_encrypt(value: str) -> str:
    return _cipher().encrypt(value.encode()).decode()


def credential_decrypt(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialUnreadable("A stored provider secret cannot be decrypted with the configured keys.") from None


KNOWN_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_")


def credential_hint(value: str) -> str:
    """What is shown of a secret once saved: its kind (``sk_test_``, ``whsec_``) and its last four characters."""
    prefix = next((known for known in KNOWN_PREFIXES if value.startswith(known)), "")
    return f"{prefix}…{value[-4:]}"

"""Public identifiers: a type prefix and 16 random base-62 characters (``prod_3kT9…``).

They are URL-safe because the Paygentic client substitutes ids into paths without encoding.
"""

from __future__ import annotations

import functools
import secrets
import string

from django.db import models

_ALPHABET = string.ascii_letters + string.digits
_LETTERS = len(string.ascii_letters)  # the alphabet starts with its letters
ID_RANDOM_LENGTH = 16
# Bytes below these limits map uniformly onto 62 characters (or 52 letters) by remainder; others are
# rejected, so every character is equally likely.
_ANY_BELOW = 256 - 256 % len(_ALPHABET)
_LETTER_BELOW = 256 - 256 % _LETTERS


def new_public_id(prefix: str) -> str:
    """``prefix`` + "_" + 16 characters drawn uniformly from [A-Za-z0-9] with the OS's CSPRNG.

    One ``secrets.token_bytes`` read per id (``secrets.choice`` per character cost ~12 µs an id, a
    measurable part of a real-time debit, which creates several rows)."""
    # The character after "_" is always a letter: the admin reads "_" + two hex digits in a URL as an
    # escaped character (e.g. "_2F" is "/"), so an id like "cus_2Fab…" would otherwise need quoting.
    chosen: list[str] = []
    while len(chosen) < ID_RANDOM_LENGTH:
        for byte in secrets.token_bytes(24):  # ~3% of bytes rejected: 24 nearly always suffice
            if not chosen:
                if byte < _LETTER_BELOW:
                    chosen.append(_ALPHABET[byte % _LETTERS])
            elif byte < _ANY_BELOW:
                chosen.append(_ALPHABET[byte % len(_ALPHABET)])
                if len(chosen) == ID_RANDOM_LENGTH:
                    break
    return f"{prefix}_" + "".join(chosen)


class PublicIdField(models.CharField):
    """A primary key holding a prefixed random id, generated when the row is created."""

    def __init__(self, *args, prefix: str = "", **kwargs):
        self.prefix = prefix
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("primary_key", True)
        kwargs.setdefault("editable", False)
        kwargs["default"] = functools.partial(new_public_id, prefix)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        kwargs.pop("default", None)
        # Spell primary_key out: simple-history copies this field as a non-key column.
        kwargs["primary_key"] = self.primary_key
        kwargs["editable"] = self.editable
        return name, path, args, kwargs

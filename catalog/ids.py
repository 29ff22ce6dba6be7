"""Public identifiers: a type prefix and 16 random base-62 characters (``prod_3kT9…``).

They are URL-safe because the Paygentic client substitutes ids into paths without encoding.
"""

from __future__ import annotations

import functools
import secrets
import string

from django.db import models

_ALPHABET = string.ascii_letters + string.digits
ID_RANDOM_LENGTH = 16


def new_public_id(prefix: str) -> str:
    # The character after "_" is always a letter: the admin reads "_" + two hex digits in a URL as an
    # escaped character (e.g. "_2F" is "/"), so an id like "cus_2Fab…" would otherwise need quoting.
    first = secrets.choice(string.ascii_letters)
    return f"{prefix}_{first}" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_RANDOM_LENGTH - 1))


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

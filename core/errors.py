"""Exceptions every layer may raise and the API toolkit knows how to answer (core/api/errors.py)."""

from __future__ import annotations


class Conflict(Exception):
    """A write a domain service refused because other objects depend on the current state: the API answers
    409 with the exception's ``message``, ``code`` and ``details`` (e.g. ``catalog.services.CatalogConflict``)."""

    def __init__(self, message: str, *, code: str = "CONFLICT", details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details

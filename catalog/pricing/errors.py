"""Domain errors raised by the rating engine.

Every error that concerns a price names it (``price_id`` and ``name``) so a billing run
that fails can be traced to the catalog entry that needs fixing.
"""

from __future__ import annotations

from collections.abc import Sequence


class PricingError(ValueError):
    """Base class for every error raised by :mod:`catalog.pricing`."""

    def __init__(self, message: str, *, price_id: str | None = None, name: str | None = None) -> None:
        self.price_id = price_id
        self.name = name
        self.detail = message
        super().__init__(_with_price(message, price_id, name))


class InvalidPriceError(PricingError):
    """The price specification is inconsistent (unknown model, missing or contradictory fields)."""


class InvalidTierTableError(InvalidPriceError):
    """The tier table breaks one or more rules; ``messages`` lists them in finance-friendly wording."""

    def __init__(
        self, messages: Sequence[str], *, price_id: str | None = None, name: str | None = None
    ) -> None:
        self.messages = tuple(messages)
        super().__init__("; ".join(self.messages), price_id=price_id, name=name)


class InvalidUsageError(PricingError):
    """The usage handed to :func:`rate` cannot be priced (negative quantity, wrong shape for the model)."""


class UnknownCurrencyError(PricingError):
    """The currency code is not in the shipped ISO 4217 table."""


def _with_price(message: str, price_id: str | None, name: str | None) -> str:
    if price_id and name:
        return f"Price {name!r} ({price_id}): {message}"
    if price_id or name:
        return f"Price {(name or price_id)!r}: {message}"
    return message

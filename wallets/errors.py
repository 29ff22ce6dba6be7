"""Domain errors of the prepaid ledger. The API maps them to 4xx; invoicing refuses the event on them."""

from __future__ import annotations

from decimal import Decimal


class WalletError(Exception):
    """Base class: a wallet operation that cannot be carried out as asked."""


class InsufficientBalance(WalletError):
    """The block policy refuses a debit the credit cannot cover. Raised before anything is written."""

    def __init__(self, *, currency: str, available: Decimal, required: Decimal):
        self.currency = currency
        self.available = available
        self.required = required
        super().__init__(
            f"Insufficient prepaid credit: {required} {currency} required, {available} {currency} available."
        )


class LedgerImmutable(WalletError):
    """Ledger rows are append-only: they are never updated or deleted."""


class InvalidAmount(WalletError):
    """An amount that the operation does not accept (e.g. a grant of zero or less)."""


class CommittedRateRefused(InvalidAmount):
    """One of a commitment's committed rates (``number``, from 1) is refused; nothing was written."""

    def __init__(self, number: int, message: str):
        self.number = number
        super().__init__(f"Rate {number}: {message}")

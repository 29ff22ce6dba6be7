"""Refusals of the payments services that the API and the admin turn into answers."""

from __future__ import annotations


class PaymentsNotConnected(Exception):
    """The merchant has no active payment-provider integration (connect Stripe first)."""

    def __init__(self, message: str = "No payment provider is connected for this merchant: connect Stripe first."):
        super().__init__(message)
        self.message = message

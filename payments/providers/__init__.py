"""The payment-provider seam: what Meterline asks of a provider (``base.PaymentProvider``) and the adapters
that do it (``stripe.StripeProvider``). ``provider_for`` builds the adapter of a merchant's integration."""

from .base import (
    IDEMPOTENCY_KEY_LIFETIME,
    ChargeResult,
    ChargeStatus,
    HostedSession,
    InvalidProviderEvent,
    PaymentProvider,
    PaymentProviderError,
    ProviderEvent,
    RefundResult,
    SavedPaymentMethod,
    amount_from_minor_units,
    amount_in_minor_units,
)

__all__ = [
    "IDEMPOTENCY_KEY_LIFETIME",
    "ChargeResult",
    "ChargeStatus",
    "HostedSession",
    "InvalidProviderEvent",
    "PaymentProvider",
    "PaymentProviderError",
    "ProviderEvent",
    "RefundResult",
    "SavedPaymentMethod",
    "amount_from_minor_units",
    "amount_in_minor_units",
]

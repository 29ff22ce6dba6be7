"""What Meterline asks of a payment provider, in its own terms: amounts are Decimals in a currency, times are
aware datetimes, and every call that creates something at the provider carries an idempotency key, so a retry
(of the network call, the task or the whole request) never creates it twice. Adapters translate to their
provider's wire (Stripe: minor units, Unix seconds) and raise ``PaymentProviderError`` for every refusal."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from catalog.pricing.currency import minor_units


class PaymentProviderError(Exception):
    """The provider refused or could not be reached. ``code`` is the provider's (``card_declined``,
    ``resource_missing``, ``api_connection_error``…); ``retryable`` says whether the same call may succeed
    later (network trouble, rate limits), as opposed to a refusal that needs a change first."""

    def __init__(self, message: str, *, code: str = "", retryable: bool = False, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.http_status = http_status


class InvalidProviderEvent(Exception):
    """A provider event whose signature does not verify, or that is too old or unreadable: never processed."""


class ChargeStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PROCESSING = "processing"  # bank debits: the money is on its way, the outcome comes as an event
    REQUIRES_ACTION = "requires_action"  # the customer must authenticate (3-D Secure) on a hosted page
    FAILED = "failed"  # declined: another method or a later retry is needed


@dataclass(frozen=True)
class SavedPaymentMethod:
    reference: str  # the provider's id (Stripe: pm_…)
    type: str  # card, sepa_debit, us_bank_account…
    created_at: datetime
    brand: str = ""
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    reference: str  # the provider's payment (Stripe: pi_…); "" when the provider created none
    amount: Decimal
    currency: str
    failure_code: str = ""  # the provider's decline code (insufficient_funds, authentication_required…)
    failure_message: str = ""


@dataclass(frozen=True)
class HostedSession:
    reference: str  # Stripe: cs_…
    url: str
    expires_at: datetime


# Stripe keeps an idempotency key for at least 24 hours after its first use; a call replayed later than this
# after the first may be taken as new, so callers look for what the first call made before replaying it.
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=23)


@dataclass(frozen=True)
class RefundResult:
    reference: str  # Stripe: re_…
    status: str  # succeeded, pending, failed
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class ProviderEvent:
    id: str  # unique per provider account: the key of exactly-once handling
    type: str  # payment_intent.succeeded, checkout.session.completed…
    created_at: datetime
    object: dict[str, Any] = field(default_factory=dict)


class PaymentProvider(Protocol):
    """A payment provider as Meterline uses it (one merchant's account)."""

    name: str

    def customer_create(self, *, customer_id: str, name: str, email: str, idempotency_key: str) -> str:
        """Create the provider's customer for one of ours; returns its reference (Stripe: cus_…)."""
        ...

    def payment_method_setup(
        self, *, provider_customer: str, payment_method: str, idempotency_key: str
    ) -> SavedPaymentMethod:
        """Save a payment method (a token or id from the provider's own page or SDK) for off-session charges."""
        ...

    def payment_methods_list(self, *, provider_customer: str) -> list[SavedPaymentMethod]:
        """The methods saved for the customer at the provider, oldest first."""
        ...

    def invoice_charge(
        self,
        *,
        provider_customer: str,
        payment_method: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> ChargeResult:
        """Charge a saved method off-session (the customer is not there). A decline is a FAILED result, not
        an exception; ``PaymentProviderError`` means the provider could not decide (retry with the same key)."""
        ...

    def charge_find(self, *, provider_customer: str, metadata: dict[str, str]) -> ChargeResult | None:
        """The off-session charge made for ``provider_customer`` whose metadata holds every pair of
        ``metadata``, as ``invoice_charge`` answered it; None when there is none. For a charge whose
        idempotency key the provider may have forgotten (Stripe keeps keys 24 hours)."""
        ...

    def session_create(
        self,
        *,
        mode: str,
        provider_customer: str,
        currency: str,
        success_url: str,
        cancel_url: str,
        expires_at: datetime,
        idempotency_key: str,
        amount: Decimal | None = None,
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> HostedSession:
        """A hosted page where the customer pays ``amount`` (mode ``payment``) or saves a method (``setup``)."""
        ...

    def session_retrieve(self, *, reference: str) -> dict[str, Any]:
        """The hosted session as the provider has it now (Stripe: the Checkout Session object, the same shape
        as the ``object`` of its ``checkout.session.completed`` event): what the success page reads when the
        customer comes back before the webhook."""
        ...

    def setup_intent_payment_method(self, *, reference: str) -> str:
        """The payment method a setup (Stripe: the SetupIntent ``seti_…`` of a completed setup-mode Checkout
        Session) saved: what the customer gave on the hosted page. Empty when it saved none."""
        ...

    def refund(
        self,
        *,
        charge_reference: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> RefundResult:
        """Give back (part of) a succeeded charge."""
        ...

    def refund_find(self, *, charge_reference: str, metadata: dict[str, str]) -> RefundResult | None:
        """The refund of ``charge_reference`` whose metadata holds every pair of ``metadata``; None when there
        is none. For a refund whose idempotency key the provider may have forgotten."""
        ...

    def event_parse(self, *, payload: bytes, signature: str) -> ProviderEvent:
        """Verify a webhook delivery's signature and read its event; ``InvalidProviderEvent`` if it fails."""
        ...


def amount_in_minor_units(amount: Decimal, currency: str) -> int:
    """``Decimal("12.34")`` USD → 1234. Refuses a fraction of the minor unit: amounts are rounded once, on
    the invoice, never again on the way to the provider."""
    scaled = amount.scaleb(minor_units(currency.upper()))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


def amount_from_minor_units(value: int, currency: str) -> Decimal:
    return Decimal(value).scaleb(-minor_units(currency.upper()))

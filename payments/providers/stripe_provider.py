"""The Stripe adapter of the payment-provider seam, on the official ``stripe`` library's ``StripeClient``:
one client per merchant's secret key, pointed at ``settings.STRIPE_API_BASE`` (Stripe, or the tests' local
server), never the library's module-level globals (two merchants' calls may run in one process at once).

Every create call carries an idempotency key from the caller (an invoice id, a session id…): the library
retries a dropped connection with the same key, and a retried task sends it again, so Stripe returns the first
object instead of creating a second one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings

from .base import (
    ChargeResult,
    ChargeStatus,
    HostedSession,
    InvalidProviderEvent,
    PaymentProviderError,
    ProviderEvent,
    RefundResult,
    SavedPaymentMethod,
    amount_from_minor_units,
    amount_in_minor_units,
)

# Errors the same call may overcome later (Stripe's advice: retry with the same idempotency key).
_RETRYABLE = (stripe.APIConnectionError, stripe.RateLimitError)
CHARGE_LOOKUP_LIMIT = 1000


def _when(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def _provider_error(error: stripe.StripeError) -> PaymentProviderError:
    status = error.http_status
    retryable = isinstance(error, _RETRYABLE) or (status is not None and status >= 500)
    code = error.code or ("api_connection_error" if isinstance(error, stripe.APIConnectionError) else "")
    return PaymentProviderError(
        error.user_message or str(error) or "Stripe refused the request",
        code=code or "",
        retryable=retryable,
        http_status=status,
    )


def _method(data: dict[str, Any]) -> SavedPaymentMethod:
    kind = data.get("type") or ""
    details = data.get(kind) or {}
    return SavedPaymentMethod(
        reference=data["id"],
        type=kind,
        created_at=_when(data["created"]),
        brand=details.get("brand") or details.get("bank_name") or "",
        last4=details.get("last4") or "",
        exp_month=details.get("exp_month"),
        exp_year=details.get("exp_year"),
    )


class StripeProvider:
    """One Stripe account, reached with ``secret_key`` (``sk_test_…``/``sk_live_…`` or a restricted ``rk_…``)."""

    name = "stripe"

    def __init__(self, *, secret_key: str, webhook_secret: str = "", api_base: str | None = None):
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base or settings.STRIPE_API_BASE},
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        )
        self._webhook_secret = webhook_secret

    def customer_create(self, *, customer_id: str, name: str, email: str, idempotency_key: str) -> str:
        try:
            created = self._client.v1.customers.create(
                {"name": name, "email": email, "metadata": {"meterline_customer": customer_id}},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return created.id

    def payment_method_setup(
        self, *, provider_customer: str, payment_method: str, idempotency_key: str
    ) -> SavedPaymentMethod:
        # A SetupIntent confirmed at once: Stripe attaches the method to the customer and records the
        # customer's consent to later off-session charges (usage=off_session), which a bare attach does not.
        try:
            intent = self._client.v1.setup_intents.create(
                {
                    "customer": provider_customer,
                    "payment_method": payment_method,
                    "confirm": True,
                    "usage": "off_session",
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    "expand": ["payment_method"],
                },
                {"idempotency_key": idempotency_key},
            ).to_dict()
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        if intent["status"] != "succeeded":
            # requires_action: the bank wants the customer to authenticate, on a hosted page (setup session).
            raise PaymentProviderError(
                f"Stripe could not save the payment method without the customer ({intent['status']}).",
                code="authentication_required" if intent["status"] == "requires_action" else intent["status"],
            )
        return _method(intent["payment_method"])

    def payment_methods_list(self, *, provider_customer: str) -> list[SavedPaymentMethod]:
        try:
            page = self._client.v1.payment_methods.list({"customer": provider_customer, "limit": 100})
            # every page: the library follows has_more with starting_after
            methods = [_method(item.to_dict()) for item in page.auto_paging_iter()]
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return sorted(methods, key=lambda method: (method.created_at, method.reference))

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
        params: dict[str, Any] = {
            "amount": amount_in_minor_units(amount, currency),
            "currency": currency.lower(),
            "customer": provider_customer,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
            "metadata": metadata or {},
        }
        if description:
            params["description"] = description
        try:
            intent = self._client.v1.payment_intents.create(params, {"idempotency_key": idempotency_key}).to_dict()
        except stripe.CardError as error:
            # Stripe answers a declined off-session charge with 402 and the PaymentIntent it created; a card
            # that needs 3-D Secure is declined off-session with ``authentication_required``.
            body = (error.json_body or {}).get("error", {})
            intent = body.get("payment_intent") or {}
            reason = body.get("decline_code") or error.code or "card_declined"
            status = ChargeStatus.REQUIRES_ACTION if error.code == "authentication_required" else ChargeStatus.FAILED
            return ChargeResult(
                status=status,
                reference=intent.get("id", ""),
                amount=amount,
                currency=currency,
                failure_code=reason,
                failure_message=error.user_message or body.get("message", ""),
            )
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return self._charge_result(intent, amount=amount, currency=currency)

    def charge_find(self, *, provider_customer: str, metadata: dict[str, str]) -> ChargeResult | None:
        # Newest first, at most CHARGE_LOOKUP_LIMIT of the customer's PaymentIntents: the charge looked for is
        # a day or two old, and a customer has a handful of charges a month.
        try:
            page = self._client.v1.payment_intents.list({"customer": provider_customer, "limit": 100})
            for number, item in enumerate(page.auto_paging_iter()):
                if number >= CHARGE_LOOKUP_LIMIT:
                    break
                intent = item.to_dict()
                if all((intent.get("metadata") or {}).get(k) == v for k, v in metadata.items()):
                    currency = intent["currency"].upper()
                    return self._charge_result(
                        intent, amount=amount_from_minor_units(intent["amount"], currency), currency=currency
                    )
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return None

    @staticmethod
    def _charge_result(intent: dict[str, Any], *, amount: Decimal, currency: str) -> ChargeResult:
        status = {
            "succeeded": ChargeStatus.SUCCEEDED,
            "processing": ChargeStatus.PROCESSING,
            "requires_action": ChargeStatus.REQUIRES_ACTION,
        }.get(intent["status"], ChargeStatus.FAILED)
        failure = intent.get("last_payment_error") or {} if status is ChargeStatus.FAILED else {}
        if failure.get("code") == "authentication_required":
            # read as invoice_charge reads Stripe's 402: the card wants 3-D Secure, off-session
            status = ChargeStatus.REQUIRES_ACTION
        return ChargeResult(
            status=status,
            reference=intent["id"],
            amount=amount_from_minor_units(intent["amount"], currency),
            currency=currency,
            failure_code=failure.get("decline_code") or failure.get("code") or "",
            failure_message=failure.get("message") or "",
        )

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
        params: dict[str, Any] = {
            "mode": mode,
            "customer": provider_customer,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": int(expires_at.timestamp()),
            "metadata": metadata or {},
        }
        if mode == "payment":
            if amount is None:
                raise ValueError("a payment session needs an amount")
            params["line_items"] = [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount_in_minor_units(amount, currency),
                        "product_data": {"name": description or "Payment"},
                    },
                }
            ]
            # The method paid with is kept for later off-session charges (auto-charge).
            params["payment_intent_data"] = {"setup_future_usage": "off_session", "metadata": metadata or {}}
        else:
            params["currency"] = currency.lower()
            params["setup_intent_data"] = {"metadata": metadata or {}}
        try:
            session = self._client.v1.checkout.sessions.create(params, {"idempotency_key": idempotency_key})
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return HostedSession(reference=session.id, url=session.url, expires_at=_when(session.expires_at))

    def session_retrieve(self, *, reference: str) -> dict[str, Any]:
        try:
            return self._client.v1.checkout.sessions.retrieve(reference).to_dict()
        except stripe.StripeError as error:
            raise _provider_error(error) from error

    def setup_intent_payment_method(self, *, reference: str) -> str:
        try:
            intent = self._client.v1.setup_intents.retrieve(reference)
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        method = intent.payment_method
        return (method if isinstance(method, str) else method.id) if method else ""

    def refund(
        self,
        *,
        charge_reference: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        metadata: dict[str, str] | None = None,
    ) -> RefundResult:
        params: dict[str, Any] = {"payment_intent": charge_reference, "amount": amount_in_minor_units(amount, currency)}
        if metadata:
            params["metadata"] = metadata
        try:
            refund = self._client.v1.refunds.create(params, {"idempotency_key": idempotency_key})
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return RefundResult(
            reference=refund.id,
            status=refund.status,
            amount=amount_from_minor_units(refund.amount, currency),
            currency=currency,
        )

    def refund_find(self, *, charge_reference: str, metadata: dict[str, str]) -> RefundResult | None:
        # A charge has a handful of refunds: every page is read.
        try:
            page = self._client.v1.refunds.list({"payment_intent": charge_reference, "limit": 100})
            for item in page.auto_paging_iter():
                refund = item.to_dict()
                if all((refund.get("metadata") or {}).get(k) == v for k, v in metadata.items()):
                    currency = refund["currency"].upper()
                    return RefundResult(
                        reference=refund["id"],
                        status=refund["status"],
                        amount=amount_from_minor_units(refund["amount"], currency),
                        currency=currency,
                    )
        except stripe.StripeError as error:
            raise _provider_error(error) from error
        return None

    def event_parse(self, *, payload: bytes, signature: str) -> ProviderEvent:
        if not self._webhook_secret:
            raise InvalidProviderEvent("no webhook signing secret is configured for this integration")
        try:
            event = self._client.construct_event(payload, signature, self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise InvalidProviderEvent(str(error)) from error
        data = event.to_dict()
        return ProviderEvent(
            id=data["id"], type=data["type"], created_at=_when(data["created"]), object=data["data"]["object"]
        )

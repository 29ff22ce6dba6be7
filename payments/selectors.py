"""Reads of the payments app."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import F, QuerySet, Sum
from django.shortcuts import get_object_or_404

from catalog.models import Customer, Merchant
from invoicing.models import CreditNote, CreditNoteSettlement, CreditNoteStatus, InvoiceKind, Payment

from .models import (
    IntegrationStatus,
    MerchantIntegration,
    PaymentAttempt,
    PaymentMethod,
    PaymentSession,
    Provider,
    ProviderCustomer,
    ProviderRefund,
)


def integration_list(*, merchant: Merchant, provider: str | None = None) -> QuerySet[MerchantIntegration]:
    rows = MerchantIntegration.objects.filter(merchant=merchant)
    if provider:
        rows = rows.filter(provider=provider)
    return rows.order_by("created_at", "id")


def integration_get(*, merchant: Merchant, integration_id: str) -> MerchantIntegration:
    """The merchant's integration; another merchant's is a 404, like a missing one."""
    return get_object_or_404(MerchantIntegration, pk=integration_id, merchant=merchant)


def integration_active(*, merchant_id: str, provider: str = Provider.STRIPE) -> MerchantIntegration | None:
    return MerchantIntegration.objects.filter(
        merchant_id=merchant_id, provider=provider, status=IntegrationStatus.ACTIVE
    ).first()


def provider_customer_get(*, integration: MerchantIntegration, customer: Customer) -> ProviderCustomer | None:
    return ProviderCustomer.objects.filter(integration=integration, customer=customer, mode=integration.mode).first()


def payment_method_list(*, customer: Customer) -> QuerySet[PaymentMethod]:
    """The customer's current methods (not detached), oldest first, of the mode its merchant's integration is
    in now (after a switch to live keys the test-mode cards are not listed). One query."""
    return PaymentMethod.objects.filter(
        customer=customer,
        detached_at__isnull=True,
        provider_customer__mode=F("provider_customer__integration__mode"),
    ).order_by("created_at", "id")


def payment_method_default(*, customer: Customer) -> PaymentMethod | None:
    """The method an off-session charge of the customer uses."""
    return payment_method_list(customer=customer).filter(is_default=True).first()


def payment_attempts_for_invoice(*, invoice_id: str) -> QuerySet[PaymentAttempt]:
    """The invoice's charge attempts, first first, with the method each charged and its customer e-mail (one
    query)."""
    return (
        PaymentAttempt.objects.filter(invoice_id=invoice_id)
        .select_related("payment_method__customer", "notice")
        .order_by("number")
    )


def provider_refunds_for_invoice(*, invoice_id: str) -> QuerySet[ProviderRefund]:
    """The refunds of the invoice's card payments sent through the provider, each try (one query)."""
    return (
        ProviderRefund.objects.filter(credit_note__invoice_id=invoice_id)
        .select_related("credit_note")
        .order_by("created_at", "credit_note__number", "payment_id", "number")
    )


def payment_list(*, merchant: Merchant, customer_id: str | None = None, received: bool = True) -> QuerySet[Payment]:
    """The merchant's payments received (out of band or by card), newest received first, with their
    allocations (two queries a page). ``received=False`` (a status other than completed): none."""
    rows = Payment.objects.filter(merchant=merchant).prefetch_related("allocations")
    if customer_id:
        rows = rows.filter(customer_id=customer_id)
    if not received:
        rows = rows.none()
    return rows.order_by("-received_at", "-recorded_at", "-id")


def payment_get(*, merchant: Merchant, payment_id: str) -> Payment:
    """One of the merchant's payments; another merchant's is a 404, like a missing one."""
    return get_object_or_404(payment_list(merchant=merchant), pk=payment_id)


def integration_for_webhook(*, integration_id: str, provider: str) -> MerchantIntegration | None:
    """The connected integration a provider's webhook names in its path; None for an unknown, another
    provider's or a disconnected one (its secrets are erased: nothing could verify the delivery)."""
    return MerchantIntegration.objects.filter(
        pk=integration_id, provider=provider, status=IntegrationStatus.ACTIVE
    ).first()


def attempt_for_provider_payment(
    *, merchant_id: str, reference: str, metadata: dict[str, Any] | None = None
) -> PaymentAttempt | None:
    """The merchant's charge attempt of a provider payment (Stripe: a PaymentIntent): by its reference once the
    charge call's answer is recorded, else by the ``meterline_invoice``/``meterline_attempt`` metadata the charge
    sent (the call has not returned yet, or its worker died before recording it)."""
    attempts = PaymentAttempt.objects.filter(invoice__merchant_id=merchant_id)
    found = attempts.filter(reference=reference).first() if reference else None
    if found is not None or not metadata:
        return found
    invoice_id, number = metadata.get("meterline_invoice"), str(metadata.get("meterline_attempt") or "")
    if not invoice_id or not number.isdigit():
        return None
    return attempts.filter(invoice_id=invoice_id, number=int(number)).first()


def invoice_refunds_recorded(*, invoice_id: str) -> Decimal:
    """What Meterline's own refunds of the invoice (issued refund credit notes) paid back."""
    total = CreditNote.objects.filter(
        invoice_id=invoice_id, status=CreditNoteStatus.ISSUED, settlement=CreditNoteSettlement.REFUND
    ).aggregate(total=Sum("refunded"))["total"]
    return total or Decimal(0)


def payment_session_list(
    *,
    merchant: Merchant,
    subscription_id: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
    entity_type: str | None = None,
) -> QuerySet[PaymentSession]:
    """The merchant's hosted sessions (setup and payment mode), newest first, with what their answer reads
    (customer, invoice, integration) in the same query. ``entity_type``: ``subscription`` (Invoice 0 of a
    subscription), ``invoice`` (any other invoice), ``customer`` (setup sessions); the client's ``payment``
    and ``topup`` match nothing yet."""
    rows = PaymentSession.objects.filter(merchant=merchant).select_related(
        "customer", "invoice", "provider_customer__integration"
    )
    if subscription_id:
        rows = rows.filter(invoice__subscription_id=subscription_id)
    if customer_id:
        rows = rows.filter(customer_id=customer_id)
    if status:
        rows = rows.filter(status=status)
    if entity_type == "subscription":
        rows = rows.filter(invoice__kind=InvoiceKind.OPENING)
    elif entity_type == "invoice":
        rows = rows.filter(invoice__isnull=False).exclude(invoice__kind=InvoiceKind.OPENING)
    elif entity_type == "customer":
        rows = rows.filter(invoice__isnull=True)
    elif entity_type:
        rows = rows.none()
    return rows.order_by("-created_at", "-id")


def payment_session_get(*, merchant: Merchant, session_id: str) -> PaymentSession:
    """The merchant's session; another merchant's is a 404, like a missing one."""
    return get_object_or_404(
        PaymentSession.objects.select_related("customer", "invoice", "provider_customer__integration"),
        pk=session_id,
        merchant=merchant,
    )

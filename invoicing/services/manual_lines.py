"""Manual line items (``POST /v2/invoices/lineItems``): an ad-hoc charge or credit added to the next
invoice of a subscription (pending until the billing run closes the period it falls in, see
``runs._close_one``) or written at once on a draft (recomputed like a refresh).

Idempotent per merchant by key: the ``Idempotency-Key`` header, else the body's ``idempotencyKey``, else a
generated one. A replay with the same body returns the first item; the same key with another body is a
``ManualLineConflict`` (409 ``IDEMPOTENCY_KEY_REUSED``); the unique constraint on (merchant, key) decides
between concurrent first requests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from catalog.models import Merchant, Subscription, SubscriptionStatus
from catalog.pricing import round_money
from catalog.pricing.currency import CTX
from core.formatting import decimal_string
from core.idempotency import IdempotencyKeysDiffer, idempotency_key_given, request_fingerprint

from ..calculation import SUBSCRIPTION_RELATED, manual_line_draft, subscription_now
from ..models import (
    MANUAL_AMOUNT_MAX,
    MANUAL_QUANTITY_MAX,
    MANUAL_UNIT_PRICE_MAX,
    Invoice,
    InvoiceError,
    InvoiceStatus,
    ManualLineItem,
)
from .invoice_states import invoice_draft_add_line, locked_invoice


class ManualLineError(InvoiceError):
    """Bad input for a manual line; ``field`` is the wire field to blame."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class ManualLineConflict(InvoiceError):
    """A manual line refused by the current state (a reused key, a terminated subscription, an issued invoice)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ManualLineInput:
    display_name: str
    currency: str
    quantity: Decimal
    unit_price: Decimal
    description: str = ""
    item_id: str = ""
    invoice_at: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


def manual_line_amount(*, quantity: Decimal, unit_price: Decimal, currency: str, rounding: str) -> Decimal:
    """quantity × unit price, checked against the documented bounds and rounded once to the minor unit."""
    if not Decimal(0) < quantity <= MANUAL_QUANTITY_MAX:
        raise ManualLineError(f"Must be above 0 and at most {decimal_string(MANUAL_QUANTITY_MAX)}.", field="quantity")
    if abs(unit_price) > MANUAL_UNIT_PRICE_MAX:
        raise ManualLineError(
            f"Must lie between -{decimal_string(MANUAL_UNIT_PRICE_MAX)} and {decimal_string(MANUAL_UNIT_PRICE_MAX)}.",
            field="unitPrice",
        )
    amount = round_money(CTX.multiply(quantity, unit_price), currency, rounding)
    if abs(amount) > MANUAL_AMOUNT_MAX:
        raise ManualLineError(
            f"quantity × unitPrice must lie within ±{decimal_string(MANUAL_AMOUNT_MAX)}.", field="unitPrice"
        )
    return amount


def _fingerprint(target: str, data: ManualLineInput) -> str:
    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    canonical = {
        "target": target,
        "displayName": data.display_name,
        "description": data.description,
        "itemId": data.item_id,
        "currency": data.currency,
        "quantity": decimal_string(data.quantity),
        "unitPrice": decimal_string(data.unit_price),
        "invoiceAt": moment(data.invoice_at),
        "periodStart": moment(data.period_start),
        "periodEnd": moment(data.period_end),
    }
    return request_fingerprint(canonical)


def idempotency_key_choose(*, header: str | None, body: str | None) -> str:
    """The key a request is known by: the header, else the body's, else a new one. Both given must agree."""
    try:
        key = idempotency_key_given(header=header, body=body)
    except IdempotencyKeysDiffer as error:
        raise ManualLineError(str(error), field="idempotencyKey") from None
    return key or f"gen_{uuid.uuid4().hex}"


def _replay(*, merchant: Merchant, key: str, fingerprint: str) -> ManualLineItem | None:
    existing = ManualLineItem.objects.filter(merchant=merchant, idempotency_key=key).first()
    if existing is not None and existing.fingerprint != fingerprint:
        raise ManualLineConflict("This idempotency key was used for another line item.", code="IDEMPOTENCY_KEY_REUSED")
    return existing


def manual_line_item_create(
    *,
    merchant: Merchant,
    data: ManualLineInput,
    idempotency_key: str,
    now: datetime,
    subscription: Subscription | None = None,
    invoice: Invoice | None = None,
) -> tuple[ManualLineItem, bool]:
    """Record a manual line for the next invoice of ``subscription`` or on the draft ``invoice`` (exactly
    one of them); returns the item and whether it is a replay of ``idempotency_key``."""
    if (subscription is None) == (invoice is None):
        raise ManualLineError("Give exactly one of subscriptionId and invoiceId.", field="subscriptionId")
    target = f"sub:{subscription.pk}" if subscription is not None else f"inv:{invoice.pk}"
    fingerprint = _fingerprint(target, data)
    existing = _replay(merchant=merchant, key=idempotency_key, fingerprint=fingerprint)
    if existing is not None:
        return existing, True
    try:
        with transaction.atomic():
            if invoice is not None:
                invoice = locked_invoice(invoice)
                if invoice.status != InvoiceStatus.DRAFT:
                    raise ManualLineConflict(
                        f"Invoice {invoice} is {invoice.status}; manual lines are added to drafts only.",
                        code="INVOICE_NOT_DRAFT",
                    )
                subscription = invoice.subscription
            sub = Subscription.objects.select_for_update(of=("self",)).select_related(*SUBSCRIPTION_RELATED)
            sub = sub.get(pk=subscription.pk)
            currency = invoice.currency if invoice is not None else sub.plan.currency
            if data.currency.upper() != currency:
                raise ManualLineError(
                    f"Must be {currency}, the currency of the {'invoice' if invoice else 'subscription'}.",
                    field="currency",
                )
            if invoice is None and sub.status == SubscriptionStatus.TERMINATED:
                raise ManualLineConflict(
                    "The subscription is terminated; it has no next invoice. Use a one-off invoice.",
                    code="SUBSCRIPTION_TERMINATED",
                )
            amount = manual_line_amount(
                quantity=data.quantity,
                unit_price=data.unit_price,
                currency=currency,
                rounding=sub.merchant.rounding_mode,
            )
            at = subscription_now(sub, now)
            period_start = data.period_start or at
            period_end = data.period_end or at
            if period_end < period_start:
                raise ManualLineError("Must not be before periodStart.", field="periodEnd")
            item = ManualLineItem(
                merchant=merchant,
                customer_id=sub.customer_id,
                subscription=sub,
                invoice=invoice,
                target_invoice=invoice is not None,
                display_name=data.display_name,
                description=data.description,
                item_id=data.item_id,
                currency=currency,
                quantity=data.quantity,
                unit_price=data.unit_price,
                amount=amount,
                invoice_at=data.invoice_at if invoice is None and data.invoice_at is not None else at,
                period_start=period_start,
                period_end=period_end,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                created_at=now,
                updated_at=now,
            )
            with transaction.atomic():
                item.save(force_insert=True)
            if invoice is not None:
                invoice_draft_add_line(invoice=invoice, line=manual_line_draft(item))
    except IntegrityError:
        existing = _replay(merchant=merchant, key=idempotency_key, fingerprint=fingerprint)
        if existing is None:
            raise
        return existing, True
    return item, False

"""Prepaid credit sold on an invoice (``CreditPurchase``): a top-up or reserved capacity. Invoicing writes
the invoice and records the purchase in its transaction (``credit_purchase_record``); the credit lot is
added by ``credit_purchase_fulfil`` when the invoice is paid, or at once for a customer trusted with credit
before payment. Lock order: the purchase row, then the wallet (``credit_lot_add``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from catalog.models import BillableMetric, Customer

from ..errors import InvalidAmount
from ..models import CreditLot, CreditPurchase, CreditPurchaseKind, EntryKind, LotKind
from .credit import IdempotencyConflict, credit_lot_add
from .ledger import ledger_amount

_KINDS = {
    CreditPurchaseKind.TOP_UP: (EntryKind.TOP_UP, LotKind.TOP_UP),
    CreditPurchaseKind.RESERVED: (EntryKind.RESERVED_PURCHASE, LotKind.RESERVED),
}


def credit_purchase_check(
    *,
    customer: Customer,
    kind: str,
    amount: Decimal,
    price: Decimal,
    metric_ids: Sequence[str],
    idempotency_key: str,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[Decimal, Decimal, list[str]]:
    """Refuse (``InvalidAmount``) what could never be credited, before any invoice is written; returns the
    amount and price at the ledger's scale and the sorted metric ids."""
    if kind not in _KINDS:
        raise InvalidAmount(f"Unknown purchase kind {kind!r}.")
    amount, price = ledger_amount(amount), ledger_amount(price)
    if amount <= 0:
        raise InvalidAmount("The amount must be greater than zero.")
    if price < 0:
        raise InvalidAmount("The price cannot be negative.")
    if expires_at is not None and expires_at <= now:
        raise InvalidAmount("The expiry must be in the future.")
    if not idempotency_key:
        raise InvalidAmount("An idempotency key is required.")
    metric_ids = sorted(set(metric_ids))
    if kind == CreditPurchaseKind.RESERVED:
        if not metric_ids:
            raise InvalidAmount("Reserved capacity needs at least one billable metric.")
        known = set(
            BillableMetric.objects.filter(pk__in=metric_ids, merchant_id=customer.merchant_id).values_list(
                "pk", flat=True
            )
        )
        if unknown := [m for m in metric_ids if m not in known]:
            raise InvalidAmount(f"Unknown billable metric(s): {', '.join(unknown)}.")
    elif metric_ids:
        raise InvalidAmount("A top-up pays for every metric; only reserved capacity names metrics.")
    return amount, price, metric_ids


def credit_purchase_find(*, customer: Customer, kind: str, idempotency_key: str) -> CreditPurchase | None:
    return CreditPurchase.objects.filter(customer=customer, kind=kind, idempotency_key=idempotency_key).first()


def credit_purchase_replay(
    existing: CreditPurchase, *, currency: str, amount: Decimal, price: Decimal, metric_ids: Sequence[str]
) -> CreditPurchase:
    """The first purchase of a replayed key; ``IdempotencyConflict`` when it bought something else."""
    if (existing.currency, existing.amount, existing.price, sorted(existing.metric_ids)) != (
        currency,
        ledger_amount(amount),
        ledger_amount(price),
        sorted(metric_ids),
    ):
        raise IdempotencyConflict("This idempotency key was used for a purchase of another amount, price or currency.")
    return existing


def credit_purchase_record(
    *,
    customer: Customer,
    kind: str,
    currency: str,
    amount: Decimal,
    price: Decimal,
    metric_ids: Sequence[str],
    idempotency_key: str,
    invoice_ref: str,
    now: datetime,
    expires_at: datetime | None = None,
    description: str = "",
) -> CreditPurchase:
    """The purchase billed on invoice ``invoice_ref``, not credited yet (run ``credit_purchase_check`` first)."""
    return CreditPurchase.objects.create(
        customer=customer,
        kind=kind,
        currency=currency,
        amount=ledger_amount(amount),
        price=ledger_amount(price),
        metric_ids=sorted(set(metric_ids)),
        expires_at=expires_at,
        description=description,
        idempotency_key=idempotency_key,
        invoice_ref=invoice_ref,
        created_at=now,
    )


def credit_purchase_fulfil(*, invoice_ref: str, now: datetime) -> CreditPurchase | None:
    """Credit the lot bought on invoice ``invoice_ref`` (paid, or trusted): once — a purchase already
    credited is returned as it is. None when no credit purchase is billed on that invoice. A purchase
    whose expiry passed before it was paid stays uncredited (there is nothing left to spend)."""
    with transaction.atomic():
        customer_id = (
            CreditPurchase.objects.filter(invoice_ref=invoice_ref).values_list("customer_id", flat=True).first()
        )
        if customer_id is None:
            return None
        # The customer row first: a payment reaches here holding it (receivables lock the invoice, then the
        # customer), and creating the wallet takes a key-share lock on it; locking it after the purchase
        # deadlocked a payment against a concurrent fulfilment (tests/invoicing/test_credit_purchases_concurrency.py).
        Customer.objects.select_for_update().filter(pk=customer_id).values_list("pk", flat=True).get()
        purchase = CreditPurchase.objects.select_for_update().filter(invoice_ref=invoice_ref).first()
        if purchase is None or purchase.lot_id is not None:
            return purchase
        if purchase.expires_at is not None and purchase.expires_at <= now:
            return purchase
        entry_kind, lot_kind = _KINDS[purchase.kind]
        label = purchase.get_kind_display()
        result = credit_lot_add(
            customer=purchase.customer,
            currency=purchase.currency,
            entry_kind=entry_kind,
            lot_kind=lot_kind,
            amount=purchase.amount,
            idempotency_key=f"purchase:{purchase.pk}",
            now=now,
            expires_at=purchase.expires_at,
            description=purchase.description or f"{label} bought on invoice {invoice_ref}",
            purchase_invoice_ref=invoice_ref,
            metric_ids=purchase.metric_ids,
            price_paid=purchase.price if purchase.kind == CreditPurchaseKind.RESERVED else None,
        )
        purchase.lot = result.lot
        purchase.credited_at = now
        purchase.save(update_fields=["lot", "credited_at"])
    return purchase


def credit_purchase_reinvoice(*, invoice_ref: str, new_invoice_ref: str) -> CreditPurchase | None:
    """The invoice ``invoice_ref`` a purchase is billed on was voided and reissued as ``new_invoice_ref``: the
    purchase (and its lot, when credited already) now names the reissue, so paying the reissue credits it
    (once: ``credit_purchase_fulfil``). None when no credit purchase is billed on ``invoice_ref``."""
    with transaction.atomic():
        purchase = CreditPurchase.objects.select_for_update().filter(invoice_ref=invoice_ref).first()
        if purchase is None:
            return None
        purchase.invoice_ref = new_invoice_ref
        purchase.save(update_fields=["invoice_ref"])
        if purchase.lot_id is not None:
            CreditLot.objects.filter(pk=purchase.lot_id).update(purchase_invoice_ref=new_invoice_ref)
    return purchase

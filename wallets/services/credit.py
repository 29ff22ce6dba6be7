"""Credit into a wallet and out of it again: grants, paid top-ups, reserved capacity purchases, the
expiry sweep and refunds of unused paid credit. Each is one transaction that locks the wallet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from catalog.models import Customer
from core.formatting import decimal_string

from ..errors import InvalidAmount, WalletError
from ..models import CreditLot, EntryKind, LedgerEntry, LotKind, Wallet
from .ledger import (
    ZERO,
    append_entry,
    ledger_amount,
    lot_create,
    open_lots,
    wallet_for_update,
    wallet_save,
)


class IdempotencyConflict(WalletError):
    """An idempotency key reused with a different amount."""


@dataclass(frozen=True)
class CreditResult:
    """A credit added to a wallet (grant, top-up, reserved purchase). ``replayed``: the idempotency key
    had been used already and nothing new was written."""

    entry: LedgerEntry
    lot: CreditLot
    replayed: bool


def credit_lot_add(
    *,
    customer: Customer,
    currency: str,
    entry_kind: str,
    lot_kind: str,
    amount: Decimal,
    idempotency_key: str,
    now: datetime,
    expires_at: datetime | None = None,
    description: str = "",
    purchase_invoice_ref: str | None = None,
    metric_ids: Sequence[str] = (),
    price_paid: Decimal | None = None,
) -> CreditResult:
    """One lot of credit and the ledger entry that adds it, under the wallet's lock; a replayed
    ``idempotency_key`` (per wallet and entry kind) returns the first. The grant, top-up and purchase
    services below and ``purchases.credit_purchase_fulfil`` are its callers."""
    amount = ledger_amount(amount)
    if amount <= 0:
        raise InvalidAmount("The amount must be greater than zero.")
    if expires_at is not None and expires_at <= now:
        raise InvalidAmount("The expiry must be in the future.")
    if not idempotency_key:
        raise InvalidAmount("An idempotency key is required.")
    with transaction.atomic():
        wallet = wallet_for_update(customer=customer, currency=currency, create=True)
        existing = (
            LedgerEntry.objects.select_related("lot")
            .filter(wallet=wallet, kind=entry_kind, idempotency_key=idempotency_key)
            .first()
        )
        if existing is not None:
            if existing.amount != amount:
                raise IdempotencyConflict(
                    f"Idempotency key {idempotency_key!r} was used for {decimal_string(existing.amount)}, "
                    f"not {decimal_string(amount)}."
                )
            return CreditResult(entry=existing, lot=existing.lot, replayed=True)
        lots = open_lots(wallet)
        lot = lot_create(
            wallet,
            kind=lot_kind,
            amount=amount,
            now=now,
            expires_at=expires_at,
            metric_ids=list(metric_ids),
            price_paid=price_paid,
            purchase_invoice_ref=purchase_invoice_ref or "",
        )
        entry = append_entry(
            wallet,
            kind=entry_kind,
            amount=amount,
            now=now,
            allocations=[(lot, amount)],
            lot=lot,
            idempotency_key=idempotency_key,
            reference=purchase_invoice_ref or "",
            description=description,
        )
        wallet_save(wallet, [*lots, lot], now=now)
    return CreditResult(entry=entry, lot=lot, replayed=False)


def credit_grant(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    idempotency_key: str,
    now: datetime,
    expires_at: datetime | None = None,
    description: str = "",
) -> CreditResult:
    """Give free (promotional) credit, optionally expiring. Replaying ``idempotency_key`` returns the
    first grant; reusing it with another amount raises ``IdempotencyConflict``."""
    return credit_lot_add(
        customer=customer,
        currency=currency,
        entry_kind=EntryKind.GRANT,
        lot_kind=LotKind.GRANT,
        amount=amount,
        idempotency_key=idempotency_key,
        now=now,
        expires_at=expires_at,
        description=description or "Promotional credit",
    )


def credit_top_up(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    idempotency_key: str,
    now: datetime,
    purchase_invoice_ref: str | None = None,
    expires_at: datetime | None = None,
    description: str = "",
) -> CreditResult:
    """Record paid credit straight into the ledger (the automatic top-up's and imports' primitive). Credit
    *sold* goes through ``invoicing.one_off_invoices.credit_purchase_create``: an invoice first, the lot when
    it is paid (``purchases.credit_purchase_fulfil``)."""
    return credit_lot_add(
        customer=customer,
        currency=currency,
        entry_kind=EntryKind.TOP_UP,
        lot_kind=LotKind.TOP_UP,
        amount=amount,
        idempotency_key=idempotency_key,
        now=now,
        expires_at=expires_at,
        description=description or "Prepaid credit purchase",
        purchase_invoice_ref=purchase_invoice_ref,
    )


def reserved_capacity_purchase(
    *,
    customer: Customer,
    currency: str,
    credit_amount: Decimal,
    price_paid: Decimal,
    metric_ids: Sequence[str],
    idempotency_key: str,
    now: datetime,
    purchase_invoice_ref: str | None = None,
    expires_at: datetime | None = None,
    description: str = "",
) -> CreditResult:
    """Record discounted credit usable only for ``metric_ids`` (pay ``price_paid`` = $600 for
    ``credit_amount`` = $1,000 of compute). Debits of those metrics draw it before any other credit.
    The balance grows by the face value. The ledger primitive: reserved capacity is *sold* through
    ``invoicing.one_off_invoices.credit_purchase_create``, which invoices ``price_paid`` and credits when paid."""
    from catalog.models import BillableMetric

    metric_ids = sorted(set(metric_ids))
    if not metric_ids:
        raise InvalidAmount("Reserved capacity needs at least one billable metric.")
    known = set(
        BillableMetric.objects.filter(pk__in=metric_ids, merchant_id=customer.merchant_id).values_list("pk", flat=True)
    )
    if unknown := [m for m in metric_ids if m not in known]:
        raise InvalidAmount(f"Unknown billable metric(s): {', '.join(unknown)}.")
    price_paid = ledger_amount(price_paid)
    if price_paid < 0:
        raise InvalidAmount("The price paid cannot be negative.")
    return credit_lot_add(
        customer=customer,
        currency=currency,
        entry_kind=EntryKind.RESERVED_PURCHASE,
        lot_kind=LotKind.RESERVED,
        amount=credit_amount,
        idempotency_key=idempotency_key,
        now=now,
        expires_at=expires_at,
        description=description or f"Reserved capacity (paid {decimal_string(price_paid)} {currency})",
        purchase_invoice_ref=purchase_invoice_ref,
        metric_ids=metric_ids,
        price_paid=price_paid,
    )


def credit_expire_due(*, now: datetime) -> list[LedgerEntry]:
    """Remove what is left of every lot whose expiry has passed, by one ``expiry`` entry per lot.

    Exactly once per lot: the lot is marked ``expired_at`` under the wallet lock and a unique
    constraint allows one expiry entry per lot. One transaction per wallet, so one bad wallet does
    not hold back the others and a crash resumes where it stopped."""
    wallet_ids = (
        CreditLot.objects.filter(expires_at__lte=now, expired_at__isnull=True)
        .values_list("wallet_id", flat=True)
        .distinct()
        .order_by("wallet_id")
    )
    written: list[LedgerEntry] = []
    for wallet_id in list(wallet_ids):
        with transaction.atomic():
            wallet = Wallet.objects.select_for_update().get(pk=wallet_id)
            lots = {lot.pk: lot for lot in open_lots(wallet)}
            due = CreditLot.objects.filter(wallet=wallet, expires_at__lte=now, expired_at__isnull=True).order_by(
                "expires_at", "id"
            )
            for lot in due:
                lot = lots.get(lot.pk, lot)
                unused = lot.remaining
                if unused > 0:
                    written.append(
                        append_entry(
                            wallet,
                            kind=EntryKind.EXPIRY,
                            amount=-unused,
                            now=now,
                            allocations=[(lot, -unused)],
                            lot=lot,
                            description=f"Unused credit expired ({lot.get_kind_display().lower()})",
                        )
                    )
                lot.remaining = ZERO
                lot.expired_at = now
                lot.save(update_fields=["remaining", "expired_at"])
            wallet_save(wallet, lots.values(), now=now)
    return written


def credit_refund(
    *,
    lot: CreditLot,
    amount: Decimal,
    reference: str,
    now: datetime,
    description: str = "",
) -> LedgerEntry:
    """Give back unused paid credit (a top-up or reserved purchase) by one ``refund`` entry; invoicing
    issues the money back under ``reference`` (e.g. a credit note id), once per reference and lot."""
    amount = ledger_amount(amount)
    if amount <= 0:
        raise InvalidAmount("The refund must be greater than zero.")
    if lot.kind not in (LotKind.TOP_UP, LotKind.AUTO_TOP_UP, LotKind.RESERVED):
        raise InvalidAmount("Only paid credit can be refunded; free grants expire or are left unused.")
    if not reference:
        raise InvalidAmount("A refund reference is required.")
    key = f"{lot.pk}:{reference}"
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=lot.wallet_id)
        existing = LedgerEntry.objects.filter(wallet=wallet, kind=EntryKind.REFUND, idempotency_key=key).first()
        if existing is not None:
            return existing
        lots = {open_lot.pk: open_lot for open_lot in open_lots(wallet)}
        lot = lots.get(lot.pk)
        if lot is None or amount > lot.remaining:
            raise InvalidAmount(
                f"Only {decimal_string(lot.remaining if lot else ZERO)} {wallet.currency} of this credit is unused."
            )
        lot.remaining -= amount
        lot.save(update_fields=["remaining"])
        entry = append_entry(
            wallet,
            kind=EntryKind.REFUND,
            amount=-amount,
            now=now,
            allocations=[(lot, -amount)],
            lot=lot,
            idempotency_key=key,
            reference=reference,
            description=description or "Unused credit refunded",
        )
        wallet_save(wallet, lots.values(), now=now)
    return entry

"""How an invoice settled with the wallet: the overage it bills moves off the wallet, and part of it may
be paid from general credit (``invoice_settlement_record``, once per invoice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from catalog.models import Customer
from core.bulk import rows_update
from core.formatting import decimal_string

from ..errors import InvalidAmount
from ..models import CreditLot, EntryKind, LedgerEntry
from .ledger import (
    ZERO,
    append_entry,
    consume,
    consumption_order,
    ledger_amount,
    lot_spendable,
    open_lots,
    wallet_for_update,
    wallet_save,
)


@dataclass(frozen=True)
class SettlementOutcome:
    entry: LedgerEntry
    overage_settled: Decimal
    drawn_from_balance: Decimal
    replayed: bool


def invoice_settlement_record(
    *,
    customer: Customer,
    currency: str,
    invoice_ref: str,
    now: datetime,
    overage_billed: Decimal = ZERO,
    draw_from_balance: Decimal = ZERO,
    description: str = "",
) -> SettlementOutcome:
    """Record how invoice ``invoice_ref`` settled with the wallet, once per invoice (a replay returns
    the first record).

    * ``overage_billed``: overage the invoice bills (from ``overage_for_period``); the debt moves to
      the invoice, so the balance rises by it and the outstanding overage falls by it.
    * ``draw_from_balance``: pay up to this much of the invoice from general (non-reserved) credit;
      ``drawn_from_balance`` in the outcome says how much was taken, the rest stays due on the invoice.
    """
    overage_billed = ledger_amount(overage_billed)
    draw_from_balance = ledger_amount(draw_from_balance)
    if overage_billed < 0 or draw_from_balance < 0:
        raise InvalidAmount("Settlement amounts cannot be negative.")
    if not invoice_ref:
        raise InvalidAmount("An invoice reference is required.")
    with transaction.atomic():
        wallet = wallet_for_update(customer=customer, currency=currency, create=True)
        existing = LedgerEntry.objects.filter(
            wallet=wallet, kind=EntryKind.INVOICE_SETTLEMENT, reference=invoice_ref
        ).first()
        if existing is not None:
            drawn = existing.amount + existing.overage_amount  # amount = overage − drawn; overage_amount = −overage
            return SettlementOutcome(existing, -existing.overage_amount, -drawn, True)
        if overage_billed > wallet.overage_outstanding:
            raise InvalidAmount(
                f"The invoice bills {decimal_string(overage_billed)} of overage but only "
                f"{decimal_string(wallet.overage_outstanding)} is outstanding."
            )
        lots = open_lots(wallet)
        general = sorted(
            (lot for lot in lots if lot_spendable(lot, now=now, metric_id=None, reserved_allowed=False)),
            key=consumption_order,
        )
        allocations, drawn = consume(general, draw_from_balance)
        entry = append_entry(
            wallet,
            kind=EntryKind.INVOICE_SETTLEMENT,
            amount=overage_billed - drawn,
            overage=-overage_billed,
            now=now,
            allocations=[(lot, -taken) for lot, taken in allocations],
            reference=invoice_ref,
            description=description or f"Settled with invoice {invoice_ref}",
        )
        if allocations:
            rows_update(CreditLot, [lot for lot, _ in allocations], ["remaining"])
        wallet_save(wallet, lots, now=now)
    return SettlementOutcome(entry, overage_billed, drawn, False)

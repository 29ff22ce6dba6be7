"""Ledger primitives shared by every write service of the package: amounts at the ledger's scale, the
wallet lock, the open lots and the order they are consumed in, appending an entry (with its allocations
and the running period totals), creating a lot, and refreshing the wallet's cached totals and threshold
flags (with the low-balance notice). The caller holds the wallet lock in its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connection
from django.db.models import Q

from catalog.models import Customer
from catalog.pricing.currency import CTX
from catalog.pricing.limits import BOUND_TEXT, LIMIT, QUANTUM
from core.bulk import WriteBatch, rows_insert, rows_update
from core.db import any_of, instance_from_row, rows_select
from core.formatting import decimal_string

from ..errors import InvalidAmount
from ..models import (
    CreditLot,
    EntryKind,
    LedgerAllocation,
    LedgerEntry,
    LotKind,
    PeriodDebitTotal,
    Wallet,
    WebhookEventType,
)

ZERO = Decimal("0")
LOW_BALANCE_EVENT = WebhookEventType.BALANCE_LOW.value


def ledger_amount(value: Decimal | int) -> Decimal:
    """``value`` at the ledger's 12-place scale (``catalog.pricing.limits.QUANTUM``). Floats are refused: money is never binary."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise InvalidAmount(f"Amounts must be Decimal, not {type(value).__name__}.")
    value = Decimal(value)
    if not value.is_finite():
        raise InvalidAmount("Amounts must be finite.")
    if value.copy_abs() >= LIMIT:  # the shared bound (catalog.pricing.limits); quantizing in CTX never overflows
        raise InvalidAmount(f"Amounts must have {BOUND_TEXT}.")
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=CTX)


def wallet_for_update(*, customer: Customer, currency: str, create: bool) -> Wallet | None:
    """The customer's wallet in ``currency``, locked (``select_for_update``) for the caller's transaction;
    created first when ``create`` (else None when there is none)."""
    wallet = Wallet.objects.select_for_update().filter(customer=customer, currency=currency).first()
    if wallet is None and create:
        # get_or_create leans on the (customer, currency) unique constraint when two writers race.
        created, _ = Wallet.objects.get_or_create(
            customer=customer, currency=currency, defaults={"merchant_id": customer.merchant_id}
        )
        wallet = Wallet.objects.select_for_update().get(pk=created.pk)
    return wallet


def open_lots(wallet: Wallet) -> list[CreditLot]:
    """The wallet's lots with credit left and not expired (the ORM read of one wallet)."""
    return list(CreditLot.objects.filter(wallet=wallet, remaining__gt=0, expired_at__isnull=True))


_LOT_COLUMNS = tuple(field.attname for field in CreditLot._meta.concrete_fields)


def open_lots_of(wallet_ids: Sequence[str]) -> list[CreditLot]:
    """The open lots of ``wallet_ids``: one hand-written query (building the ORM's cost more than
    running it)."""
    quote = connection.ops.quote_name
    of_wallets, params = any_of("wallet_id", wallet_ids)
    sql = (
        f"SELECT {', '.join(quote(CreditLot._meta.get_field(name).column) for name in _LOT_COLUMNS)}"
        f" FROM {quote(CreditLot._meta.db_table)} WHERE {of_wallets} AND remaining > 0 AND expired_at IS NULL"
    )
    rows = rows_select(sql, params, [(CreditLot, name) for name in _LOT_COLUMNS], prepared=True)
    alias = connection.alias
    return [instance_from_row(CreditLot, alias, _LOT_COLUMNS, row) for row in rows]


def may_have_open_lots(wallet: Wallet) -> bool:
    """Every entry keeps Σ remaining of the open lots == balance + overage_outstanding (debits move the
    uncovered part to overage, expiry and refunds take from lots, settlements take drawn credit), so a
    wallet where that is zero has no open lot and the lots query can be skipped."""
    return wallet.balance + wallet.overage_outstanding > 0


def lot_spendable(lot: CreditLot, *, now: datetime, metric_id: str | None, reserved_allowed: bool) -> bool:
    """Whether ``lot`` may pay now: credit left, not expired, and reserved capacity only for its metrics
    (and only where ``reserved_allowed``)."""
    if lot.remaining <= 0 or lot.expired_at is not None:
        return False
    if lot.expires_at is not None and lot.expires_at <= now:
        return False  # past its expiry: the sweep removes it; it pays for nothing meanwhile
    if lot.kind == LotKind.RESERVED:
        return reserved_allowed and metric_id is not None and metric_id in lot.metric_ids
    return True


_CLASS_RANK = {LotKind.RESERVED: 0, LotKind.GRANT: 1}


def consumption_order(lot: CreditLot) -> tuple:
    """Sort key of the order credit is consumed in (README "Order of consumption"): reserved capacity
    for the metric first, then free grants, then paid credit; within each, soonest expiry first
    (no expiry last), then oldest first."""
    far = datetime.max.replace(tzinfo=lot.created_at.tzinfo)
    return (_CLASS_RANK.get(lot.kind, 2), lot.expires_at is None, lot.expires_at or far, lot.created_at, lot.id)


def consume(lots: Sequence[CreditLot], amount: Decimal) -> tuple[list[tuple[CreditLot, Decimal]], Decimal]:
    """Take up to ``amount`` from ``lots`` in order; returns (lot, taken) pairs and the total taken."""
    taken_total = ZERO
    allocations = []
    for lot in lots:
        if taken_total >= amount:
            break
        take = min(lot.remaining, amount - taken_total)
        if take > 0:
            lot.remaining -= take
            taken_total += take
            allocations.append((lot, take))
    return allocations, taken_total


def append_entry(
    wallet: Wallet,
    *,
    kind: str,
    amount: Decimal,
    now: datetime,
    overage: Decimal = ZERO,
    allocations: Iterable[tuple[CreditLot, Decimal]] = (),
    **fields,
) -> LedgerEntry:
    """Append one entry; the caller holds the wallet lock and saves the wallet afterwards."""
    wallet.last_sequence += 1
    wallet.balance += amount
    wallet.overage_outstanding += overage
    entry = LedgerEntry.objects.create(
        wallet=wallet,
        sequence=wallet.last_sequence,
        kind=kind,
        amount=amount,
        balance_after=wallet.balance,
        overage_amount=overage,
        occurred_at=now,
        **fields,
    )
    rows = [LedgerAllocation(entry=entry, lot=lot, amount=value) for lot, value in allocations if value]
    if rows:
        LedgerAllocation.objects.bulk_create(rows)
    period_debit_totals_add([entry])
    return entry


def period_debit_totals_add(entries: Iterable[LedgerEntry], *, batch: WriteBatch | None = None) -> None:
    """Add the usage debits among ``entries`` (just appended, in this transaction) to their period
    segments' running totals (``PeriodDebitTotal``): one adding upsert on PostgreSQL (``rows_insert``
    with ``add_fields``: numeric addition in the database, exact; added to ``batch`` when given); on
    SQLite, whose NUMERIC arithmetic is binary floating point, read, add in Decimal and write at once
    (writers are serialised there; the read must see every earlier write)."""
    sums: dict[tuple, list] = {}
    for entry in entries:
        if entry.kind != EntryKind.USAGE_DEBIT or not entry.subscription_id or entry.period_start is None:
            continue
        key = (entry.subscription_id, entry.period_start, entry.period_end)
        total = sums.setdefault(key, [ZERO, ZERO, 0])
        total[0] -= entry.amount
        total[1] += entry.overage_amount
        total[2] += 1
    if not sums:
        return
    if connection.vendor == "postgresql":
        rows_insert(
            PeriodDebitTotal,
            ["subscription_id", "period_start", "period_end", "debited", "overage", "entries"],
            [(*key, *total) for key, total in sums.items()],
            unique_fields=["subscription_id", "period_start", "period_end"],
            add_fields=["debited", "overage", "entries"],
            batch=batch,
        )
        return
    match = Q()
    for sub, start, end in sums:
        match |= Q(subscription_id=sub, period_start=start, period_end=end)
    existing = {(t.subscription_id, t.period_start, t.period_end): t for t in PeriodDebitTotal.objects.filter(match)}
    changed, created = [], []
    for key, (debited, overage, count) in sums.items():
        total = existing.get(key)
        if total is None:
            created.append(
                PeriodDebitTotal(
                    subscription_id=key[0],
                    period_start=key[1],
                    period_end=key[2],
                    debited=debited,
                    overage=overage,
                    entries=count,
                )
            )
            continue
        total.debited += debited
        total.overage += overage
        total.entries += count
        changed.append(total)
    if changed:
        rows_update(PeriodDebitTotal, changed, ["debited", "overage", "entries"])
    if created:
        PeriodDebitTotal.objects.bulk_create(created)


def lot_create(wallet: Wallet, *, kind: str, amount: Decimal, now: datetime, **fields) -> CreditLot:
    return CreditLot.objects.create(
        wallet=wallet, kind=kind, original_amount=amount, remaining=amount, created_at=now, **fields
    )


WALLET_TOTALS = [
    "balance",
    "reserved_credit",
    "overage_outstanding",
    "expiring_credit",
    "next_expiry_at",
    "last_sequence",
    "auto_top_up_armed",
    "low_balance_since",
    "updated_at",
]


def wallet_save(wallet: Wallet, lots: Iterable[CreditLot], *, now: datetime) -> None:
    """Refresh the cached lot totals and the threshold flags, then save the wallet (lock held)."""
    wallet_totals(wallet, lots, now=now)
    wallet.save(update_fields=WALLET_TOTALS)


def wallet_totals(wallet: Wallet, lots: Iterable[CreditLot], *, now: datetime) -> None:
    """Refresh the cached lot totals and the threshold flags in memory (a notice on a low-balance crossing)."""
    live = [lot for lot in lots if lot.remaining > 0 and lot.expired_at is None]
    wallet.reserved_credit = sum((lot.remaining for lot in live if lot.kind == LotKind.RESERVED), ZERO)
    expiring = [lot for lot in live if lot.expires_at is not None]
    wallet.expiring_credit = sum((lot.remaining for lot in expiring), ZERO)
    wallet.next_expiry_at = min((lot.expires_at for lot in expiring), default=None)
    if wallet.auto_top_up_threshold is not None and wallet.balance >= wallet.auto_top_up_threshold:
        wallet.auto_top_up_armed = True
    threshold = wallet.low_balance_threshold
    if threshold is not None and wallet.balance < threshold:
        if wallet.low_balance_since is None:
            wallet.low_balance_since = now
            notify(wallet, LOW_BALANCE_EVENT, now=now)  # once per crossing: low_balance_since, under the lock
    else:
        wallet.low_balance_since = None


def notify(wallet: Wallet, event_type: str, *, now: datetime, key: str | None = None, **extra) -> None:
    from ..webhooks import webhook_event_emit

    data = {
        "customerId": wallet.customer_id,
        "walletId": wallet.pk,
        "currency": wallet.currency,
        "balance": decimal_string(wallet.balance),
        "available": decimal_string(wallet.available),
        "threshold": decimal_string(wallet.low_balance_threshold),
        **extra,
    }
    webhook_event_emit(merchant_id=wallet.merchant_id, event_type=event_type, data=data, now=now, key=key)

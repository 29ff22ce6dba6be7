"""Writes of the prepaid ledger. Every service is one transaction that locks the wallet row
(``select_for_update``), appends ledger entries, moves credit between lots and refreshes the wallet's
cached totals before it commits. None is ``durable``: invoicing calls them inside its own
transaction (ingest + debit, invoice + top-up) so both commit or neither does.

Amounts are Decimals kept to 12 decimal places (the ledger's scale); floats are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.bulk import rows_insert, rows_update
from catalog.db import any_of, instance_from_row, instance_new, rows_select
from catalog.models import Customer
from catalog.pricing.currency import CTX
from catalog.pricing.limits import BOUND_TEXT, LIMIT

from .errors import InsufficientBalance, InvalidAmount, WalletError
from .models import (
    BalancePolicy,
    Commitment,
    CreditLot,
    EntryKind,
    LedgerAllocation,
    LedgerEntry,
    LotKind,
    PeriodDebitTotal,
    Wallet,
)

ZERO = Decimal("0")
LEDGER_QUANTUM = Decimal("0.000000000001")  # 12 places (catalog.pricing.limits.DECIMAL_PLACES), every ledger amount
# No policy configured = never refuse usage: what the credit does not cover is overage, billed on the
# next invoice. A merchant opts a customer into blocking explicitly.
DEFAULT_POLICY = BalancePolicy.ALLOW_OVERAGE
LOW_BALANCE_EVENT = "balance.low"
AUTO_TOP_UP_EVENT = "balance.auto_top_up"


class IdempotencyConflict(WalletError):
    """An idempotency key reused with a different amount."""


@dataclass(frozen=True)
class CreditResult:
    """A credit added to a wallet (grant, top-up, reserved purchase). ``replayed``: the idempotency key
    had been used already and nothing new was written."""

    entry: LedgerEntry
    lot: CreditLot
    replayed: bool


@dataclass(frozen=True)
class DebitOutcome:
    """What ``usage_debit`` did. ``amount`` is the usage cost debited (negative when usage was credited
    back); ``covered_by_credit + overage == amount``. ``entry`` is None for a zero cost (nothing written)."""

    entry: LedgerEntry | None
    amount: Decimal
    covered_by_credit: Decimal
    overage: Decimal
    balance_after: Decimal
    auto_top_up: LedgerEntry | None
    replayed: bool


@dataclass(frozen=True)
class SettlementOutcome:
    entry: LedgerEntry
    overage_settled: Decimal
    drawn_from_balance: Decimal
    replayed: bool


@dataclass(frozen=True)
class CommitmentTrueUp:
    """A commitment at the end of its term: ``shortfall`` (≥ 0) is what invoicing bills."""

    commitment: Commitment
    committed: Decimal
    drawn: Decimal
    shortfall: Decimal


# ---------------------------------------------------------------------------------------------- helpers


def ledger_amount(value: Decimal | int) -> Decimal:
    """``value`` at the ledger's 12-place scale. Floats are refused: money is never binary."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise InvalidAmount(f"Amounts must be Decimal, not {type(value).__name__}.")
    value = Decimal(value)
    if not value.is_finite():
        raise InvalidAmount("Amounts must be finite.")
    if value.copy_abs() >= LIMIT:  # the shared bound (catalog.pricing.limits); quantizing in CTX never overflows
        raise InvalidAmount(f"Amounts must have {BOUND_TEXT}.")
    return value.quantize(LEDGER_QUANTUM, rounding=ROUND_HALF_EVEN, context=CTX)


def amount_str(value: Decimal | None) -> str | None:
    """A ledger amount as a plain decimal string without trailing zeros (9.5, 0.000002, -12)."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _wallet_for_update(*, customer: Customer, currency: str, create: bool) -> Wallet | None:
    wallet = Wallet.objects.select_for_update().filter(customer=customer, currency=currency).first()
    if wallet is None and create:
        # get_or_create leans on the (customer, currency) unique constraint when two writers race.
        created, _ = Wallet.objects.get_or_create(
            customer=customer, currency=currency, defaults={"merchant_id": customer.merchant_id}
        )
        wallet = Wallet.objects.select_for_update().get(pk=created.pk)
    return wallet


def _open_lots(wallet: Wallet) -> list[CreditLot]:
    return list(CreditLot.objects.filter(wallet=wallet, remaining__gt=0, expired_at__isnull=True))


def _may_have_open_lots(wallet: Wallet) -> bool:
    """Every entry keeps Σ remaining of the open lots == balance + overage_outstanding (debits move the
    uncovered part to overage, expiry and refunds take from lots, settlements take drawn credit), so a
    wallet where that is zero has no open lot and the lots query can be skipped."""
    return wallet.balance + wallet.overage_outstanding > 0


def _spendable(lot: CreditLot, *, now: datetime, metric_id: str | None, reserved_allowed: bool) -> bool:
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


def _consume(lots: Sequence[CreditLot], amount: Decimal) -> tuple[list[tuple[CreditLot, Decimal]], Decimal]:
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


def _append(
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


def period_debit_totals_add(entries: Iterable[LedgerEntry]) -> None:
    """Add the usage debits among ``entries`` (just appended, in this transaction) to their period
    segments' running totals (``PeriodDebitTotal``): one adding upsert on PostgreSQL (``rows_insert``
    with ``add_fields``: numeric addition in the database, exact); on SQLite, whose NUMERIC arithmetic is
    binary floating point, read, add in Decimal and write (writers are serialised there)."""
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


def _lot_create(wallet: Wallet, *, kind: str, amount: Decimal, now: datetime, **fields) -> CreditLot:
    return CreditLot.objects.create(
        wallet=wallet, kind=kind, original_amount=amount, remaining=amount, created_at=now, **fields
    )


_WALLET_TOTALS = [
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


def _wallet_save(wallet: Wallet, lots: Iterable[CreditLot], *, now: datetime) -> None:
    """Refresh the cached lot totals and the threshold flags, then save the wallet (lock held)."""
    _wallet_totals(wallet, lots, now=now)
    wallet.save(update_fields=_WALLET_TOTALS)


def _wallet_totals(wallet: Wallet, lots: Iterable[CreditLot], *, now: datetime) -> None:
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
            _notify(wallet, LOW_BALANCE_EVENT, now=now)
    else:
        wallet.low_balance_since = None


def _notify(wallet: Wallet, event_type: str, *, now: datetime, **extra) -> None:
    from .webhooks import webhook_event_emit

    data = {
        "customerId": wallet.customer_id,
        "walletId": wallet.pk,
        "currency": wallet.currency,
        "balance": amount_str(wallet.balance),
        "available": amount_str(wallet.available),
        "threshold": amount_str(wallet.low_balance_threshold),
        **extra,
    }
    webhook_event_emit(merchant_id=wallet.merchant_id, event_type=event_type, data=data, now=now)


# ---------------------------------------------------------------------------------------------- credit


def _credit_add(
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
    amount = ledger_amount(amount)
    if amount <= 0:
        raise InvalidAmount("The amount must be greater than zero.")
    if expires_at is not None and expires_at <= now:
        raise InvalidAmount("The expiry must be in the future.")
    if not idempotency_key:
        raise InvalidAmount("An idempotency key is required.")
    with transaction.atomic():
        wallet = _wallet_for_update(customer=customer, currency=currency, create=True)
        existing = (
            LedgerEntry.objects.select_related("lot")
            .filter(wallet=wallet, kind=entry_kind, idempotency_key=idempotency_key)
            .first()
        )
        if existing is not None:
            if existing.amount != amount:
                raise IdempotencyConflict(
                    f"Idempotency key {idempotency_key!r} was used for {existing.amount.normalize():f}, "
                    f"not {amount.normalize():f}."
                )
            return CreditResult(entry=existing, lot=existing.lot, replayed=True)
        lots = _open_lots(wallet)
        lot = _lot_create(
            wallet,
            kind=lot_kind,
            amount=amount,
            now=now,
            expires_at=expires_at,
            metric_ids=list(metric_ids),
            price_paid=price_paid,
            purchase_invoice_ref=purchase_invoice_ref or "",
        )
        entry = _append(
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
        _wallet_save(wallet, [*lots, lot], now=now)
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
    return _credit_add(
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
    """Record paid credit. Invoicing creates the purchase invoice first and passes its id as
    ``purchase_invoice_ref`` (optional until invoicing integrates)."""
    return _credit_add(
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
    The balance grows by the face value; invoicing bills ``price_paid``."""
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
    return _credit_add(
        customer=customer,
        currency=currency,
        entry_kind=EntryKind.RESERVED_PURCHASE,
        lot_kind=LotKind.RESERVED,
        amount=credit_amount,
        idempotency_key=idempotency_key,
        now=now,
        expires_at=expires_at,
        description=description or f"Reserved capacity (paid {price_paid.normalize():f} {currency})",
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
            lots = {lot.pk: lot for lot in _open_lots(wallet)}
            due = CreditLot.objects.filter(wallet=wallet, expires_at__lte=now, expired_at__isnull=True).order_by(
                "expires_at", "id"
            )
            for lot in due:
                lot = lots.get(lot.pk, lot)
                unused = lot.remaining
                if unused > 0:
                    written.append(
                        _append(
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
            _wallet_save(wallet, lots.values(), now=now)
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
        lots = {open_lot.pk: open_lot for open_lot in _open_lots(wallet)}
        lot = lots.get(lot.pk)
        if lot is None or amount > lot.remaining:
            raise InvalidAmount(
                f"Only {amount_str(lot.remaining if lot else ZERO)} {wallet.currency} of this credit is unused."
            )
        lot.remaining -= amount
        lot.save(update_fields=["remaining"])
        entry = _append(
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
        _wallet_save(wallet, lots.values(), now=now)
    return entry


def wallet_lock(*, customer: Customer, currency: str) -> Wallet:
    """Lock (creating if need be) the customer's wallet in ``currency`` for the rest of the caller's
    transaction. Invoicing calls it FIRST in ``events_ingest_and_debit``, before it reads the period's
    usage, so concurrent events of one customer are priced one after the other (each sees the usage
    of the previous one as its ``usage_before``)."""
    if not transaction.get_connection().in_atomic_block:
        raise WalletError("wallet_lock only makes sense inside the caller's transaction.")
    return _wallet_for_update(customer=customer, currency=currency, create=True)


# ---------------------------------------------------------------------------------------------- debits


def usage_debit(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    now: datetime,
    subscription_id: str | None = None,
    metric_id: str | None = None,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    event_ids: Sequence[str] = (),
    idempotency_key: str | None = None,
    wallet: Wallet | None = None,
    delivered: bool = False,
) -> DebitOutcome:
    """Debit the incremental cost of usage as it arrives (``amount`` from ``incremental_cost``).

    Credit is consumed in the documented order (reserved capacity for ``metric_id``, grants, paid).
    When it does not cover the cost, the wallet's policy decides:

    * ``block``: raises ``InsufficientBalance(available=, required=)`` before anything is written;
      the caller refuses the event (and rolls back its own transaction).
    * ``allow_overage`` (the default when the customer has no wallet yet): the balance goes negative;
      the uncovered part is recorded as overage for the next invoice (``overage_for_period``).
    * ``auto_top_up``: when the debit takes the balance under the threshold while armed, or when the
      credit cannot cover it, one ``auto_top_up`` of max(configured amount, shortfall) is recorded
      first; it disarms until the balance is back at or above the threshold.

    A negative ``amount`` (a volume tier lowering the period's price) is credited back: first against
    outstanding overage, the rest as credit. ``idempotency_key`` (e.g. the event's key) makes a replay
    return the first outcome without writing. Callable inside the caller's transaction.

    ``wallet``: the customer's wallet in ``currency`` as returned by ``wallet_lock`` in the caller's
    transaction and kept current (this service updates it in place); it is then not selected again.

    ``delivered``: the usage was already delivered and cannot be refused (events stored before their
    customer existed, debited when linked): even under the ``block`` policy the part the credit does
    not cover is recorded as overage for the next invoice.
    """
    amount = ledger_amount(amount)
    key = idempotency_key or ""
    with transaction.atomic():
        if wallet is None:
            wallet = _wallet_for_update(customer=customer, currency=currency, create=False)
        elif wallet.customer_id != customer.pk or wallet.currency != currency:
            raise WalletError("The wallet passed is not this customer's wallet in this currency.")
        if wallet is not None and key and (replay := _debit_replay(wallet, key)) is not None:
            return replay
        if amount == 0:
            balance = wallet.balance if wallet else ZERO
            return DebitOutcome(None, ZERO, ZERO, ZERO, balance, None, False)
        lots = _open_lots(wallet) if wallet is not None and _may_have_open_lots(wallet) else []
        spendable = sorted(
            (lot for lot in lots if _spendable(lot, now=now, metric_id=metric_id, reserved_allowed=True)),
            key=consumption_order,
        )
        coverable = sum((lot.remaining for lot in spendable), ZERO)
        policy = wallet.policy if wallet is not None else DEFAULT_POLICY
        if amount > 0 and policy == BalancePolicy.BLOCK and amount > coverable and not delivered:
            raise InsufficientBalance(currency=currency, available=coverable, required=amount)
        if wallet is None:
            wallet = _wallet_for_update(customer=customer, currency=currency, create=True)
            if key and (replay := _debit_replay(wallet, key)) is not None:
                return replay
        usage_fields = {
            "subscription_id": subscription_id,
            "metric_id": metric_id,
            "period_start": period_start,
            "period_end": period_end,
            "event_ids": list(event_ids),
            "idempotency_key": key,
        }
        if amount < 0:
            return _usage_credit_back(wallet, lots, credit=-amount, now=now, fields=usage_fields)

        auto_entry = None
        if (
            policy == BalancePolicy.AUTO_TOP_UP
            and wallet.auto_top_up_amount
            and wallet.auto_top_up_threshold is not None
        ):
            crossing = wallet.auto_top_up_armed and wallet.balance - amount < wallet.auto_top_up_threshold
            if crossing or amount > coverable:
                top_up = max(wallet.auto_top_up_amount, amount - coverable)
                lot = _lot_create(wallet, kind=LotKind.AUTO_TOP_UP, amount=top_up, now=now)
                auto_entry = _append(
                    wallet,
                    kind=EntryKind.AUTO_TOP_UP,
                    amount=top_up,
                    now=now,
                    allocations=[(lot, top_up)],
                    lot=lot,
                    description="Automatic top-up under the threshold",
                )
                wallet.auto_top_up_armed = False
                lots.append(lot)
                spendable.append(lot)  # paid and newest: consumed last
                _notify(wallet, AUTO_TOP_UP_EVENT, now=now, topUpAmount=amount_str(top_up), entryId=auto_entry.pk)

        allocations, covered = _consume(spendable, amount)
        overage = amount - covered
        entry = _append(
            wallet,
            kind=EntryKind.USAGE_DEBIT,
            amount=-amount,
            overage=overage,
            now=now,
            allocations=[(lot, -taken) for lot, taken in allocations],
            **usage_fields,
        )
        if allocations:
            rows_update(CreditLot, [lot for lot, _ in allocations], ["remaining"])
        _wallet_save(wallet, lots, now=now)
    return DebitOutcome(entry, amount, covered, overage, wallet.balance, auto_entry, False)


@dataclass(frozen=True)
class UsageDebitRequest:
    """One debit of ``usage_debits``: the fields of ``usage_debit`` with the wallet already locked."""

    wallet: Wallet
    customer: Customer
    amount: Decimal
    subscription_id: str | None = None
    metric_id: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    event_ids: Sequence[str] = ()
    idempotency_key: str | None = None


# What ``usage_debits`` writes of an entry (every column but the database-generated ones).
_ENTRY_COLUMNS = [
    "id",
    "wallet_id",
    "sequence",
    "kind",
    "amount",
    "balance_after",
    "overage_amount",
    "lot_id",
    "subscription_id",
    "metric_id",
    "period_start",
    "period_end",
    "idempotency_key",
    "reference",
    "event_ids",
    "description",
    "occurred_at",
    "created_at",
]
_LOT_COLUMNS = tuple(field.attname for field in CreditLot._meta.concrete_fields)


def _open_lots_of(wallet_ids: Sequence[str]) -> list[CreditLot]:
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


def usage_debits(
    *, requests: Sequence[UsageDebitRequest], now: datetime, new_keys: bool = False
) -> list[DebitOutcome | InsufficientBalance]:
    """``usage_debit`` for many wallets at once (one request per wallet, each locked by the caller in
    this transaction, e.g. by ``wallet_lock``), with the same outcome per request — a refusal under the
    block policy is returned as the ``InsufficientBalance`` and writes nothing for that wallet — in a
    fixed number of queries for the common case (a positive cost, no automatic top-up): one replay
    look-up, one lots query, one insert of the entries, one of their allocations, one update of the
    lots and one of the wallets. Other requests go through ``usage_debit`` one by one.

    ``new_keys``: the caller guarantees that no entry can carry the requests' idempotency keys yet
    (they name rows inserted in this very transaction, like the ids of the events being debited):
    the replay look-up is skipped. The unique constraint on the key still stands behind it."""
    if len({id(r.wallet) for r in requests}) != len(requests):
        raise WalletError("usage_debits takes one request per wallet.")
    results: list[DebitOutcome | InsufficientBalance | None] = [None] * len(requests)
    amounts = [ledger_amount(r.amount) for r in requests]
    simple = [
        i
        for i, r in enumerate(requests)
        if amounts[i] > 0 and r.wallet.policy != BalancePolicy.AUTO_TOP_UP and r.wallet.pk is not None
    ]
    # No savepoint of its own: an error inside rolls the caller's whole transaction back (Django marks
    # it), and nothing here is retried; that saves a SAVEPOINT and a RELEASE per request.
    with transaction.atomic(savepoint=False):
        keys = {(requests[i].wallet.pk, requests[i].idempotency_key) for i in simple if requests[i].idempotency_key}
        replayed = set()
        if keys and not new_keys:
            replayed = set(
                LedgerEntry.objects.filter(
                    wallet_id__in={w for w, _ in keys},
                    kind=EntryKind.USAGE_DEBIT,
                    idempotency_key__in={k for _, k in keys},
                ).values_list("wallet_id", "idempotency_key")
            )
        simple = [i for i in simple if (requests[i].wallet.pk, requests[i].idempotency_key) not in replayed]
        lots_by_wallet: dict[str, list[CreditLot]] = {requests[i].wallet.pk: [] for i in simple}
        with_lots = [requests[i].wallet.pk for i in simple if _may_have_open_lots(requests[i].wallet)]
        if with_lots:
            for lot in _open_lots_of(with_lots):
                lots_by_wallet[lot.wallet_id].append(lot)
        entries, allocation_rows, touched_lots, wallets = [], [], [], []
        changed_fields = {"balance", "last_sequence", "updated_at"}
        for i in simple:
            request, amount = requests[i], amounts[i]
            wallet, lots = request.wallet, lots_by_wallet[request.wallet.pk]
            totals_before = [getattr(wallet, name) for name in _WALLET_TOTALS]
            spendable = sorted(
                (lot for lot in lots if _spendable(lot, now=now, metric_id=request.metric_id, reserved_allowed=True)),
                key=consumption_order,
            )
            coverable = sum((lot.remaining for lot in spendable), ZERO)
            if wallet.policy == BalancePolicy.BLOCK and amount > coverable:
                results[i] = InsufficientBalance(currency=wallet.currency, available=coverable, required=amount)
                continue
            allocations, covered = _consume(spendable, amount)
            overage = amount - covered
            wallet.last_sequence += 1
            wallet.balance -= amount
            wallet.overage_outstanding += overage
            entry = instance_new(
                LedgerEntry,
                {
                    "sequence": wallet.last_sequence,
                    "kind": EntryKind.USAGE_DEBIT,
                    "amount": -amount,
                    "balance_after": wallet.balance,
                    "overage_amount": overage,
                    "occurred_at": now,
                    "subscription_id": request.subscription_id,
                    "metric_id": request.metric_id,
                    "period_start": request.period_start,
                    "period_end": request.period_end,
                    "event_ids": list(request.event_ids),
                    "idempotency_key": request.idempotency_key or "",
                },
                related={"wallet": wallet},
            )
            entries.append(entry)
            allocation_rows += [(entry.pk, lot.pk, -taken) for lot, taken in allocations]
            touched_lots += [lot for lot, _ in allocations]
            _wallet_totals(wallet, lots, now=now)
            changed_fields.update(
                name
                for name, value in zip(_WALLET_TOTALS, totals_before, strict=True)
                if getattr(wallet, name) != value
            )
            wallets.append(wallet)
            results[i] = DebitOutcome(entry, amount, covered, overage, wallet.balance, None, False)
        if entries:
            created = timezone.now()
            for entry in entries:
                entry.created_at = created
            rows_insert(LedgerEntry, _ENTRY_COLUMNS, ([getattr(e, f) for f in _ENTRY_COLUMNS] for e in entries))
            for entry in entries:
                entry._state.adding = False  # saved: append-only from here on
            period_debit_totals_add(entries)
        if allocation_rows:
            rows_insert(LedgerAllocation, ["entry_id", "lot_id", "amount"], allocation_rows)
        if touched_lots:
            rows_update(CreditLot, touched_lots, ["remaining"])
        if wallets:
            for wallet in wallets:
                wallet.updated_at = now
            # Only the columns that changed on some wallet.
            rows_update(Wallet, wallets, [name for name in _WALLET_TOTALS if name in changed_fields])
    for i, request in enumerate(requests):
        if results[i] is None:
            try:
                results[i] = usage_debit(
                    customer=request.customer,
                    currency=request.wallet.currency,
                    amount=amounts[i],
                    now=now,
                    subscription_id=request.subscription_id,
                    metric_id=request.metric_id,
                    period_start=request.period_start,
                    period_end=request.period_end,
                    event_ids=request.event_ids,
                    idempotency_key=request.idempotency_key,
                    wallet=request.wallet,
                )
            except InsufficientBalance as refused:
                results[i] = refused
    return results


def _debit_replay(wallet: Wallet, key: str) -> DebitOutcome | None:
    entry = LedgerEntry.objects.filter(wallet=wallet, kind=EntryKind.USAGE_DEBIT, idempotency_key=key).first()
    if entry is None:
        return None
    cost = -entry.amount
    return DebitOutcome(entry, cost, cost - entry.overage_amount, entry.overage_amount, entry.balance_after, None, True)


def _usage_credit_back(wallet: Wallet, lots: list[CreditLot], *, credit: Decimal, now: datetime, fields: dict):
    settled = min(credit, wallet.overage_outstanding)
    rest = credit - settled
    lot = _lot_create(wallet, kind=LotKind.USAGE_CREDIT, amount=rest, now=now) if rest > 0 else None
    entry = _append(
        wallet,
        kind=EntryKind.USAGE_DEBIT,
        amount=credit,
        overage=-settled,
        now=now,
        allocations=[(lot, rest)] if lot else (),
        lot=lot,
        description="Usage credited back (lower period price)",
        **fields,
    )
    _wallet_save(wallet, [*lots, lot] if lot else lots, now=now)
    return DebitOutcome(entry, -credit, -rest, -settled, wallet.balance, None, False)


# ---------------------------------------------------------------------------------------------- invoices


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
        wallet = _wallet_for_update(customer=customer, currency=currency, create=True)
        existing = LedgerEntry.objects.filter(
            wallet=wallet, kind=EntryKind.INVOICE_SETTLEMENT, reference=invoice_ref
        ).first()
        if existing is not None:
            drawn = existing.amount + existing.overage_amount  # amount = overage − drawn; overage_amount = −overage
            return SettlementOutcome(existing, -existing.overage_amount, -drawn, True)
        if overage_billed > wallet.overage_outstanding:
            raise InvalidAmount(
                f"The invoice bills {overage_billed.normalize():f} of overage but only "
                f"{wallet.overage_outstanding.normalize():f} is outstanding."
            )
        lots = _open_lots(wallet)
        general = sorted(
            (lot for lot in lots if _spendable(lot, now=now, metric_id=None, reserved_allowed=False)),
            key=consumption_order,
        )
        allocations, drawn = _consume(general, draw_from_balance)
        entry = _append(
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
        _wallet_save(wallet, lots, now=now)
    return SettlementOutcome(entry, overage_billed, drawn, False)


# ---------------------------------------------------------------------------------------------- policy


def wallet_policy_update(
    *,
    customer: Customer,
    currency: str,
    policy: str,
    now: datetime,
    low_balance_threshold: Decimal | None = None,
    auto_top_up_threshold: Decimal | None = None,
    auto_top_up_amount: Decimal | None = None,
) -> Wallet:
    """Set what happens when the customer's credit in ``currency`` runs out, and the low-balance
    threshold. Only these fields are written (never the cached balance)."""
    if policy not in BalancePolicy.values:
        raise InvalidAmount(f"Unknown balance policy {policy!r}.")
    values = [
        None if v is None else ledger_amount(v)
        for v in (low_balance_threshold, auto_top_up_threshold, auto_top_up_amount)
    ]
    low_balance_threshold, auto_top_up_threshold, auto_top_up_amount = values
    if policy == BalancePolicy.AUTO_TOP_UP and (auto_top_up_threshold is None or not auto_top_up_amount):
        raise InvalidAmount("Automatic top-up needs a threshold and a top-up amount.")
    if auto_top_up_amount is not None and auto_top_up_amount <= 0:
        raise InvalidAmount("The top-up amount must be greater than zero.")
    with transaction.atomic():
        wallet = _wallet_for_update(customer=customer, currency=currency, create=True)
        wallet.policy = policy
        wallet.low_balance_threshold = low_balance_threshold
        wallet.auto_top_up_threshold = auto_top_up_threshold
        wallet.auto_top_up_amount = auto_top_up_amount
        wallet.save(update_fields=["policy", "low_balance_threshold", "auto_top_up_threshold", "auto_top_up_amount"])
        _wallet_save(wallet, _open_lots(wallet), now=now)
    return wallet


# ---------------------------------------------------------------------------------------------- commitments


def commitment_create(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    term_start: datetime,
    term_end: datetime,
    metric_ids: Sequence[str] = (),
    description: str = "",
) -> Commitment:
    """A minimum spend of ``amount`` over [term_start, term_end) on ``metric_ids`` (all when empty)."""
    amount = ledger_amount(amount)
    if amount <= 0:
        raise InvalidAmount("The committed amount must be greater than zero.")
    if term_end <= term_start:
        raise InvalidAmount("The term must end after it starts.")
    commitment = Commitment(
        merchant_id=customer.merchant_id,
        customer=customer,
        currency=currency,
        amount=amount,
        term_start=term_start,
        term_end=term_end,
        metric_ids=sorted(set(metric_ids)),
        description=description,
    )
    commitment.full_clean()
    commitment.save()
    return commitment


def commitment_true_up_due(*, now: datetime) -> list[CommitmentTrueUp]:
    """True up every commitment whose term has ended: drawn = usage debited in the term (its metrics),
    shortfall = max(0, committed − drawn), recorded on the commitment exactly once (locked and
    guarded by ``trued_up_at``). Returns the true-ups recorded now; invoicing bills each shortfall
    (and may list unbilled ones with ``selectors.commitment_true_ups_unbilled``)."""
    from .selectors import commitment_drawn

    results: list[CommitmentTrueUp] = []
    due = Commitment.objects.filter(trued_up_at__isnull=True, term_end__lte=now).order_by("term_end", "id")
    for commitment_id in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            commitment = Commitment.objects.select_for_update().get(pk=commitment_id)
            if commitment.trued_up_at is not None:
                continue
            drawn = commitment_drawn(commitment=commitment)
            commitment.drawn_amount = drawn
            commitment.shortfall = max(ZERO, commitment.amount - drawn)
            commitment.trued_up_at = now
            commitment.save(update_fields=["drawn_amount", "shortfall", "trued_up_at"])
        results.append(CommitmentTrueUp(commitment, commitment.amount, drawn, commitment.shortfall))
    return results


def commitment_true_up_mark_billed(*, commitment: Commitment, invoice_ref: str) -> bool:
    """Invoicing: the shortfall of ``commitment`` is on ``invoice_ref``. False when already marked."""
    return bool(
        Commitment.objects.filter(pk=commitment.pk, trued_up_at__isnull=False, billed_invoice_ref="").update(
            billed_invoice_ref=invoice_ref
        )
    )

"""Usage debits as usage arrives: ``usage_debit`` (one wallet, any cost), ``usage_debits`` (many locked
wallets at once, the real-time hot path: a fixed number of statements for the common case) and
``wallet_lock``. Both debits take the policy's answer from ``policy.debit_decision``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from catalog.models import Customer
from core.bulk import WriteBatch, rows_insert, rows_update
from core.db import instance_from_row
from core.formatting import decimal_string

from ..errors import InsufficientBalance, WalletError
from ..models import (
    BalancePolicy,
    CreditLot,
    EntryKind,
    LedgerAllocation,
    LedgerEntry,
    LotKind,
    Wallet,
    WebhookEventType,
)
from .ledger import (
    WALLET_TOTALS,
    ZERO,
    append_entry,
    consume,
    consumption_order,
    ledger_amount,
    lot_create,
    lot_spendable,
    may_have_open_lots,
    notify,
    open_lots,
    open_lots_of,
    period_debit_totals_add,
    wallet_for_update,
    wallet_save,
    wallet_totals,
)
from .policy import DEFAULT_POLICY, debit_decision

AUTO_TOP_UP_EVENT = WebhookEventType.BALANCE_AUTO_TOP_UP.value


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


def wallet_lock(*, customer: Customer, currency: str) -> Wallet:
    """Lock (creating if need be) the customer's wallet in ``currency`` for the rest of the caller's
    transaction. Invoicing calls it FIRST in ``events_ingest_and_debit``, before it reads the period's
    usage, so concurrent events of one customer are priced one after the other (each sees the usage
    of the previous one as its ``usage_before``)."""
    if not transaction.get_connection().in_atomic_block:
        raise WalletError("wallet_lock only makes sense inside the caller's transaction.")
    return wallet_for_update(customer=customer, currency=currency, create=True)


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
            wallet = wallet_for_update(customer=customer, currency=currency, create=False)
        elif wallet.customer_id != customer.pk or wallet.currency != currency:
            raise WalletError("The wallet passed is not this customer's wallet in this currency.")
        if wallet is not None and key and (replay := _debit_replay(wallet, key)) is not None:
            return replay
        if amount == 0:
            balance = wallet.balance if wallet else ZERO
            return DebitOutcome(None, ZERO, ZERO, ZERO, balance, None, False)
        lots = open_lots(wallet) if wallet is not None and may_have_open_lots(wallet) else []
        spendable = sorted(
            (lot for lot in lots if lot_spendable(lot, now=now, metric_id=metric_id, reserved_allowed=True)),
            key=consumption_order,
        )
        coverable = sum((lot.remaining for lot in spendable), ZERO)
        if amount > 0:
            if wallet is None:  # no credit, the default policy
                decision = debit_decision(
                    amount, balance=ZERO, spendable=coverable, policy=DEFAULT_POLICY, overage_allowed=delivered
                )
            else:
                decision = debit_decision(
                    amount,
                    balance=wallet.balance,
                    spendable=coverable,
                    policy=wallet.policy,
                    overage_allowed=delivered,
                    auto_top_up_armed=wallet.auto_top_up_armed,
                    auto_top_up_threshold=wallet.auto_top_up_threshold,
                    auto_top_up_amount=wallet.auto_top_up_amount,
                )
            if decision.refused:
                raise InsufficientBalance(currency=currency, available=coverable, required=amount)
        if wallet is None:
            wallet = wallet_for_update(customer=customer, currency=currency, create=True)
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
        if top_up := decision.auto_top_up:
            lot = lot_create(wallet, kind=LotKind.AUTO_TOP_UP, amount=top_up, now=now)
            auto_entry = append_entry(
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
            notify(
                wallet,
                AUTO_TOP_UP_EVENT,
                now=now,
                key=auto_entry.pk,
                topUpAmount=decimal_string(top_up),
                entryId=auto_entry.pk,
            )

        allocations, covered = consume(spendable, decision.from_credit)
        overage = decision.overage
        entry = append_entry(
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
        wallet_save(wallet, lots, now=now)
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


# What ``usage_debits`` writes of an entry: every concrete column (none is generated by the database), in
# ``_meta`` order, each with its default for the values a debit does not set.
_ENTRY_FIELDS = [field for field in LedgerEntry._meta.concrete_fields if not field.generated]
_ENTRY_COLUMNS = tuple(field.attname for field in _ENTRY_FIELDS)
_ENTRY_DEFAULTS = tuple((field.attname, field.get_default) for field in _ENTRY_FIELDS)


def usage_debits(
    *,
    requests: Sequence[UsageDebitRequest],
    now: datetime,
    new_keys: bool = False,
    batch: WriteBatch | None = None,
) -> list[DebitOutcome | InsufficientBalance]:
    """``usage_debit`` for many wallets at once (one request per wallet, each locked by the caller in
    this transaction, e.g. by ``wallet_lock``), with the same outcome per request — a refusal under the
    block policy is returned as the ``InsufficientBalance`` and writes nothing for that wallet — in a
    fixed number of queries for the common case (a positive cost, no automatic top-up): one replay
    look-up, one lots query, one insert of the entries, one of their allocations, one update of the
    lots and one of the wallets. Other requests go through ``usage_debit`` one by one.

    ``new_keys``: the caller guarantees that no entry can carry the requests' idempotency keys yet
    (they name rows inserted in this very transaction, like the ids of the events being debited):
    the replay look-up is skipped. The unique constraint on the key still stands behind it.

    ``batch``: the common case's writes (entries, period totals, allocations, lots, wallets) are added
    to it, for the caller to send with its ``execute()`` before anything reads those rows; the returned
    entries are then the rows as they will be written."""
    if len({id(r.wallet) for r in requests}) != len(requests):
        raise WalletError("usage_debits takes one request per wallet.")
    results: list[DebitOutcome | InsufficientBalance | None] = [None] * len(requests)
    amounts = [ledger_amount(r.amount) for r in requests]
    # Here: positive costs of saved wallets without automatic top-up (a top-up writes a lot and an entry
    # before the debit, and a credit back a lot: both go through ``usage_debit``).
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
        with_lots = [requests[i].wallet.pk for i in simple if may_have_open_lots(requests[i].wallet)]
        if with_lots:
            for lot in open_lots_of(with_lots):
                lots_by_wallet[lot.wallet_id].append(lot)
        entries, allocation_rows, touched_lots, wallets = [], [], [], []
        alias = connection.alias
        changed_fields = {"balance", "last_sequence", "updated_at"}
        for i in simple:
            request, amount = requests[i], amounts[i]
            wallet, lots = request.wallet, lots_by_wallet[request.wallet.pk]
            totals_before = [getattr(wallet, name) for name in WALLET_TOTALS]
            spendable = sorted(
                (
                    lot
                    for lot in lots
                    if lot_spendable(lot, now=now, metric_id=request.metric_id, reserved_allowed=True)
                ),
                key=consumption_order,
            )
            coverable = sum((lot.remaining for lot in spendable), ZERO)
            # No automatic top-up here (those wallets took the one-by-one path), so its settings are not read.
            decision = debit_decision(amount, balance=wallet.balance, spendable=coverable, policy=wallet.policy)
            if decision.refused:
                results[i] = InsufficientBalance(currency=wallet.currency, available=coverable, required=amount)
                continue
            allocations, covered = consume(spendable, decision.from_credit)
            overage = decision.overage
            wallet.last_sequence += 1
            wallet.balance -= amount
            wallet.overage_outstanding += overage
            values = {
                "wallet_id": wallet.pk,
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
            }
            # The row as it is inserted below, built as ``from_db`` builds a read one (so append-only: saving
            # it again is refused); the wallet's setter caches the locked wallet.
            row = [values[name] if name in values else default() for name, default in _ENTRY_DEFAULTS]
            entry = instance_from_row(LedgerEntry, alias, _ENTRY_COLUMNS, row)
            entry.wallet = wallet
            entries.append(entry)
            allocation_rows += [(entry.pk, lot.pk, -taken) for lot, taken in allocations]
            touched_lots += [lot for lot, _ in allocations]
            wallet_totals(wallet, lots, now=now)
            changed_fields.update(
                name for name, value in zip(WALLET_TOTALS, totals_before, strict=True) if getattr(wallet, name) != value
            )
            wallets.append(wallet)
            results[i] = DebitOutcome(entry, amount, covered, overage, wallet.balance, None, False)
        if entries:
            created = timezone.now()
            for entry in entries:
                entry.created_at = created
            rows_insert(
                LedgerEntry, _ENTRY_COLUMNS, ([getattr(e, f) for f in _ENTRY_COLUMNS] for e in entries), batch=batch
            )
            period_debit_totals_add(entries, batch=batch)
        if allocation_rows:
            rows_insert(LedgerAllocation, ["entry_id", "lot_id", "amount"], allocation_rows, batch=batch)
        if touched_lots:
            rows_update(CreditLot, touched_lots, ["remaining"], batch=batch)
        if wallets:
            for wallet in wallets:
                wallet.updated_at = now
            # Only the columns that changed on some wallet.
            rows_update(Wallet, wallets, [name for name in WALLET_TOTALS if name in changed_fields], batch=batch)
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
    lot = lot_create(wallet, kind=LotKind.USAGE_CREDIT, amount=rest, now=now) if rest > 0 else None
    entry = append_entry(
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
    wallet_save(wallet, [*lots, lot] if lot else lots, now=now)
    return DebitOutcome(entry, -credit, -rest, -settled, wallet.balance, None, False)

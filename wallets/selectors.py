"""Reads of the prepaid ledger: balances, the ledger, and what invoicing needs to settle a period."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, connections
from django.db.models import Prefetch, Q, QuerySet, Sum

from catalog.models import Customer
from core.db import instances_select, rows_select

from .models import (
    Commitment,
    CommitmentRate,
    CreditLot,
    EntryKind,
    LedgerEntry,
    LowBalanceWallet,
    PeriodDebitTotal,
    Wallet,
)

ZERO = Decimal("0")


def decimal_sum(queryset: QuerySet, field: str) -> Decimal:
    """Σ ``field`` exactly. PostgreSQL sums NUMERIC exactly in the database; SQLite's SUM is a binary
    float (−9.500002 comes back as −9.50000199999999), so there the Decimals are added in Python."""
    if connections[queryset.db].vendor == "sqlite":
        return sum(queryset.values_list(field, flat=True), ZERO)
    return queryset.aggregate(total=Sum(field))["total"] or ZERO


def wallets_for_customer(*, customer: Customer) -> list[Wallet]:
    """The customer's balances, one per currency, from the cached rows (one indexed query)."""
    return list(Wallet.objects.filter(customer=customer).order_by("currency"))


def customer_with_wallets(*, merchant_id: str, customer_id: str) -> tuple[Customer, list[Wallet]] | None:
    """One of the merchant's customers and its balances (one per currency, by currency), or ``None``
    when the merchant has no such customer: ONE prepared statement (customer left-joined to its wallets),
    for the reads that must answer in < 10 ms (balance, usage cost): the two ORM queries it replaces
    cost more Python than their database work."""
    rows = instances_select(
        f"SELECT {{columns}} FROM {Customer._meta.db_table} c"
        f" LEFT JOIN {Wallet._meta.db_table} w ON w.customer_id = c.id"
        " WHERE c.id = %s AND c.merchant_id = %s ORDER BY w.currency",
        [customer_id, merchant_id],
        ((Customer, "c"), (Wallet, "w")),
        prepared=True,
    )
    if not rows:
        return None
    customer = rows[0][0]
    wallets = [wallet for _, wallet in rows if wallet is not None]
    for wallet in wallets:
        wallet.customer = customer  # the relation's setter caches it (the id is the same)
    return customer, wallets


def ledger_for_customer(*, customer: Customer, currency: str | None = None) -> QuerySet[LedgerEntry]:
    """Ledger entries, newest first, each with the running balance after it."""
    entries = LedgerEntry.objects.filter(wallet__customer=customer).select_related("wallet")
    if currency:
        entries = entries.filter(wallet__currency=currency)
    return entries.order_by("-occurred_at", "-sequence", "wallet_id")


def ledger_balance(*, wallet: Wallet) -> Decimal:
    """The balance recomputed from the ledger (the cached ``wallet.balance`` must always equal it)."""
    return decimal_sum(LedgerEntry.objects.filter(wallet=wallet), "amount")


def _usage_entries(*, subscription_id: str, period_start: datetime, period_end: datetime) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(
        kind=EntryKind.USAGE_DEBIT,
        subscription_id=subscription_id,
        period_start=period_start,
        period_end=period_end,
    )


@dataclass(frozen=True)
class PeriodDebits:
    """Usage debited in real time for one subscription period. ``debited`` = the usage cost already
    recorded (Σ increments); ``overage`` = the part the credit did not cover (to bill);
    ``covered_by_credit`` = debited − overage (already paid from prepaid credit: never bill it again)."""

    debited: Decimal
    overage: Decimal

    @property
    def covered_by_credit(self) -> Decimal:
        return self.debited - self.overage


def period_debits(*, subscription_id: str, period_start: datetime, period_end: datetime) -> PeriodDebits:
    entries = _usage_entries(subscription_id=subscription_id, period_start=period_start, period_end=period_end)
    if connections[entries.db].vendor == "sqlite":
        rows = list(entries.values_list("amount", "overage_amount"))
        amount, overage = sum((r[0] for r in rows), ZERO), sum((r[1] for r in rows), ZERO)
    else:
        totals = entries.aggregate(amount=Sum("amount"), overage=Sum("overage_amount"))
        amount, overage = totals["amount"] or ZERO, totals["overage"] or ZERO
    return PeriodDebits(debited=-amount, overage=overage)


def period_debits_by_segment(
    *, subscription_id: str, period_start: datetime, period_end: datetime
) -> dict[datetime, PeriodDebits]:
    """The usage debited in real time for one billing period, per segment: debits are keyed by the
    period's start, or — after a plan change inside the period — by the change moment (the new plan's
    part of the period), always with the period's end. {segment start: debits}, one indexed query."""
    entries = LedgerEntry.objects.filter(
        kind=EntryKind.USAGE_DEBIT,
        subscription_id=subscription_id,
        period_start__gte=period_start,
        period_start__lt=period_end,
        period_end=period_end,
    )
    amounts: dict[datetime, list[Decimal]] = {}
    if connections[entries.db].vendor == "sqlite":
        for start, amount, overage in entries.values_list("period_start", "amount", "overage_amount"):
            totals = amounts.setdefault(start, [ZERO, ZERO])
            totals[0] += amount
            totals[1] += overage
    else:
        for row in entries.values("period_start").annotate(amount=Sum("amount"), overage=Sum("overage_amount")):
            amounts[row["period_start"]] = [row["amount"], row["overage"]]
    return {start: PeriodDebits(debited=-amount, overage=overage) for start, (amount, overage) in amounts.items()}


def period_debits_so_far(*, periods: Sequence[tuple[str, datetime, datetime]]) -> dict[str, PeriodDebits]:
    """What ``period_debits_by_segment`` adds up to, for each (subscription id, period start, period
    end), from the running totals (``PeriodDebitTotal``): one indexed query for all of them, a row per
    plan segment, whatever the number of debits (the usage-cost read). {subscription id: debits}."""
    if not periods:
        return {}
    sums = {subscription_id: [ZERO, ZERO] for subscription_id, _, _ in periods}
    if connection.vendor == "postgresql":
        # One prepared statement whatever the number of periods (they travel as three arrays): building
        # the ORM's OR of filters cost more than the read itself on the usage-cost endpoint.
        rows = rows_select(
            f"SELECT t.subscription_id, t.debited, t.overage FROM {PeriodDebitTotal._meta.db_table} t"
            " JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS p(subscription_id, period_start, period_end)"
            " ON t.subscription_id = p.subscription_id AND t.period_end = p.period_end"
            " AND t.period_start >= p.period_start AND t.period_start < p.period_end",
            [[sub for sub, _, _ in periods], [start for _, start, _ in periods], [end for _, _, end in periods]],
            [None, (PeriodDebitTotal, "debited"), (PeriodDebitTotal, "overage")],
            prepared=True,
        )
    else:
        match = Q()
        for subscription_id, start, end in periods:
            match |= Q(subscription_id=subscription_id, period_start__gte=start, period_start__lt=end, period_end=end)
        rows = PeriodDebitTotal.objects.filter(match).values_list("subscription_id", "debited", "overage")
    for subscription_id, debited, overage in rows:
        sums[subscription_id][0] += debited
        sums[subscription_id][1] += overage
    return {sub: PeriodDebits(debited=debited, overage=overage) for sub, (debited, overage) in sums.items()}


def debited_by_metric(*, subscription_id: str, period_start: datetime, period_end: datetime) -> dict[str, Decimal]:
    """The usage cost debited for one subscription period (or plan part of it), per metric: {metric id:
    Σ debits net of credits back}, added exactly (one indexed query)."""
    totals: dict[str, Decimal] = {}
    for metric_id, amount in _usage_entries(
        subscription_id=subscription_id, period_start=period_start, period_end=period_end
    ).values_list("metric_id", "amount"):
        totals[metric_id] = totals.get(metric_id, ZERO) - amount
    return totals


def subscriptions_with_debits(*, subscription_ids: Collection[str], since: datetime) -> set[str]:
    """Which of these subscriptions have usage debited in real time for a period starting at or after
    ``since`` (one indexed query): a subscription switched to post-paid still settles them."""
    if not subscription_ids:
        return set()
    return set(
        LedgerEntry.objects.filter(
            kind=EntryKind.USAGE_DEBIT, subscription_id__in=list(subscription_ids), period_start__gte=since
        )
        .order_by()
        .values_list("subscription_id", flat=True)
        .distinct()
    )


def debits_for_subscription_period(*, subscription_id: str, period_start: datetime, period_end: datetime) -> Decimal:
    """The usage cost already debited for this subscription period (net of credits back)."""
    return period_debits(subscription_id=subscription_id, period_start=period_start, period_end=period_end).debited


def overage_for_period(*, subscription_id: str, period_start: datetime, period_end: datetime) -> Decimal:
    """The part of this period's debits that the credit did not cover: the next invoice bills it."""
    return period_debits(subscription_id=subscription_id, period_start=period_start, period_end=period_end).overage


def auto_top_ups(*, customer: Customer, currency: str, start: datetime, end: datetime) -> QuerySet[LedgerEntry]:
    """Automatic top-ups recorded in [start, end): paid credit that invoicing bills."""
    return LedgerEntry.objects.filter(
        wallet__customer=customer,
        wallet__currency=currency,
        kind=EntryKind.AUTO_TOP_UP,
        occurred_at__gte=start,
        occurred_at__lt=end,
    ).order_by("occurred_at", "sequence")


def upcoming_expiries(*, customer: Customer) -> QuerySet[CreditLot]:
    """Credit that will expire, soonest first."""
    return (
        CreditLot.objects.filter(
            wallet__customer=customer, remaining__gt=0, expired_at__isnull=True, expires_at__isnull=False
        )
        .select_related("wallet")
        .order_by("expires_at", "id")
    )


def wallets_below_threshold() -> QuerySet[Wallet]:
    return LowBalanceWallet.objects.select_related("customer", "merchant").order_by("balance")


def commitment_drawn(*, commitment: Commitment) -> Decimal:
    """Usage debited during the commitment's term for its metrics (all metrics when it names none)."""
    entries = LedgerEntry.objects.filter(
        kind=EntryKind.USAGE_DEBIT,
        wallet__customer_id=commitment.customer_id,
        wallet__currency=commitment.currency,
        occurred_at__gte=commitment.term_start,
        occurred_at__lt=commitment.term_end,
    )
    if commitment.metric_ids:
        entries = entries.filter(metric_id__in=commitment.metric_ids)
    return -decimal_sum(entries, "amount")


def commitment_true_ups_unbilled() -> QuerySet[Commitment]:
    """Trued-up commitments with a shortfall that no invoice has billed yet."""
    return Commitment.objects.filter(trued_up_at__isnull=False, shortfall__gt=0, billed_invoice_ref="").order_by(
        "term_end", "id"
    )


def _commitments_with_rates() -> QuerySet[Commitment]:
    rates = CommitmentRate.objects.select_related("price").order_by("price__overrides_id", "price_id")
    return Commitment.objects.prefetch_related(Prefetch("rates", queryset=rates))


def commitment_list(*, customer: Customer) -> QuerySet[Commitment]:
    """The customer's commitments, latest term first, with their committed rates."""
    return _commitments_with_rates().filter(customer=customer).order_by("-term_start", "id")


def commitment_get(*, merchant_id: str, commitment_id: str) -> Commitment:
    """One of the merchant's commitments with its committed rates (``Commitment.DoesNotExist`` otherwise)."""
    return _commitments_with_rates().get(merchant_id=merchant_id, pk=commitment_id)

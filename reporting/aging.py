"""Accounts receivable aging: what customers owe, by how long it has been past due, per currency.

An open invoice's ``amount_due`` (issued, partly paid or overdue; never paid or void) falls in one bucket by
whole days past its ``due_at`` as of ``now``: **current** (not yet due, or no due date), **1–30** (due, up to
30 whole days late, so a few hours late counts as day 1 and exactly 30 days late is still 1–30), **31–60**,
**61–90**, **over 90**. Customer credit (``CustomerCreditEntry``, money the merchant owes back and applies to
the next invoices) is shown beside the buckets and taken off the total for the *net receivable*.

Aggregated in the database: one grouped query with conditional sums for the buckets, one for the credit
balances. ``merchant_ids`` (``catalog.selectors.staff_merchant_ids``) keeps those merchants' rows; None: all.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Case, DecimalField, Q, Sum, Value, When
from django.db.models.functions import Coalesce

from catalog.pricing import round_money
from invoicing.models import MONEY_DIGITS, OPEN_STATUSES, CustomerCreditEntry, Invoice

ZERO = Decimal("0")
# (key, label, whole days past due from, to (None: no end)); "current" is everything not yet due.
BUCKETS = (
    ("current", "Current", None, None),
    ("days_1_30", "1–30 days", 0, 30),
    ("days_31_60", "31–60 days", 31, 60),
    ("days_61_90", "61–90 days", 61, 90),
    ("over_90", "Over 90 days", 91, None),
)
BUCKET_KEYS = tuple(key for key, *_ in BUCKETS)
CSV_HEADER = (
    "currency",
    "customer_id",
    "customer",
    *BUCKET_KEYS,
    "total",
    "customer_credit",
    "net_receivable",
)


@dataclass
class AgingRow:
    """One customer's (or, for ``customer_id`` None, one currency's total) receivable in one currency."""

    currency: str
    customer_id: str | None
    customer_name: str
    buckets: dict[str, Decimal]
    credit: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), ZERO)

    @property
    def net(self) -> Decimal:
        return self.total - self.credit

    @property
    def amounts(self) -> list[Decimal]:
        return [self.buckets[key] for key in BUCKET_KEYS]


@dataclass
class CurrencyAging:
    currency: str
    rows: list[AgingRow] = field(default_factory=list)  # by customer name

    @property
    def totals(self) -> AgingRow:
        buckets = {key: sum((row.buckets[key] for row in self.rows), ZERO) for key in BUCKET_KEYS}
        credit = sum((row.credit for row in self.rows), ZERO)
        return AgingRow(currency=self.currency, customer_id=None, customer_name="Total", buckets=buckets, credit=credit)


def _bucket_sum(condition: Q | None) -> Sum:
    money = DecimalField(**MONEY_DIGITS)
    if condition is None:
        return Coalesce(Sum("amount_due"), Value(ZERO), output_field=money)
    return Coalesce(
        Sum(Case(When(condition, then="amount_due"), default=Value(ZERO), output_field=money)),
        Value(ZERO),
        output_field=money,
    )


def _bucket_conditions(now: datetime) -> dict[str, Q]:
    """Whole days past due d = floor((now − due_at) / 1 day); bucket [a, b] holds now − (b+1) days < due_at
    <= now − a days (the 1–30 bucket starts right after the due moment)."""

    def ago(days: int) -> datetime:
        return now - timedelta(days=days)

    return {
        "current": Q(due_at__isnull=True) | Q(due_at__gte=now),
        "days_1_30": Q(due_at__lt=now, due_at__gt=ago(31)),
        "days_31_60": Q(due_at__lte=ago(31), due_at__gt=ago(61)),
        "days_61_90": Q(due_at__lte=ago(61), due_at__gt=ago(91)),
        "over_90": Q(due_at__lte=ago(91)),
    }


def receivables_aging(*, now: datetime, merchant_ids: Collection[str] | None = None) -> list[CurrencyAging]:
    """The aging report as of ``now``: per currency (alphabetical), one row per customer with an open
    amount due or a credit balance (by name), and the currency's totals (``CurrencyAging.totals``)."""
    invoices = Invoice.objects.filter(status__in=OPEN_STATUSES, amount_due__gt=0)
    credits = CustomerCreditEntry.objects.all()
    if merchant_ids is not None:
        invoices = invoices.filter(merchant_id__in=merchant_ids)
        credits = credits.filter(merchant_id__in=merchant_ids)
    conditions = _bucket_conditions(now)
    rows = (
        invoices.order_by()
        .values("currency", "customer_id", "customer__name")
        .annotate(**{key: _bucket_sum(conditions[key]) for key in BUCKET_KEYS})
    )
    by_key: dict[tuple[str, str], AgingRow] = {}
    for row in rows:
        currency = row["currency"]
        # SQLite sums decimals as floats: amounts in minor units, so rounding restores the exact sum.
        by_key[(currency, row["customer_id"])] = AgingRow(
            currency=currency,
            customer_id=row["customer_id"],
            customer_name=row["customer__name"],
            buckets={key: round_money(Decimal(row[key]), currency) for key in BUCKET_KEYS},
            credit=round_money(ZERO, currency),
        )
    balances = (
        credits.order_by()
        .values("currency", "customer_id", "customer__name")
        .annotate(balance=Sum("amount"))
        .filter(balance__gt=0)
    )
    for row in balances:
        currency = row["currency"]
        aging_row = by_key.setdefault(
            (currency, row["customer_id"]),
            AgingRow(
                currency=currency,
                customer_id=row["customer_id"],
                customer_name=row["customer__name"],
                buckets={key: round_money(ZERO, currency) for key in BUCKET_KEYS},
            ),
        )
        aging_row.credit = round_money(Decimal(row["balance"]), currency)
    report: dict[str, CurrencyAging] = {}
    for aging_row in sorted(by_key.values(), key=lambda r: (r.currency, r.customer_name, r.customer_id)):
        report.setdefault(aging_row.currency, CurrencyAging(currency=aging_row.currency)).rows.append(aging_row)
    return list(report.values())


def _csv_cells(row: AgingRow) -> list[str]:
    return [
        row.currency,
        row.customer_id or "",
        row.customer_name,
        *(str(amount) for amount in row.amounts),
        str(row.total),
        str(row.credit),
        str(row.net),
    ]


def receivables_aging_csv(report: list[CurrencyAging]) -> str:
    """The report as CSV: a header, each currency's customer rows then its "Total" row (empty customer id);
    amounts are decimal strings at the currency's minor unit ("1250.00"; never floats, no separators)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for currency in report:
        for row in currency.rows:
            writer.writerow(_csv_cells(row))
        writer.writerow(_csv_cells(currency.totals))
    return buffer.getvalue()

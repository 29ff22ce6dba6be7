"""Revenue reads for ``/v0/revenue`` and ``/v0/revenue/accounts``: what was billed in a window, net of
credit notes, and what each customer owes today.

- **Billed** (``revenue_summary``): the ``subtotal`` (net of tax) of issued, partially paid, overdue and paid
  invoices placed in [start, end) by their issue time (``issued`` basis); credit notes (issued, not voided)
  are subtracted by their issue time, by their ``subtotal`` too. On the ``billingPeriod`` basis each invoice
  line counts at the start of the period it bills and each credit note on the lines it credits
  (costs/placement.py): an invoice billing two periods counts in both (once in each count), its outstanding
  amount split like its lines. ``netRevenue`` = invoiced − credited. Draft and voided invoices are not
  revenue.
- **Refunds** (the client's ``totalRefunds``): the same credit notes' ``total``, tax included, as the
  client defines it; ``netRevenue`` subtracts them without tax (a $200 credit note with 10 % tax is
  ``totalRefunds`` 220.00 and takes 200.00 off ``netRevenue``).
- **Outstanding**: open invoices' ``amount_due``; **paid**: paid invoices' ``subtotal``; Meterline writes
  nothing off (``writtenOff`` is always zero) and grants no rebates.
- **Payments**: recorded payments (``invoicing.Payment``) received in the window; provider sessions still
  pending are not revenue and not counted.
- **Groups** (per customer or plan): the same figures per group, and per group and bucket (the trend's
  queries, grouped by the group key too); a credit note counts in its invoice's plan.

Every read is a fixed number of grouped queries; amounts are summed exactly and rounded to the currency.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDay, TruncHour, TruncWeek

from catalog.models import Customer, Merchant
from catalog.pricing import round_money
from invoicing.models import (
    MONEY_DIGITS,
    OPEN_STATUSES,
    CreditNote,
    CreditNoteStatus,
    Invoice,
    InvoiceStatus,
    Payment,
)

from . import placement
from .margin import BILLING_PERIOD_BASIS, REVENUE_STATUSES
from .selectors import MAX_WINDOWS, PeriodError, check_period

ZERO = Decimal("0")
MONEY = DecimalField(**MONEY_DIGITS)
BUCKETS = {
    "hour": (TruncHour, timedelta(hours=1)),
    "day": (TruncDay, timedelta(days=1)),
    "week": (TruncWeek, timedelta(weeks=1)),
}
MAX_SUBSCRIPTION_IDS = 50
MAX_CUSTOMER_IDS = 100


def _money(value, currency: str) -> Decimal:
    # SQLite sums decimals as floats: amounts are in minor units, so rounding restores the exact sum.
    return round_money(Decimal(str(value or 0)), currency)


# --- accounts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outstanding:
    amount: Decimal
    count: int
    awaiting_amount: Decimal
    awaiting_count: int
    failed_amount: Decimal
    failed_count: int


@dataclass(frozen=True)
class AccountRow:
    customer_id: str
    customer_name: str
    currency: str
    outstanding: Outstanding


def _outstanding_aggregates() -> dict:
    open_q = Q(status__in=OPEN_STATUSES)
    failed_q = open_q & Q(payment_failed_at__isnull=False)
    awaiting_q = open_q & Q(payment_failed_at__isnull=True)
    return {
        "amount": Coalesce(Sum("amount_due", filter=open_q), ZERO, output_field=MONEY),
        "count": Count("id", filter=open_q),
        "awaiting_amount": Coalesce(Sum("amount_due", filter=awaiting_q), ZERO, output_field=MONEY),
        "awaiting_count": Count("id", filter=awaiting_q),
        "failed_amount": Coalesce(Sum("amount_due", filter=failed_q), ZERO, output_field=MONEY),
        "failed_count": Count("id", filter=failed_q),
    }


def _outstanding(row: dict, currency: str) -> Outstanding:
    return Outstanding(
        amount=_money(row["amount"], currency),
        count=row["count"],
        awaiting_amount=_money(row["awaiting_amount"], currency),
        awaiting_count=row["awaiting_count"],
        failed_amount=_money(row["failed_amount"], currency),
        failed_count=row["failed_count"],
    )


def revenue_accounts(
    *, merchant: Merchant, customer_ids: Collection[str] | None, limit: int, offset: int
) -> tuple[list[AccountRow], int, list[tuple[str, Outstanding]]]:
    """Each customer's account as at now, one row per customer and currency it was billed in (issued
    invoices), by customer name; the page, the number of rows, and a total per currency. Three queries."""
    invoices = Invoice.objects.filter(merchant=merchant, status__in=REVENUE_STATUSES)
    if customer_ids is not None:
        invoices = invoices.filter(customer_id__in=customer_ids)
    grouped = invoices.order_by().values("customer_id", "customer__name", "currency")
    total = grouped.distinct().count()
    page = grouped.annotate(**_outstanding_aggregates()).order_by("customer__name", "customer_id", "currency")[
        offset : offset + limit
    ]
    rows = [
        AccountRow(row["customer_id"], row["customer__name"], row["currency"], _outstanding(row, row["currency"]))
        for row in page
    ]
    totals = [
        (row["currency"], _outstanding(row, row["currency"]))
        for row in invoices.order_by().values("currency").annotate(**_outstanding_aggregates()).order_by("currency")
    ]
    return rows, total, totals


def customers_missing(*, merchant: Merchant, customer_ids: Collection[str]) -> list[str]:
    """The ids that are not customers of ``merchant`` (one query)."""
    found = set(Customer.objects.filter(merchant=merchant, pk__in=list(customer_ids)).values_list("pk", flat=True))
    return sorted(set(customer_ids) - found)


# --- summary ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    amount: Decimal = ZERO
    count: int = 0


@dataclass
class CurrencySummary:
    currency: str
    invoiced: Decimal = ZERO
    credited: Decimal = ZERO  # credit notes' subtotals (net of tax): what netRevenue subtracts
    refunded: Decimal = ZERO  # the same credit notes' totals, tax included: the client's totalRefunds
    credit_count: int = 0
    issued: Category = Category()
    outstanding: Category = Category()
    paid: Category = Category()
    payments: Category = Category()
    trend: dict[datetime, dict[str, Decimal]] = field(default_factory=dict)  # bucket → issued, credited, payments
    groups: dict[str, dict] = field(default_factory=dict)  # key → {label, outstanding, paid, revenue, count}
    # With a grouping: bucket → group key → issued, credited (the per-group trend)
    group_trend: dict[datetime, dict[str, dict[str, Decimal]]] = field(default_factory=dict)

    @property
    def net_revenue(self) -> Decimal:
        return self.invoiced - self.credited


def revenue_extent(
    *,
    merchant: Merchant,
    currency: str | None = None,
    customer_id: str | None = None,
    subscription_ids: Collection[str] | None = None,
) -> tuple[datetime, datetime] | None:
    """The first and last issue instants of the invoices that count as revenue under these filters, at any
    time (both included), or None when there is none: where a caller's revenue lies when a window held
    nothing. One aggregate query."""
    invoices = Invoice.objects.filter(merchant=merchant, status__in=REVENUE_STATUSES)
    if currency:
        invoices = invoices.filter(currency=currency)
    if customer_id:
        invoices = invoices.filter(customer_id=customer_id)
    if subscription_ids is not None:
        invoices = invoices.filter(subscription_id__in=subscription_ids)
    bounds = invoices.aggregate(first=Min("issued_at"), last=Max("issued_at"))
    if bounds["first"] is None:
        return None
    return bounds["first"].astimezone(UTC), bounds["last"].astimezone(UTC)


def check_buckets(*, start: datetime, end: datetime, bucket_width: str) -> None:
    check_period(start=start, end=end)
    if (end - start) / BUCKETS[bucket_width][1] > MAX_WINDOWS:
        raise PeriodError(
            f"At most {MAX_WINDOWS} {bucket_width} buckets per request; widen bucketWidth.", field="bucketWidth"
        )


def bucket_starts(*, start: datetime, end: datetime, bucket_width: str) -> list[datetime]:
    """The UTC bucket starts covering [start, end): hours, days, or ISO weeks (Monday)."""
    first = start.astimezone(UTC)
    if bucket_width == "hour":
        first = first.replace(minute=0, second=0, microsecond=0)
    else:
        first = first.replace(hour=0, minute=0, second=0, microsecond=0)
        if bucket_width == "week":
            first -= timedelta(days=first.weekday())
    step = BUCKETS[bucket_width][1]
    starts = []
    while first < end:
        starts.append(first)
        first += step
    return starts


def revenue_summary(
    *,
    merchant: Merchant,
    start: datetime,
    end: datetime,
    bucket_width: str = "day",
    currency: str | None = None,
    customer_id: str | None = None,
    subscription_ids: Collection[str] | None = None,
    group_by: str | None = None,
    basis: str = "issued",
) -> dict[str, CurrencySummary]:
    """Currency → its summary over [start, end) (only ``currency`` when given). Six grouped queries on
    either basis: invoices, credit notes, payments, and their trend per bucket (one each)."""
    check_buckets(start=start, end=end, bucket_width=bucket_width)
    trunc = BUCKETS[bucket_width][0]
    payments = Payment.objects.filter(merchant=merchant, received_at__gte=start, received_at__lt=end)
    # Each figure reads one or two parts (a queryset and the path from its rows to their invoice or credit
    # note), summed in one query (UNION ALL); every row has ``placed_at`` and its amounts.
    invoice_parts: list[tuple[QuerySet, str]]
    note_parts: list[tuple[QuerySet, str]]
    invoices = Invoice.objects.filter(merchant=merchant, status__in=REVENUE_STATUSES)
    notes = CreditNote.objects.filter(merchant=merchant, status=CreditNoteStatus.ISSUED)
    if basis == BILLING_PERIOD_BASIS:
        # Invoice and credit-note lines, each at the period it bills (costs/placement.py), and the documents
        # without lines whole at their (invoice's) billing period.
        notes = notes.filter(invoice__status__in=REVENUE_STATUSES)
        invoice_parts, note_parts = placement.billing_period_parts(invoices, notes)
    else:
        invoice_parts = [(invoices.alias(placed_at=F("issued_at"), billed=F("subtotal"), owed=F("amount_due")), "")]
        note_parts = [(notes.alias(placed_at=F("issued_at"), credited=F("subtotal"), refund_total=F("total")), "")]

    def narrowed(queryset: QuerySet, path: str, *, note: bool) -> QuerySet:
        queryset = queryset.filter(placed_at__gte=start, placed_at__lt=end)
        if currency:
            queryset = queryset.filter(**{f"{path}currency": currency})
        if customer_id:
            queryset = queryset.filter(**{f"{path}customer_id": customer_id})
        if subscription_ids is not None:
            queryset = queryset.filter(**{f"{path}{'invoice__' if note else ''}subscription_id__in": subscription_ids})
        return queryset

    invoice_parts = [(narrowed(q, path, note=False), path) for q, path in invoice_parts]
    note_parts = [(narrowed(q, path, note=True), path) for q, path in note_parts]
    if currency:
        payments = payments.filter(currency=currency)
    if customer_id:
        payments = payments.filter(customer_id=customer_id)

    summaries: dict[str, CurrencySummary] = {}

    def of(code: str) -> CurrencySummary:
        return summaries.setdefault(code, CurrencySummary(currency=code))

    group_field = {"customer": ("customer_id", "customer__name"), "plan": ("plan_id", "plan__name")}.get(group_by or "")
    invoice_columns = {"currency": "currency"}
    note_columns = {"currency": "currency"}
    if group_field:
        invoice_columns |= {"group": group_field[0], "label": group_field[1]}
        # A credit note counts in its invoice's plan.
        prefix = "invoice__" if group_by == "plan" else ""
        note_columns |= {"group": prefix + group_field[0], "label": prefix + group_field[1]}

    def invoice_figures(path: str) -> dict:
        # An invoice counts once per group however many of its lines lie in the window.
        open_q, paid_q = Q(**{f"{path}status__in": OPEN_STATUSES}), Q(**{f"{path}status": InvoiceStatus.PAID})
        return {
            "invoiced": Coalesce(Sum("billed"), ZERO, output_field=MONEY),
            "count": Count(f"{path}id", distinct=True),
            "outstanding": Coalesce(Sum("owed", filter=open_q), ZERO, output_field=MONEY),
            "outstanding_count": Count(f"{path}id", filter=open_q, distinct=True),
            "paid": Coalesce(Sum("billed", filter=paid_q), ZERO, output_field=MONEY),
            "paid_count": Count(f"{path}id", filter=paid_q, distinct=True),
        }

    def note_figures(path: str) -> dict:
        return {
            "amount": Coalesce(Sum("credited"), ZERO, output_field=MONEY),
            "total": Coalesce(Sum("refund_total"), ZERO, output_field=MONEY),
            "count": Count(f"{path}id", distinct=True),
        }

    for row in _grouped(invoice_parts, invoice_columns, invoice_figures):
        code = row["currency"]
        summary = of(code)
        invoiced = _money(row["invoiced"], code)
        outstanding = _money(row["outstanding"], code)
        paid = _money(row["paid"], code)
        summary.invoiced += invoiced
        summary.issued = Category(summary.issued.amount + invoiced, summary.issued.count + row["count"])
        summary.outstanding = Category(
            summary.outstanding.amount + outstanding, summary.outstanding.count + row["outstanding_count"]
        )
        summary.paid = Category(summary.paid.amount + paid, summary.paid.count + row["paid_count"])
        if group_field:
            group = summary.groups.setdefault(row["group"], _group(row["label"]))
            group["outstanding"] = _add(group["outstanding"], outstanding, row["outstanding_count"])
            group["paid"] = _add(group["paid"], paid, row["paid_count"])
            group["revenue"] += invoiced
            group["count"] += row["count"]
    for row in _grouped(note_parts, note_columns, note_figures):
        code = row["currency"]
        summary = of(code)
        credited = _money(row["amount"], code)
        summary.credited += credited
        summary.refunded += _money(row["total"], code)
        summary.credit_count += row["count"]
        if group_field:
            group = summary.groups.setdefault(row["group"], _group(row["label"]))
            group["revenue"] -= credited
    for row in (
        payments.order_by()
        .values("currency")
        .annotate(amount=Coalesce(Sum("amount"), ZERO, output_field=MONEY), count=Count("id"))
    ):
        of(row["currency"]).payments = Category(_money(row["amount"], row["currency"]), row["count"])

    # The trend: invoiced, credited and received per bucket (UTC), one grouped query each; invoiced and
    # credited also per group when grouping (the same query, grouped by the group key too).
    def amount_of(value: str):
        return lambda path: {"amount": Coalesce(Sum(value), ZERO, output_field=MONEY)}

    for parts, columns, value, kind in (
        (invoice_parts, invoice_columns, "billed", "issued"),
        (note_parts, note_columns, "credited", "credited"),
        ([(payments.alias(placed_at=F("received_at")), "")], {"currency": "currency"}, "amount", "payments"),
    ):
        bucketed = [(q.annotate(bucket=trunc("placed_at", tzinfo=UTC)), path) for q, path in parts]
        by_bucket = {"bucket": "", **{name: path for name, path in columns.items() if name != "label"}}
        for row in _grouped(bucketed, by_bucket, amount_of(value)):
            code = row["currency"]
            start = row["bucket"].astimezone(UTC)
            amount = _money(row["amount"], code)
            bucket = of(code).trend.setdefault(start, {})
            bucket[kind] = bucket.get(kind, ZERO) + amount
            if "group" in row:
                figures = of(code).group_trend.setdefault(start, {}).setdefault(row["group"], {})
                figures[kind] = figures.get(kind, ZERO) + amount
    return summaries


def _grouped(parts: list[tuple[QuerySet, str]], columns: dict[str, str], figures) -> list[dict]:
    """The parts' rows grouped by ``columns`` (name → path from the document; "" for the row's own
    ``bucket``) with the aggregates ``figures(path)``, in one query (UNION ALL of the parts), as dicts by
    column name and figure name; the caller adds up rows of the same key (one per part)."""
    selects = [
        queryset.order_by()
        .values(*(f"{path}{column}" if column else name for name, column in columns.items()))
        .annotate(**figures(path))
        for queryset, path in parts
    ]
    query = selects[0].union(*selects[1:], all=True) if len(selects) > 1 else selects[0]
    first = parts[0][1]
    keys = {name: f"{first}{column}" if column else name for name, column in columns.items()}
    return [{**{name: row[key] for name, key in keys.items()}, **{f: row[f] for f in figures(first)}} for row in query]


def _add(category: Category, amount: Decimal, count: int) -> Category:
    return Category(category.amount + amount, category.count + count)


def _group(label: str | None) -> dict:
    return {"label": label, "outstanding": Category(), "paid": Category(), "revenue": ZERO, "count": 0}

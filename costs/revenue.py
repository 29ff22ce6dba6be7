"""Revenue reads for ``/v0/revenue`` and ``/v0/revenue/accounts``: what was billed in a window, net of
credit notes, and what each customer owes today.

- **Billed** (``revenue_summary``): the ``subtotal`` (net of tax) of issued, partially paid, overdue and paid
  invoices placed in [start, end) by their issue time (``issued`` basis) or the start of the billing period
  they bill (``billingPeriod``); credit notes (issued, not voided) are subtracted by their issue time (by
  their invoice's billing period on that basis), by their ``subtotal`` too. ``netRevenue`` = invoiced −
  credited. Draft and voided invoices are not revenue.
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

from django.db.models import Count, DecimalField, Max, Min, Q, Sum
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
    """Currency → its summary over [start, end) (only ``currency`` when given). Five grouped queries:
    invoices, credit notes, payments, and the invoice and credit-note trend per bucket (one each)."""
    check_buckets(start=start, end=end, bucket_width=bucket_width)
    trunc = BUCKETS[bucket_width][0]
    invoices = Invoice.objects.filter(merchant=merchant, status__in=REVENUE_STATUSES)
    notes = CreditNote.objects.filter(merchant=merchant, status=CreditNoteStatus.ISSUED)
    payments = Payment.objects.filter(merchant=merchant, received_at__gte=start, received_at__lt=end)
    if basis == BILLING_PERIOD_BASIS:
        invoice_time, note_time = "period_start", "invoice__period_start"
        notes = notes.filter(invoice__status__in=REVENUE_STATUSES)
    else:
        invoice_time, note_time = "issued_at", "issued_at"
    invoices = invoices.filter(**{f"{invoice_time}__gte": start, f"{invoice_time}__lt": end})
    notes = notes.filter(**{f"{note_time}__gte": start, f"{note_time}__lt": end})
    if currency:
        invoices, notes, payments = (q.filter(currency=currency) for q in (invoices, notes, payments))
    if customer_id:
        invoices, notes, payments = (q.filter(customer_id=customer_id) for q in (invoices, notes, payments))
    if subscription_ids is not None:
        invoices = invoices.filter(subscription_id__in=subscription_ids)
        notes = notes.filter(invoice__subscription_id__in=subscription_ids)

    summaries: dict[str, CurrencySummary] = {}

    def of(code: str) -> CurrencySummary:
        return summaries.setdefault(code, CurrencySummary(currency=code))

    group_field = {"customer": ("customer_id", "customer__name"), "plan": ("plan_id", "plan__name")}.get(group_by or "")
    keys = ["currency", *(group_field or ())]
    for row in (
        invoices.order_by()
        .values(*keys)
        .annotate(
            invoiced=Coalesce(Sum("subtotal"), ZERO, output_field=MONEY),
            count=Count("id"),
            outstanding=Coalesce(Sum("amount_due", filter=Q(status__in=OPEN_STATUSES)), ZERO, output_field=MONEY),
            outstanding_count=Count("id", filter=Q(status__in=OPEN_STATUSES)),
            paid=Coalesce(Sum("subtotal", filter=Q(status=InvoiceStatus.PAID)), ZERO, output_field=MONEY),
            paid_count=Count("id", filter=Q(status=InvoiceStatus.PAID)),
        )
    ):
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
            group = summary.groups.setdefault(row[group_field[0]], _group(row[group_field[1]]))
            group["outstanding"] = Category(outstanding, row["outstanding_count"])
            group["paid"] = Category(paid, row["paid_count"])
            group["revenue"] += invoiced
            group["count"] = row["count"]
    note_keys = ["currency", *(("invoice__" + f if group_by == "plan" else f) for f in (group_field or ()))]
    for row in (
        notes.order_by()
        .values(*note_keys)
        .annotate(
            amount=Coalesce(Sum("subtotal"), ZERO, output_field=MONEY),
            total=Coalesce(Sum("total"), ZERO, output_field=MONEY),
            count=Count("id"),
        )
    ):
        code = row["currency"]
        summary = of(code)
        credited = _money(row["amount"], code)
        summary.credited += credited
        summary.refunded += _money(row["total"], code)
        summary.credit_count += row["count"]
        if group_field:
            key = row[note_keys[1]]
            group = summary.groups.setdefault(key, _group(row[note_keys[2]]))
            group["revenue"] -= credited
    for row in (
        payments.order_by()
        .values("currency")
        .annotate(amount=Coalesce(Sum("amount"), ZERO, output_field=MONEY), count=Count("id"))
    ):
        of(row["currency"]).payments = Category(_money(row["amount"], row["currency"]), row["count"])

    # The trend: invoiced, credited and received per bucket (UTC), one grouped query each; invoiced and
    # credited also per group when grouping (the same query, grouped by the group key too).
    for queryset, moment, value, kind, group_key in (
        (invoices, invoice_time, "subtotal", "issued", group_field and group_field[0]),
        (notes, note_time, "subtotal", "credited", group_field and note_keys[1]),
        (payments, "received_at", "amount", "payments", None),
    ):
        for row in (
            queryset.order_by()
            .annotate(bucket=trunc(moment, tzinfo=UTC))
            .values("currency", "bucket", *([group_key] if group_key else []))
            .annotate(amount=Coalesce(Sum(value), ZERO, output_field=MONEY))
        ):
            code = row["currency"]
            start = row["bucket"].astimezone(UTC)
            amount = _money(row["amount"], code)
            bucket = of(code).trend.setdefault(start, {})
            bucket[kind] = bucket.get(kind, ZERO) + amount
            if group_key:
                figures = of(code).group_trend.setdefault(start, {}).setdefault(row[group_key], {})
                figures[kind] = figures.get(kind, ZERO) + amount
    return summaries


def _group(label: str | None) -> dict:
    return {"label": label, "outstanding": Category(), "paid": Category(), "revenue": ZERO, "count": 0}

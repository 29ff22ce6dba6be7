"""Reads behind the billing home page. Every selector is a fixed number of SQL queries, whatever the data size.

- Revenue per month: one query over issued and paid invoices (by issue month, net of tax) less issued credit
  notes (by their issue month).
- Usage per day: one grouped query per charted metric (``metering.selectors.usage_grouped`` with DAY windows,
  so the home page counts exactly what billing counts); at most ``MAX_USAGE_METRICS`` metrics are charted.
- Top customers: one grouped query over the open draft invoices' totals (the amounts waiting to be issued;
  see reporting/README.md for why drafts and not a live preview).
- Lists that need action: one query each, ``limit + 1`` rows to know whether there are more.

``merchant_ids`` (the merchants a staff user is limited to, ``catalog.selectors.staff_merchant_ids``) keeps
only those merchants' rows; None keeps every merchant. Billing runs are platform-wide: none for a limited user.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Count, DecimalField, F, QuerySet, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from catalog.models import BillableMetric, Product
from catalog.pricing import round_money
from invoicing.models import (
    MONEY_DIGITS,
    OPEN_STATUSES,
    BillingRun,
    BillingRunStatus,
    CreditNote,
    CreditNoteStatus,
    Invoice,
    InvoiceStatus,
)
from metering.selectors import usage_grouped
from wallets.models import LowBalanceWallet

ZERO = Decimal("0")
REVENUE_STATUSES = (*OPEN_STATUSES, InvoiceStatus.PAID)
MAX_USAGE_METRICS = 6
MAX_PRODUCTS = 200
MAX_CURRENCIES = 20
# A closed UTC day's usage only changes with late events: it is cached this long (Django's cache), so a
# page load aggregates today's events plus any closed day not in the cache, in one query per metric.
CLOSED_DAY_CACHE_SECONDS = 600


@dataclass(frozen=True)
class MonthAmount:
    month: date  # first day of the month, in the admin's time zone
    amount: Decimal


@dataclass(frozen=True)
class MetricUsage:
    metric: BillableMetric
    values: list[Decimal]  # one per day of ``UsageByDay.days``


@dataclass(frozen=True)
class UsageByDay:
    days: list[date]  # UTC days, oldest first
    metrics: list[MetricUsage]
    more_metrics: bool  # the product has more metrics than are charted


@dataclass(frozen=True)
class CustomerAmount:
    customer_id: str
    customer_name: str
    amount: Decimal
    invoices: int


@dataclass(frozen=True)
class Rows:
    """The first rows of a list, and whether more exist."""

    rows: list
    has_more: bool


def month_starts(*, now: datetime, months: int) -> list[datetime]:
    """The first instants of the last ``months`` months (the current one included), oldest first, local time."""
    local = timezone.localtime(now)
    year, month = local.year, local.month
    starts = []
    for _ in range(months):
        starts.append(local.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return [timezone.make_aware(start.replace(tzinfo=None)) for start in reversed(starts)]


def _invoices(merchant_ids: Collection[str] | None) -> QuerySet:
    return Invoice.objects.all() if merchant_ids is None else Invoice.objects.filter(merchant_id__in=merchant_ids)


def invoice_currencies(*, merchant_ids: Collection[str] | None = None) -> list[str]:
    """Currencies that appear on invoices, alphabetical (one query)."""
    return list(
        _invoices(merchant_ids)
        .exclude(status=InvoiceStatus.VOID)
        .order_by("currency")
        .values_list("currency", flat=True)
        .distinct()[:MAX_CURRENCIES]
    )


def revenue_by_month(
    *, currency: str, now: datetime, months: int = 12, merchant_ids: Collection[str] | None = None
) -> list[MonthAmount]:
    """Invoiced revenue net of credit notes per month; zeros included. One query: the subtotals (net of tax)
    of issued and paid invoices by issue month, less the subtotals of issued (not voided) credit notes by
    the credit note's issue month, each grouped in SQL (UNION ALL of two grouped selects).

    Voided invoices are not revenue; a voided credit note takes nothing off. A month can be negative when
    it credits more than it invoices.
    """
    starts = month_starts(now=now, months=months)
    invoiced = (
        _invoices(merchant_ids)
        .filter(currency=currency, status__in=REVENUE_STATUSES, issued_at__gte=starts[0])
        .annotate(month=TruncMonth("issued_at"))
        .order_by()
        .values("month")
        .annotate(amount=Sum("subtotal"))
    )
    notes = CreditNote.objects.filter(currency=currency, status=CreditNoteStatus.ISSUED, issued_at__gte=starts[0])
    if merchant_ids is not None:
        notes = notes.filter(merchant_id__in=merchant_ids)
    credited = (
        notes.annotate(month=TruncMonth("issued_at"))
        .order_by()
        .values("month")
        .annotate(amount=Sum(-F("subtotal"), output_field=DecimalField(**MONEY_DIGITS)))
    )
    by_month: dict[date, Decimal] = {}
    for row in invoiced.union(credited, all=True):
        month = timezone.localtime(row["month"]).date()
        by_month[month] = by_month.get(month, ZERO) + (row["amount"] or ZERO)
    return [
        MonthAmount(
            month=start.date(),
            # SQLite sums decimals as floats: amounts are in minor units, so rounding restores the exact sum.
            amount=round_money(by_month.get(timezone.localtime(start).date(), ZERO), currency),
        )
        for start in starts
    ]


def product_choices(*, merchant_ids: Collection[str] | None = None) -> list[tuple[str, str]]:
    """(id, name) of the products to pick from (one query)."""
    products = Product.objects.all() if merchant_ids is None else Product.objects.filter(merchant_id__in=merchant_ids)
    return list(products.order_by("name", "id").values_list("id", "name")[:MAX_PRODUCTS])


def usage_by_day(*, product_id: str, now: datetime, days: int = 30) -> UsageByDay:
    """Usage of the product's metrics per UTC day over the last ``days`` days (today so far included).

    Aggregated in SQL by metering (filters, values and aggregation as billing reads them): one query for
    the metrics, one for their filters, one per charted metric. Closed days are cached for
    ``CLOSED_DAY_CACHE_SECONDS`` (late events show after that); today is always read live.
    """
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    day_list = [first + timedelta(days=offset) for offset in range(days)]
    end = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
    metrics = list(
        BillableMetric.objects.filter(product_id=product_id)
        .order_by("name", "id")
        .prefetch_related("filters")[: MAX_USAGE_METRICS + 1]
    )
    series = []
    for metric in metrics[:MAX_USAGE_METRICS]:
        by_day = _closed_days_cached(metric, day_list[:-1])
        missing = [day for day in day_list[:-1] if day not in by_day]
        # One query per metric: from the first closed day not in the cache (else today) to the end of today.
        query_from = missing[0] if missing else today
        groups = usage_grouped(
            metric=metric,
            start=datetime(query_from.year, query_from.month, query_from.day, tzinfo=UTC),
            end=end,
            group_by=[],
            window_size="DAY",
        )
        fresh = {day: ZERO for day in day_list if day >= query_from}
        fresh.update({group.window_start.astimezone(UTC).date(): group.value for group in groups})
        _cache_closed_days(metric, {day: value for day, value in fresh.items() if day < today})
        by_day.update(fresh)
        series.append(MetricUsage(metric=metric, values=[by_day.get(day, ZERO) for day in day_list]))
    return UsageByDay(days=day_list, metrics=series, more_metrics=len(metrics) > MAX_USAGE_METRICS)


def _day_key(metric: BillableMetric, day: date) -> str:
    filters = tuple((f.property_path, f.operator, tuple(map(str, f.values or ()))) for f in metric.filters.all())
    digest = hashlib.sha256(repr(filters).encode()).hexdigest()[:16]
    version = f"{metric.updated_at.timestamp() if metric.updated_at else 0}:{digest}"
    return f"reporting:usage-day:{metric.pk}:{version}:{day.isoformat()}"


def _closed_days_cached(metric: BillableMetric, days: list[date]) -> dict[date, Decimal]:
    keys = {_day_key(metric, day): day for day in days}
    return {keys[key]: value for key, value in cache.get_many(list(keys)).items()}


def _cache_closed_days(metric: BillableMetric, values: dict[date, Decimal]) -> None:
    cache.set_many({_day_key(metric, day): value for day, value in values.items()}, CLOSED_DAY_CACHE_SECONDS)


def top_customers_by_open_drafts(
    *, currency: str, limit: int = 10, merchant_ids: Collection[str] | None = None
) -> list[CustomerAmount]:
    """The customers with the largest open (draft) invoice totals in ``currency`` (one grouped query)."""
    rows = (
        _invoices(merchant_ids)
        .filter(status=InvoiceStatus.DRAFT, currency=currency)
        .order_by()
        .values("customer_id", "customer__name")
        .annotate(amount=Sum("total"), invoices=Count("id"))
        .order_by("-amount", "customer__name")[:limit]
    )
    return [
        CustomerAmount(
            customer_id=row["customer_id"],
            customer_name=row["customer__name"],
            amount=row["amount"] or ZERO,
            invoices=row["invoices"],
        )
        for row in rows
    ]


def _first(queryset: QuerySet, limit: int) -> Rows:
    rows = list(queryset[: limit + 1])
    return Rows(rows=rows[:limit], has_more=len(rows) > limit)


def invoices_with_due_date(*, merchant_ids: Collection[str] | None = None) -> QuerySet:
    """Invoices with their ``due_at`` (fixed at issue by ``invoicing.receivables.invoice_due_at``: issue date +
    the subscription's payment term). Drafts have no due date (NULL)."""
    return _invoices(merchant_ids)


def invoices_past_due(*, now: datetime, merchant_ids: Collection[str] | None = None) -> QuerySet:
    """Issued (not paid, not void) invoices whose due date (``Invoice.due_at``) has passed, oldest due first."""
    return (
        invoices_with_due_date(merchant_ids=merchant_ids)
        .filter(status__in=OPEN_STATUSES, due_at__lt=now)
        .select_related("customer")
        .order_by("due_at", "id")
    )


def drafts_in_grace(*, merchant_ids: Collection[str] | None = None) -> QuerySet:
    """Draft invoices waiting for their grace period to end (then the beat task issues them)."""
    return (
        _invoices(merchant_ids)
        .filter(status=InvoiceStatus.DRAFT)
        .select_related("customer")
        .order_by(F("grace_ends_at").asc(nulls_last=True), "id")
    )


def billing_runs_failed(*, merchant_ids: Collection[str] | None = None) -> QuerySet:
    """Failed and partial runs (some subscriptions not billed); none for a user limited to merchants (a run
    is platform-wide)."""
    runs = BillingRun.objects.filter(status__in=[BillingRunStatus.FAILED, BillingRunStatus.PARTIAL]).order_by(
        "-started_at"
    )
    return runs if merchant_ids is None else runs.none()


def wallets_below_threshold(*, merchant_ids: Collection[str] | None = None) -> QuerySet:
    wallets = LowBalanceWallet.objects.all()
    if merchant_ids is not None:
        wallets = wallets.filter(merchant_id__in=merchant_ids)
    return wallets.select_related("customer").order_by(F("low_balance_since").asc(nulls_last=True), "id")


def needs_action(
    *,
    now: datetime,
    limit: int = 10,
    include: Sequence[str] | None = None,
    merchant_ids: Collection[str] | None = None,
) -> dict[str, Rows]:
    """The home page's action lists, each the first ``limit`` rows (one query per list)."""
    lists = {
        "drafts": lambda: drafts_in_grace(merchant_ids=merchant_ids),
        "past_due": lambda: invoices_past_due(now=now, merchant_ids=merchant_ids),
        "failed_runs": lambda: billing_runs_failed(merchant_ids=merchant_ids),
        "low_balances": lambda: wallets_below_threshold(merchant_ids=merchant_ids),
    }
    wanted = lists if include is None else [name for name in lists if name in include]
    return {name: _first(lists[name](), limit) for name in wanted}

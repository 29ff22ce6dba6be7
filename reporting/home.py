"""The billing home page: the selectors' figures, each with the admin changelist (or object) behind it.

Sections appear only to users who may view what they show (a "Billing viewer" sees everything read-only), and
a staff user limited to merchants sees only those merchants' figures (``catalog.admin_scoping``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from catalog.admin_scoping import request_merchant_ids
from catalog.pricing.currency import format_money
from core.formatting import decimal_string
from costs import margin

from . import selectors

LIST_LIMIT = 10
# The margin section: rows shown per table, and costs counted (one query each, so the page stays bounded).
MARGIN_ROWS = 10
MAX_MARGIN_COSTS = 6


@dataclass
class Chart:
    """One chart: labels on the x axis, one or more series, a link per point, and a table of the numbers."""

    id: str
    title: str
    kind: str  # "bar" or "line"
    labels: list[str]
    series: list[dict]  # {"label", "values": [str], "urls": [str]}
    unit: str = ""
    empty_text: str = "No data yet."
    note: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.series or not any(Decimal(v) for s in self.series for v in s["values"])

    def as_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "labels": self.labels, "series": self.series, "unit": self.unit}

    @property
    def table_rows(self) -> list[dict]:
        """Rows of the text alternative: one per label, one cell (value + link) per series."""
        return [
            {
                "label": label,
                "cells": [{"value": s["display"][i], "url": s["urls"][i]} for s in self.series],
            }
            for i, label in enumerate(self.labels)
        ]


@dataclass
class ActionList:
    id: str
    title: str
    changelist_url: str
    rows: list[dict] = field(default_factory=list)  # {"url", "cells": [str]}
    headers: list[str] = field(default_factory=list)
    has_more: bool = False
    empty_text: str = "Nothing to do."


def _url(name: str, args=None, **params) -> str:
    base = reverse(name, args=args)
    return f"{base}?{urlencode(params)}" if params else base


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _number(value: Decimal) -> str:
    return decimal_string(value) if value else "0"


def _revenue_chart(*, currency: str, now: datetime, merchant_ids=None) -> Chart:
    months = selectors.revenue_by_month(currency=currency, now=now, merchant_ids=merchant_ids)
    starts = selectors.month_starts(now=now, months=len(months))
    urls = []
    for start in starts:
        local = timezone.localtime(start).replace(tzinfo=None)
        end = timezone.make_aware((local + timedelta(days=32)).replace(day=1))
        urls.append(
            _url(
                "admin:invoicing_invoice_changelist",
                currency=currency,
                status__in="issued,paid",
                issued_at__gte=_iso(start),
                issued_at__lt=_iso(end),
            )
        )
    return Chart(
        id="revenue-chart",
        title=f"Invoiced revenue per month ({currency}, net of tax and credit notes)",
        kind="bar",
        labels=[f"{m.month:%b %Y}" for m in months],
        series=[
            {
                "label": f"Revenue ({currency})",
                "values": [str(m.amount) for m in months],
                "display": [format_money(m.amount, currency) for m in months],
                "urls": urls,
            }
        ],
        unit=currency,
        empty_text=f"No invoice in {currency} issued in the last 12 months.",
        note="Issued and paid invoices by issue month, less issued credit notes by their issue month; voided "
        "invoices and voided credit notes excluded.",
    )


def _usage_chart(*, product_id: str | None, now: datetime) -> Chart:
    if not product_id:
        return Chart(id="usage-chart", title="Usage per day", kind="line", labels=[], series=[], empty_text="")
    usage = selectors.usage_by_day(product_id=product_id, now=now)
    series = []
    for item in usage.metrics:
        urls = []
        for day in usage.days:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            urls.append(
                _url(
                    "admin:metering_usageevent_changelist",
                    metric=item.metric.pk,
                    timestamp__gte=_iso(start),
                    timestamp__lt=_iso(start + timedelta(days=1)),
                )
            )
        unit = f" {item.metric.unit}" if item.metric.unit else ""
        series.append(
            {
                "label": f"{item.metric.name} ({item.metric.get_aggregation_display()}{unit})",
                "values": [str(v) for v in item.values],
                "display": [_number(v) for v in item.values],
                "urls": urls,
            }
        )
    note = "UTC days, today so far included; aggregated as billing aggregates each metric."
    if usage.more_metrics:
        note += f" Only the first {selectors.MAX_USAGE_METRICS} metrics (by name) are charted."
    return Chart(
        id="usage-chart",
        title="Usage per metric per day (last 30 days)",
        kind="line",
        labels=[f"{day:%b %d}" for day in usage.days],
        series=series,
        empty_text="No usage in the last 30 days for this product." if series else "This product has no metrics.",
        note=note,
    )


def _top_customers_chart(*, currency: str, merchant_ids=None) -> Chart:
    top = selectors.top_customers_by_open_drafts(currency=currency, merchant_ids=merchant_ids)
    return Chart(
        id="top-customers-chart",
        title=f"Top 10 customers by open draft invoices ({currency})",
        kind="bar",
        labels=[row.customer_name for row in top],
        series=[
            {
                "label": f"Draft total ({currency})",
                "values": [str(row.amount) for row in top],
                "display": [format_money(row.amount, currency) for row in top],
                "urls": [
                    _url(
                        "admin:invoicing_invoice_changelist",
                        customer__id__exact=row.customer_id,
                        status__exact="draft",
                        currency=currency,
                    )
                    for row in top
                ],
            }
        ],
        unit=currency,
        empty_text=f"No open draft invoice in {currency}.",
        note="The current amounts: totals of the draft invoices waiting out their grace period (closed periods "
        "not yet issued).",
    )


@dataclass
class MarginTable:
    id: str
    title: str
    rows: list[dict]  # {"url", "cells": [name, revenue, cost, profit, margin]}
    total: list[str]
    more: int = 0  # rows not shown


def _margin_cells(row: margin.MarginRow, currency: str) -> list[str]:
    pct = row.margin_pct
    return [
        format_money(row.revenue, currency),
        format_money(row.cost, currency),
        format_money(row.profit, currency),
        "—" if pct is None else f"{pct} %",
    ]


def _margin_section(*, currency: str, now: datetime, merchant_ids=None) -> dict:
    """Revenue, cost and margin per customer and per product for the last full UTC month (billing-period
    basis: the invoice lines billing that month against the cost of that month's usage)."""
    today = now.astimezone(UTC)
    end = datetime(today.year, today.month, 1, tzinfo=UTC)
    start = (end - timedelta(days=1)).replace(day=1)
    result = margin.margins(
        currency=currency,
        start=start,
        end=end,
        merchant_ids=merchant_ids,
        basis=margin.BILLING_PERIOD_BASIS,
        max_costs=MAX_MARGIN_COSTS,
    )
    recurring = margin.recurring_revenue(currency=currency, now=now, merchant_ids=merchant_ids)
    total = margin.MarginRow("", "Total", result.revenue, result.cost, bool(result.cost_count))
    tables = []
    for table_id, title, rows, url_name in (
        ("margin-customers", "Per customer", result.by_customer, "admin:catalog_customer_change"),
        ("margin-products", "Per product", result.by_product, "admin:catalog_product_change"),
    ):
        tables.append(
            MarginTable(
                id=table_id,
                title=title,
                rows=[
                    {"url": reverse(url_name, args=[row.key]), "cells": [row.name, *_margin_cells(row, currency)]}
                    for row in rows[:MARGIN_ROWS]
                    if row.key
                ],
                total=["Total", *_margin_cells(total, currency)],
                more=max(len(rows) - MARGIN_ROWS, 0),
            )
        )
    note = (
        "Revenue: issued and paid invoice lines billing the month, net of tax and of their credit notes. "
        "Cost: each cost's usage in the month × its unit cost. Margin = (revenue − cost) / revenue."
    )
    if not result.cost_count:
        note += f" No cost is defined in {currency}: costs count as zero."
    if result.more_costs:
        note += f" Only the first {MAX_MARGIN_COSTS} costs are counted."
    return {
        "title": f"Revenue, cost and margin — {start:%B %Y} ({currency})",
        "tables": tables,
        "headers": ["", "Revenue", "Cost", "Profit", "Margin"],
        "recurring": (
            f"MRR {format_money(recurring.mrr, currency)} · ARR {format_money(recurring.arr, currency)} "
            f"({recurring.subscriptions} active subscriptions' recurring fees, as of now)"
        ),
        "note": note,
    }


def _invoice_row(invoice, *cells: str) -> dict:
    return {"url": reverse("admin:invoicing_invoice_change", args=[invoice.pk]), "cells": [str(invoice), *cells]}


def _action_lists(*, now: datetime, user, merchant_ids=None) -> list[ActionList]:
    include = []
    if user.has_perm("invoicing.view_invoice"):
        include += ["drafts", "past_due"]
    if user.has_perm("invoicing.view_billingrun") and merchant_ids is None:
        include.append("failed_runs")  # runs are platform-wide: not for staff limited to merchants
    if user.has_perm("wallets.view_lowbalancewallet") or user.has_perm("wallets.view_wallet"):
        include.append("low_balances")
    found = selectors.needs_action(now=now, limit=LIST_LIMIT, include=include, merchant_ids=merchant_ids)
    lists = []
    if "drafts" in found:
        rows = found["drafts"]
        lists.append(
            ActionList(
                id="drafts-in-grace",
                title="Drafts waiting out their grace period",
                changelist_url=_url("admin:invoicing_invoice_changelist", status__exact="draft"),
                headers=["Invoice", "Customer", "Total", "Grace ends"],
                rows=[
                    _invoice_row(
                        inv,
                        inv.customer.name,
                        format_money(inv.total, inv.currency),
                        f"{timezone.localtime(inv.grace_ends_at):%Y-%m-%d %H:%M}" if inv.grace_ends_at else "—",
                    )
                    for inv in rows.rows
                ],
                has_more=rows.has_more,
                empty_text="No draft invoice.",
            )
        )
    if "past_due" in found:
        rows = found["past_due"]
        lists.append(
            ActionList(
                id="past-due",
                title="Issued and unpaid past their due date",
                changelist_url=_url("admin:invoicing_invoice_changelist", payment="past_due"),
                headers=["Invoice", "Customer", "Amount due", "Due"],
                rows=[
                    _invoice_row(
                        inv,
                        inv.customer.name,
                        format_money(inv.amount_due, inv.currency),
                        f"{timezone.localtime(inv.due_at):%Y-%m-%d}",
                    )
                    for inv in rows.rows
                ],
                has_more=rows.has_more,
                empty_text="No invoice past due.",
            )
        )
    if "failed_runs" in found:
        rows = found["failed_runs"]
        lists.append(
            ActionList(
                id="failed-runs",
                title="Billing runs that finished with errors",
                changelist_url=_url("admin:invoicing_billingrun_changelist", status__in="failed,partial"),
                headers=["Run", "As of", "Status", "Failed invoices"],
                rows=[
                    {
                        "url": reverse("admin:invoicing_billingrun_change", args=[run.pk]),
                        "cells": [
                            f"Run {run.pk}",
                            f"{timezone.localtime(run.as_of):%Y-%m-%d %H:%M}",
                            run.get_status_display(),
                            str(run.invoices_failed),
                        ],
                    }
                    for run in rows.rows
                ],
                has_more=rows.has_more,
                empty_text="No failed billing run.",
            )
        )
    if "low_balances" in found:
        rows = found["low_balances"]
        lists.append(
            ActionList(
                id="low-balances",
                title="Customers below their prepaid threshold",
                changelist_url=reverse("admin:wallets_lowbalancewallet_changelist"),
                headers=["Customer", "Balance", "Threshold"],
                rows=[
                    {
                        "url": reverse("admin:wallets_wallet_change", args=[wallet.pk]),
                        "cells": [
                            wallet.customer.name,
                            format_money(wallet.balance, wallet.currency),
                            format_money(wallet.low_balance_threshold, wallet.currency),
                        ],
                    }
                    for wallet in rows.rows
                ],
                has_more=rows.has_more,
                empty_text="No wallet below its threshold.",
            )
        )
    return lists


def billing_home(*, request, now: datetime) -> dict:
    """Everything the home page shows, for this user: charts, their pickers, and the action lists."""
    user = request.user
    merchant_ids = request_merchant_ids(request)
    context: dict = {"charts": [], "lists": [], "currencies": [], "products": []}
    if user.has_perm("invoicing.view_invoice"):
        currencies = selectors.invoice_currencies(merchant_ids=merchant_ids)
        currency = request.GET.get("currency", "")
        if currency not in currencies:
            currency = currencies[0] if currencies else "USD"
        context["currencies"] = currencies
        context["currency"] = currency
        context["aging_url"] = reverse("admin:invoicing_invoice_aging")
        context["charts"].append(_revenue_chart(currency=currency, now=now, merchant_ids=merchant_ids))
    if user.has_perm("metering.view_usageevent"):
        # The product comes from this list only, so the usage chart never charts another merchant's product.
        products = selectors.product_choices(merchant_ids=merchant_ids)
        product_ids = [pk for pk, _ in products]
        product_id = request.GET.get("product", "")
        if product_id not in product_ids:
            product_id = product_ids[0] if product_ids else None
        context["products"] = products
        context["product"] = product_id
        if product_id:
            context["charts"].append(_usage_chart(product_id=product_id, now=now))
    if user.has_perm("invoicing.view_invoice"):
        context["charts"].append(_top_customers_chart(currency=context["currency"], merchant_ids=merchant_ids))
        if user.has_perm("costs.view_cost"):
            context["margin"] = _margin_section(currency=context["currency"], now=now, merchant_ids=merchant_ids)
    context["lists"] = _action_lists(now=now, user=user, merchant_ids=merchant_ids)
    context["chart_data"] = [chart.as_json() for chart in context["charts"]]
    return context

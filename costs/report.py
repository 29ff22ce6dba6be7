"""The cost report (``GET /v0/costs/report``): the merchant's costs over a period, grouped by cost,
product or customer, with an optional time series and the prior period of the same length.

Each cost is aggregated in SQL by ``metering.selectors`` (per customer when grouping by customer), one
query per cost for the totals and one per cost for the windows: at most ``MAX_COSTS_PER_MERCHANT`` costs.
Groups are ranked (``sort``, ``sort_dir``), the first ``top_n`` kept and the rest folded into one ``other``
group; amounts are exact decimals (12 places).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from catalog.models import Customer, Merchant
from metering import selectors as metering

from .selectors import CostMeter, check_period, cost_amount, cost_list

ZERO = Decimal("0")
GROUP_BYS = ("cost", "product", "customer")
OTHER = "other"


@dataclass
class ReportGroup:
    key: str
    label: str
    cost: Decimal = ZERO
    quantity: Decimal = ZERO
    unit: str | None = None
    is_other: bool = False
    prior_cost: Decimal | None = None


@dataclass
class CostReport:
    currency: str
    total_cost: Decimal
    total_quantity: Decimal
    groups: list[ReportGroup]  # ranked, ``other`` last
    group_count: int  # groups before folding
    windows: list[tuple[datetime, datetime, dict[str, Decimal]]] = field(default_factory=list)


def _grouped(
    costs, *, group_by: str, start: datetime, end: datetime, customer: Customer | None
) -> dict[str, ReportGroup]:
    groups: dict[str, ReportGroup] = {}
    for cost in costs:
        meter = CostMeter.of(cost)
        if group_by == "customer":
            rows = [
                (row.group.get("subject") or "", row.value)
                for row in metering.usage_grouped(
                    metric=meter, start=start, end=end, customer=customer, group_by=["subject"]
                )
            ]
        else:
            total = metering.usage_grouped(metric=meter, start=start, end=end, customer=customer, group_by=[])
            key = cost.pk if group_by == "cost" else cost.product_id
            rows = [(key, total[0].value if total else ZERO)]
        for key, quantity in rows:
            if not key:
                continue  # events no customer can be found for
            label = cost.name if group_by == "cost" else (cost.product.name if group_by == "product" else key)
            group = groups.setdefault(key, ReportGroup(key=key, label=label, unit=cost.unit or None))
            group.cost += cost_amount(cost=cost, quantity=quantity)
            group.quantity += quantity
            if group.unit != (cost.unit or None):
                group.unit = None
    return groups


def cost_report(
    *,
    merchant: Merchant,
    currency: str,
    start: datetime,
    end: datetime,
    group_by: str,
    cost_ids: Collection[str] | None = None,
    customer: Customer | None = None,
    window: str | None = None,
    top_n: int = 9,
    sort: str = "totalCost",
    descending: bool = True,
    compare_prior_period: bool = False,
    exclude_empty: bool = False,
) -> CostReport:
    """Raises selectors.PeriodError for a period too long or cut into too many windows."""
    check_period(start=start, end=end, window=window)
    costs = list(cost_list(merchant=merchant).filter(currency=currency).select_related("product"))
    if cost_ids is not None:
        costs = [c for c in costs if c.pk in set(cost_ids)]
    groups = _grouped(costs, group_by=group_by, start=start, end=end, customer=customer)
    if group_by == "cost" and not exclude_empty:
        for cost in costs:
            groups.setdefault(cost.pk, ReportGroup(key=cost.pk, label=cost.name, unit=cost.unit or None))
    if group_by == "customer":
        names = dict(Customer.objects.filter(pk__in=list(groups)).values_list("id", "name"))
        for group in groups.values():
            group.label = names.get(group.key, group.key)
    if exclude_empty:
        groups = {k: g for k, g in groups.items() if g.cost or g.quantity}
    if compare_prior_period:
        prior = _grouped(costs, group_by=group_by, start=start - (end - start), end=start, customer=customer)
        for key, group in groups.items():
            group.prior_cost = prior[key].cost if key in prior else ZERO
    attribute = "cost" if sort == "totalCost" else "quantity"
    ranked = sorted(groups.values(), key=lambda g: (getattr(g, attribute), g.label, g.key), reverse=descending)
    shown, rest = ranked[:top_n], ranked[top_n:]
    if rest:
        other = ReportGroup(key=OTHER, label="Other", is_other=True)
        for group in rest:
            other.cost += group.cost
            other.quantity += group.quantity
            if group.prior_cost is not None:
                other.prior_cost = (other.prior_cost or ZERO) + group.prior_cost
        shown.append(other)
    report = CostReport(
        currency=currency,
        total_cost=sum((g.cost for g in ranked), ZERO),
        total_quantity=sum((g.quantity for g in ranked), ZERO),
        groups=shown,
        group_count=len(ranked),
    )
    if window:
        kept = {g.key for g in shown if not g.is_other}
        series: dict[datetime, tuple[datetime, dict[str, Decimal]]] = {}
        for cost in costs:
            keys = ["subject"] if group_by == "customer" else []
            for row in metering.usage_grouped(
                metric=CostMeter.of(cost), start=start, end=end, customer=customer, group_by=keys, window_size=window
            ):
                key = (
                    row.group.get("subject")
                    if group_by == "customer"
                    else (cost.pk if group_by == "cost" else cost.product_id)
                )
                if not key:
                    continue
                key = key if key in kept else OTHER
                _, values = series.setdefault(row.window_start, (row.window_end, {}))
                values[key] = values.get(key, ZERO) + cost_amount(cost=cost, quantity=row.value)
        report.windows = [(ws, we, values) for ws, (we, values) in sorted(series.items())]
    return report

"""The cost report (``GET /v0/costs/report``): the merchant's costs over a period, grouped by cost,
product, customer or, for exactly one cost, by one of its event dimensions (``model``), with an optional
time series and the prior period of the same length.

Each cost is aggregated in SQL by ``metering.selectors`` (per customer or per dimension value when grouping
so), one grouped query per cost for the totals and one per cost for the windows: at most
``MAX_COSTS_PER_MERCHANT`` costs. ``filter_group_by`` keeps the usage whose dimensions have the given values;
a cost that does not define one of them has no such usage. Groups are ranked (``sort``, ``sort_dir``), the
first ``top_n`` kept and the rest folded into one ``__other__`` group; amounts are exact decimals (12 places).
When the period held no cost event, one more query says where the cost events lie (``cost_range``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from catalog.models import Customer, Merchant
from metering import selectors as metering

from .selectors import CostMeter, check_period, cost_amount, cost_extent, cost_list

ZERO = Decimal("0")
GROUP_BYS = ("cost", "product", "customer")  # or a dimension of the one cost filtered
OTHER = "__other__"  # the client's key for the folded remainder
MAX_FILTER_DIMENSIONS = 5


class ReportError(ValueError):
    """A combination of parameters the report cannot answer; ``field`` names the parameter."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class ReportGroup:
    key: str
    label: str
    cost: Decimal = ZERO
    quantity: Decimal = ZERO
    unit: str | None = None
    is_other: bool = False
    prior_cost: Decimal | None = None
    events: int = 0  # cost events counted in it


@dataclass
class CostReport:
    currency: str
    total_cost: Decimal
    total_quantity: Decimal
    groups: list[ReportGroup]  # ranked, ``other`` last
    group_count: int  # groups before folding
    empty_group_count: int  # groups with neither cost nor usage, excluded or not
    available_dimensions: list[str] = field(default_factory=list)
    windows: list[tuple[datetime, datetime, dict[str, Decimal]]] = field(default_factory=list)
    # The client's costRange, read only when the period held no cost event (``empty``): the first and last
    # instants of the cost events under the same filters at any time, or None when there is none.
    empty: bool = False
    cost_range: tuple[datetime, datetime] | None = None


def _row_key(cost, group_by: str, row) -> str | None:
    """The group a metering row counts in; None for events no customer can be found for."""
    if group_by == "customer":
        return row.group.get("subject") or None
    if group_by == "cost":
        return cost.pk
    if group_by == "product":
        return cost.product_id
    return row.group.get(group_by) or ""  # a dimension: events without it count under ""


def _keys(group_by: str) -> list[str]:
    if group_by == "customer":
        return ["subject"]
    return [] if group_by in GROUP_BYS else [group_by]


def _label(cost, group_by: str, key: str) -> str:
    if group_by == "cost":
        return cost.name
    if group_by == "product":
        return cost.product.name
    if group_by == "customer":
        return key
    return key or f"(no {group_by})"


def _grouped(
    costs, *, group_by: str, start: datetime, end: datetime, customer: Customer | None, filters: dict | None
) -> dict[str, ReportGroup]:
    groups: dict[str, ReportGroup] = {}
    for cost, key, row in _keyed_rows(
        costs, group_by=group_by, start=start, end=end, customer=customer, filters=filters
    ):
        label = _label(cost, group_by, key)
        group = groups.setdefault(key, ReportGroup(key=key, label=label, unit=cost.unit or None))
        group.cost += cost_amount(cost=cost, quantity=row.value)
        group.quantity += row.value
        group.events += row.event_count
        if group.unit != (cost.unit or None):
            group.unit = None
    return groups


def _keyed_rows(
    costs,
    *,
    group_by: str,
    start: datetime,
    end: datetime,
    customer: Customer | None,
    filters: dict | None,
    window: str | None = None,
):
    """(cost, group key, usage row) of each cost's grouped usage (per window when ``window``), the rows no
    group takes left out."""
    for cost in costs:
        for row in metering.usage_grouped(
            metric=CostMeter.of(cost),
            start=start,
            end=end,
            customer=customer,
            group_by=_keys(group_by),
            window_size=window,
            filter_group_by=filters,
        ):
            key = _row_key(cost, group_by, row)
            if key is not None:
                yield cost, key, row


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
    filter_group_by: dict | None = None,
) -> CostReport:
    """Raises selectors.PeriodError for a period too long or cut into too many windows, ReportError for a
    dimension grouping without exactly one cost that defines it or a filter of too many dimensions."""
    check_period(start=start, end=end, window=window)
    costs = list(cost_list(merchant=merchant).filter(currency=currency).select_related("product"))
    if cost_ids is not None:
        costs = [c for c in costs if c.pk in set(cost_ids)]
    single = costs[0] if cost_ids is not None and len(set(cost_ids)) == 1 and costs else None
    available = sorted(single.group_by or {}) if single else []
    if group_by not in GROUP_BYS:
        if single is None:
            raise ReportError("groupBy", f"Grouping by the dimension “{group_by}” needs exactly one costId.")
        if group_by not in available:
            known = ", ".join([*GROUP_BYS, *available])
            raise ReportError("groupBy", f"Unknown dimension “{group_by}”; this report can group by: {known}.")
    if filter_group_by:
        if len(filter_group_by) > MAX_FILTER_DIMENSIONS:
            raise ReportError("filterGroupBy", f"At most {MAX_FILTER_DIMENSIONS} dimensions.")
        # A cost without one of the filtered dimensions has no usage with that value.
        costs = [c for c in costs if set(filter_group_by) <= set(c.group_by or {})]
    filters = filter_group_by or None
    groups = _grouped(costs, group_by=group_by, start=start, end=end, customer=customer, filters=filters)
    if group_by in ("cost", "product"):  # a cost or product without usage is an empty group, not absent
        for cost in costs:
            key = cost.pk if group_by == "cost" else cost.product_id
            groups.setdefault(key, ReportGroup(key=key, label=_label(cost, group_by, key), unit=cost.unit or None))
    if group_by == "customer":
        names = dict(Customer.objects.filter(pk__in=list(groups)).values_list("id", "name"))
        for group in groups.values():
            group.label = names.get(group.key, group.key)
    empty_count = sum(1 for g in groups.values() if not (g.cost or g.quantity))
    empty = not any(g.events for g in groups.values())
    if exclude_empty:
        groups = {k: g for k, g in groups.items() if g.cost or g.quantity}
    if compare_prior_period:
        prior = _grouped(
            costs, group_by=group_by, start=start - (end - start), end=start, customer=customer, filters=filters
        )
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
        empty_group_count=empty_count,
        available_dimensions=available,
        empty=empty,
    )
    if empty:
        # Same scope as the report (costs, customer, dimension values; only attributed events when grouped
        # by customer, as those are all it counts), so that re-reading over the range finds the cost.
        report.cost_range = cost_extent(
            costs=costs, customer=customer, filter_group_by=filters, attributed_only=group_by == "customer"
        )
    if window:
        kept = {g.key for g in shown if not g.is_other}
        series: dict[datetime, tuple[datetime, dict[str, Decimal]]] = {}
        for cost, key, row in _keyed_rows(
            costs, group_by=group_by, start=start, end=end, customer=customer, filters=filters, window=window
        ):
            key = key if key in kept else OTHER
            _, values = series.setdefault(row.window_start, (row.window_end, {}))
            values[key] = values.get(key, ZERO) + cost_amount(cost=cost, quantity=row.value)
        report.windows = [(ws, we, values) for ws, (we, values) in sorted(series.items())]
    return report

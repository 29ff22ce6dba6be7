"""Reads of usage: aggregation of a metric in SQL (one query), raw event listings, routing for ingestion.

Which events count toward a metric over [start, end):
- same merchant, ``event_type`` equal to the metric's, ``timestamp`` in [max(start, event_from), end);
- every MetricFilter matches (values are compared as text; for ``neq``/``not_in`` a missing property
  counts as "not equal");
- for one customer: events linked to it, plus events not linked yet whose ``external_subject`` is the
  customer's ``external_id`` (so usage is right before the linking job runs).

Values (SUM/AVG/MIN/MAX/LATEST and UNIQUE_COUNT's distinct values) are read at ``value_property``;
an event without a numeric value there is ignored by value aggregations. LATEST is the value of the
latest event that carries one, by timestamp then id. Pass metrics with ``prefetch_related("filters")``
to keep each aggregation at exactly one query.

Kept whole because every read here is built from the same private SQL fragments (``_metric_where``,
``_customers_where``, ``_subject_sql``): one copy of which events count, for the invoices, the running
counters and the real-time debits alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import BooleanField, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL

from catalog.models import Aggregation, BillableMetric, Customer, Merchant, MetricFilterOperator
from core.cache import TTLCache

from . import sql
from .models import UsageEvent
from .refusals import refusing_prices, refusing_relation

VALUE_AGGREGATIONS = {Aggregation.SUM, Aggregation.AVG, Aggregation.MIN, Aggregation.MAX, Aggregation.LATEST}
WINDOW_SIZES = {"MINUTE": "minute", "HOUR": "hour", "DAY": "day", "MONTH": "month"}
_SQLITE_WINDOW_FORMATS = {
    "minute": "%Y-%m-%dT%H:%M:00",
    "hour": "%Y-%m-%dT%H:00:00",
    "day": "%Y-%m-%dT00:00:00",
    "month": "%Y-%m-01T00:00:00",
}
SUBJECT_DIMENSION = "subject"
EVENTS_TABLE = UsageEvent._meta.db_table
CUSTOMERS_TABLE = Customer._meta.db_table


class UnknownDimension(ValueError):
    """A group-by or filter dimension the metric does not define."""

    def __init__(self, dimension: str):
        super().__init__(dimension)
        self.dimension = dimension


@dataclass(frozen=True)
class MetricRoute:
    """What ingestion needs to know about one metric fed by an event type."""

    metric_id: str
    aggregation: str
    value_path: tuple[str, ...] | None  # None when the metric reads no value
    numeric: bool  # the value must be a number (every aggregation but UNIQUE_COUNT)
    # Prices of the metric that refuse values they do not name ("unmatched": "refuse"): per price, its id,
    # name, the dimension paths and the value tuples (text) it prices. An event must match every one that
    # bills its customer (metering/refusals.py).
    refusals: tuple[tuple[str, str, tuple[tuple[str, ...], ...], frozenset], ...] = ()


@dataclass(frozen=True)
class UsageGroup:
    """One row of a grouped/windowed meter query."""

    window_start: datetime | None
    window_end: datetime | None
    group: dict[str, str] = field(default_factory=dict)
    value: Decimal = sql.ZERO
    event_count: int = 0


# How long ingestion trusts a merchant's routing table in this process. Saves and deletes of a
# BillableMetric forget it at once in the process that made them (metering/apps.py); an event type
# missing from a cached table is always re-read before an event is refused. So the TTL only bounds
# how long another process (e.g. the admin's) takes to see a changed valueProperty or a second metric
# on an already-known event type.
ROUTES_CACHE_SECONDS = 30.0
ROUTES_CACHE_SIZE = 1024
_routes_cache: TTLCache[dict[str, list[MetricRoute]]] = TTLCache(seconds=ROUTES_CACHE_SECONDS, size=ROUTES_CACHE_SIZE)


def metric_routes_cached(*, merchant_id: str, fresh: bool = False) -> dict[str, list[MetricRoute]]:
    """``metric_routes`` from this process's cache (no query on a hit); ``fresh`` re-reads it."""
    cached = None if fresh else _routes_cache.get(merchant_id)
    if cached is not None:
        return cached
    routes = metric_routes(merchant=merchant_id)
    _routes_cache.set(merchant_id, routes)
    return routes


def metric_routes_forget(*, merchant_id: str | None = None) -> None:
    """Drop cached routing (one merchant's, or everyone's)."""
    if merchant_id is None:
        _routes_cache.clear()
    else:
        _routes_cache.pop(merchant_id)


def metric_routes(*, merchant: Merchant | str) -> dict[str, list[MetricRoute]]:
    """Event type → the merchant's metrics it feeds (one query); ``merchant`` or its id."""
    routes: dict[str, list[MetricRoute]] = {}
    merchant_id = merchant if isinstance(merchant, str) else merchant.pk
    # One row per metric, or per (metric, price refusing unmatched values): still one query.
    rows = list(
        BillableMetric.objects.filter(merchant_id=merchant_id)
        .annotate(refusing=refusing_relation())
        .values_list(
            "id",
            "event_type",
            "aggregation",
            "value_property",
            "group_by",
            "refusing__id",
            "refusing__invoice_display_name",
            "refusing__dimensional_rates",
        )
    )
    refusing = refusing_prices((row[0], row[4], row[5], row[6], row[7]) for row in rows)
    seen: set[str] = set()
    for metric_id, event_type, aggregation, value_property, *_ in rows:
        if metric_id in seen:
            continue
        seen.add(metric_id)
        path = None
        if value_property and aggregation != Aggregation.COUNT:
            try:
                path = tuple(sql.path_parts(value_property))
            except ValueError:
                path = None
        routes.setdefault(event_type, []).append(
            MetricRoute(
                metric_id=metric_id,
                aggregation=aggregation,
                value_path=path,
                numeric=aggregation in VALUE_AGGREGATIONS,
                refusals=tuple(refusing.get(metric_id, ())),
            )
        )
    return routes


# --- SQL building -------------------------------------------------------------------------------


def _metric_where(metric: BillableMetric, start: datetime, end: datetime, alias: str) -> tuple[str, list]:
    if metric.event_from and metric.event_from > start:
        start = metric.event_from
    clauses = [
        f"{alias}.merchant_id = %s",
        f"{alias}.event_type = %s",
        f'{alias}."timestamp" >= %s',
        f'{alias}."timestamp" < %s',
    ]
    params: list = [metric.merchant_id, metric.event_type, sql.db_datetime(start), sql.db_datetime(end)]
    filters_sql, filters_params = _metric_filters(metric, alias)
    return " AND ".join(clauses + filters_sql), params + filters_params


def _metric_filters(metric: BillableMetric, alias: str) -> tuple[list[str], list]:
    """The metric's MetricFilters as SQL clauses (to AND) and their parameters."""
    clauses: list[str] = []
    params: list = []
    for metric_filter in metric.filters.all():
        try:
            parts = sql.path_parts(metric_filter.property_path)
        except ValueError:
            continue
        values = [_as_text(v) for v in (metric_filter.values or [])]
        if not values:
            continue
        text_sql, text_params = sql.json_text(f"{alias}.data", parts)
        marks = ", ".join(["%s"] * len(values))
        if metric_filter.operator in (MetricFilterOperator.EQUALS, MetricFilterOperator.IN):
            clauses.append(f"{text_sql} IN ({marks})")
            params += text_params + values
        else:
            clauses.append(f"({text_sql} IS NULL OR {text_sql} NOT IN ({marks}))")
            params += text_params + text_params + values
    return clauses, params


def _dimension_sql(metric: BillableMetric, name: str, alias: str) -> tuple[str, list]:
    """A dimension of ``metric.group_by`` (or ``subject``: the customer id) as SQL; UnknownDimension else."""
    if name == SUBJECT_DIMENSION:
        return _subject_sql(alias), []
    path = (metric.group_by or {}).get(name)
    if not isinstance(path, str):
        raise UnknownDimension(name)
    try:
        return sql.json_text(f"{alias}.data", sql.path_parts(path))
    except ValueError:
        raise UnknownDimension(name)


def _dimension_filter(metric: BillableMetric, filter_group_by: dict | None, alias: str) -> tuple[list[str], list]:
    """``filter_group_by`` (dimension → value or list of values) as SQL clauses (to AND) and parameters."""
    clauses: list[str] = []
    params: list = []
    for name, wanted in (filter_group_by or {}).items():
        values = [_as_text(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
        if not values:
            continue
        key_sql, key_params = _dimension_sql(metric, name, alias)
        clauses.append(f"{key_sql} IN ({', '.join(['%s'] * len(values))})")
        params += key_params + values
    return clauses, params


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_same_merchant(metric: BillableMetric, customer: Customer) -> None:
    if customer.merchant_id != metric.merchant_id:
        raise ValueError(f"Customer {customer.pk} and metric {metric.pk} belong to different merchants.")


def _customer_where(customer: Customer, alias: str) -> tuple[str, list]:
    if customer.external_id:
        return (
            f"({alias}.customer_id = %s OR ({alias}.customer_id IS NULL AND {alias}.external_subject = %s))",
            [customer.pk, customer.external_id],
        )
    return f"{alias}.customer_id = %s", [customer.pk]


def _customers_where(customers: list[Customer], alias: str) -> tuple[str, list]:
    ids = [c.pk for c in customers]
    external_ids = [c.external_id for c in customers if c.external_id]
    clause = f"{alias}.customer_id IN ({', '.join(['%s'] * len(ids))})"
    params: list = list(ids)
    if external_ids:
        clause = (
            f"({clause} OR ({alias}.customer_id IS NULL AND {alias}.external_subject IN "
            f"({', '.join(['%s'] * len(external_ids))})))"
        )
        params += external_ids
    return clause, params


def _subject_sql(alias: str) -> str:
    # The linked customer, or the one whose external id the event names (evaluated only when unlinked).
    return (
        f"COALESCE({alias}.customer_id, (SELECT c.id FROM {CUSTOMERS_TABLE} c WHERE c.merchant_id = {alias}.merchant_id "
        f"AND c.external_id = {alias}.external_subject AND {alias}.external_subject <> ''))"
    )


def _value_sql(metric: BillableMetric, alias: str) -> tuple[str | None, list]:
    if not metric.value_property or metric.aggregation == Aggregation.COUNT:
        return None, []
    parts = sql.path_parts(metric.value_property)
    if metric.aggregation == Aggregation.UNIQUE_COUNT:
        return sql.json_text(f"{alias}.data", parts)
    return sql.json_number(f"{alias}.data", parts)


def _window_sql(window: str, alias: str) -> tuple[str, list]:
    if sql.is_postgres():
        # Group by the truncated timestamp itself (naive UTC, read back by sql.to_datetime): formatting it
        # with to_char on every row cost ~20 ms per 165,000 events (billing home, 30 days).
        return f"date_trunc(%s, {alias}.\"timestamp\" AT TIME ZONE 'UTC')", [window]
    return f'strftime(%s, {alias}."timestamp")', [_SQLITE_WINDOW_FORMATS[window]]


def _window_end(window_start: datetime, window: str) -> datetime:
    if window == "month":
        year, month = divmod(window_start.month, 12)
        return window_start.replace(year=window_start.year + year, month=month + 1)
    return window_start + {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[window]


def _aggregate_rows(
    *,
    metric: BillableMetric,
    start: datetime,
    end: datetime,
    scope_sql: str | None,
    scope_params: list,
    keys: list[tuple[str, list]],
    join: tuple[str, list] = ("", []),
) -> list[tuple]:
    """Run one aggregation query; each row is ``(*key values, aggregate, event count)``. ``join``: SQL
    placed after the events table (``JOIN … ON …``) and its parameters."""
    alias = "e"
    join_sql, join_params = join
    where, params = _metric_where(metric, start, end, alias)
    if scope_sql:
        where += f" AND {scope_sql}"
        params += scope_params
    value_sql, value_params = _value_sql(metric, alias)
    key_sqls = [k for k, _ in keys]
    key_params = [p for _, ps in keys for p in ps]
    aggregation = metric.aggregation

    if aggregation == Aggregation.LATEST:
        partition = f"PARTITION BY {', '.join(key_sqls)} " if key_sqls else ""
        inner_keys = "".join(f"{k} AS k{i}, " for i, k in enumerate(key_sqls))
        outer_keys = "".join(f"k{i}, " for i in range(len(key_sqls)))
        query = (
            f"SELECT {outer_keys}v, n FROM (SELECT {inner_keys}{value_sql} AS v, "
            f'ROW_NUMBER() OVER ({partition}ORDER BY {alias}."timestamp" DESC, {alias}.id DESC) AS rn, '
            f"COUNT(*) OVER ({partition.strip()}) AS n "
            f"FROM {EVENTS_TABLE} {alias}{join_sql} WHERE {where} AND {value_sql} IS NOT NULL) ranked WHERE rn = 1"
        )
        # key params appear twice (select list and partition), value params twice (select and where)
        all_params = key_params + value_params + key_params + key_params + join_params + params + value_params
        with connection.cursor() as cursor:
            cursor.execute(query, all_params)
            return cursor.fetchall()

    if aggregation == Aggregation.COUNT or (aggregation == Aggregation.UNIQUE_COUNT and value_sql is None):
        aggregate_sql, aggregate_params = "COUNT(*)", []
    elif aggregation == Aggregation.UNIQUE_COUNT:
        aggregate_sql, aggregate_params = f"COUNT(DISTINCT {value_sql})", value_params
    else:
        aggregate_sql, aggregate_params = f"{aggregation}({value_sql})", value_params
    select_keys = "".join(f"{k}, " for k in key_sqls)
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(key_sqls)))}" if key_sqls else ""
    query = f"SELECT {select_keys}{aggregate_sql}, COUNT(*) FROM {EVENTS_TABLE} {alias}{join_sql} WHERE {where}{group}"
    with connection.cursor() as cursor:
        cursor.execute(query, key_params + aggregate_params + join_params + params)
        return cursor.fetchall()


def _finish(metric: BillableMetric, value) -> Decimal:
    result = sql.to_decimal(value)
    if metric.aggregation == Aggregation.AVG:
        result = sql.quantize(result)
    return result


# --- public selectors ---------------------------------------------------------------------------


def usage_aggregate(*, metric: BillableMetric, customer: Customer, start: datetime, end: datetime) -> Decimal:
    """A customer's usage of ``metric`` over [start, end), aggregated in one SQL query; 0 without events."""
    _check_same_merchant(metric, customer)
    scope_sql, scope_params = _customer_where(customer, "e")
    rows = _aggregate_rows(metric=metric, start=start, end=end, scope_sql=scope_sql, scope_params=scope_params, keys=[])
    return _finish(metric, rows[0][0]) if rows else sql.ZERO


# SQLite refuses a compound SELECT of more than 500 terms (SQLITE_MAX_COMPOUND_SELECT).
WINDOWS_PER_QUERY = 400


def usage_aggregate_windows(
    *, metric: BillableMetric, customer: Customer, windows: Sequence[tuple[datetime, datetime]]
) -> list[Decimal]:
    """A customer's usage of ``metric`` over each of ``windows`` ([start, end); they may overlap, e.g.
    period-to-date windows sharing a start), in one SQL query per ``WINDOWS_PER_QUERY`` windows: the
    windows are a derived table joined to the events, grouped by window. 0 where a window has no events;
    the same values as ``usage_aggregate`` window by window."""
    _check_same_merchant(metric, customer)
    values = [sql.ZERO] * len(windows)
    scope_sql, scope_params = _customer_where(customer, "e")
    for first in range(0, len(windows), WINDOWS_PER_QUERY):
        chunk = [(i, start, end) for i, (start, end) in enumerate(windows[first : first + WINDOWS_PER_QUERY], first)]
        chunk = [(i, start, end) for i, start, end in chunk if start < end]
        if not chunk:
            continue
        rows_sql = " UNION ALL ".join(["SELECT %s AS i, %s AS ws, %s AS we"] * len(chunk))
        join_params = [value for i, start, end in chunk for value in (i, sql.db_datetime(start), sql.db_datetime(end))]
        rows = _aggregate_rows(
            metric=metric,
            start=min(start for _, start, _ in chunk),
            end=max(end for _, _, end in chunk),
            scope_sql=scope_sql,
            scope_params=scope_params,
            keys=[("w.i", [])],
            join=(f' JOIN ({rows_sql}) w ON e."timestamp" >= w.ws AND e."timestamp" < w.we', join_params),
        )
        for row in rows:
            values[int(row[0])] = _finish(metric, row[1])
    return values


def usage_total(*, metric: BillableMetric, start: datetime, end: datetime, customer: Customer | None = None) -> Decimal:
    """Usage over [start, end) for one customer, or across every event of the metric when ``customer`` is None."""
    if customer is not None:
        return usage_aggregate(metric=metric, customer=customer, start=start, end=end)
    rows = _aggregate_rows(metric=metric, start=start, end=end, scope_sql=None, scope_params=[], keys=[])
    return _finish(metric, rows[0][0]) if rows else sql.ZERO


def usage_aggregate_by_customer(
    *,
    metric: BillableMetric,
    start: datetime,
    end: datetime,
    customers: Iterable[Customer] | None = None,
) -> dict[str, Decimal]:
    """Customer id → usage over [start, end), for all customers with events (or the given ones, zeros
    included) in one SQL query. Unlinked events count for the customer whose external id they name."""
    scope_sql, scope_params = None, []
    customer_list = list(customers) if customers is not None else None
    if customer_list is not None:
        if not customer_list:
            return {}
        for customer in customer_list:
            _check_same_merchant(metric, customer)
        scope_sql, scope_params = _customers_where(customer_list, "e")
    rows = _aggregate_rows(
        metric=metric,
        start=start,
        end=end,
        scope_sql=scope_sql,
        scope_params=scope_params,
        keys=[(_subject_sql("e"), [])],
    )
    result = {c.pk: sql.ZERO for c in customer_list} if customer_list is not None else {}
    for customer_id, value, _count in rows:
        if customer_id is None or (customer_list is not None and customer_id not in result):
            continue
        result[customer_id] = _finish(metric, value)
    return result


def usage_aggregate_by_customer_and_values(
    *, metric: BillableMetric, start: datetime, end: datetime, customers: Iterable[Customer], paths: Sequence[str]
) -> dict[str, dict[tuple[str | None, ...], Decimal]]:
    """Customer id → {values at ``paths`` (text, None when missing) → usage} over [start, end), in one SQL
    query grouped by customer and the values (a dimensional price's combinations). Every given customer
    is present, with {} when it has no events."""
    customer_list = list(customers)
    result: dict[str, dict[tuple[str | None, ...], Decimal]] = {c.pk: {} for c in customer_list}
    if not customer_list:
        return result
    for customer in customer_list:
        _check_same_merchant(metric, customer)
    scope_sql, scope_params = _customers_where(customer_list, "e")
    keys = [(_subject_sql("e"), [])] + [sql.json_text("e.data", sql.path_parts(path)) for path in paths]
    rows = _aggregate_rows(
        metric=metric, start=start, end=end, scope_sql=scope_sql, scope_params=scope_params, keys=keys
    )
    width = len(paths)
    for row in rows:
        usage = result.get(row[0])
        if usage is not None:
            usage[tuple(None if v is None else str(v) for v in row[1 : 1 + width])] = _finish(metric, row[1 + width])
    return result


def usage_grouped(
    *,
    metric: BillableMetric,
    start: datetime,
    end: datetime,
    customer: Customer | None = None,
    group_by: list[str],
    window_size: str | None = None,
    filter_group_by: dict | None = None,
) -> list[UsageGroup]:
    """Usage per window and/or per dimension value, in one SQL query (for the meter endpoint).

    ``group_by`` names dimensions of ``metric.group_by`` or ``"subject"`` (the customer id);
    ``window_size`` is MINUTE, HOUR, DAY or MONTH (UTC buckets); ``filter_group_by`` maps a dimension
    to a value or a list of values. Rows come ordered by window, then by value descending. Raises
    UnknownDimension for a dimension the metric does not define.
    """
    alias = "e"
    keys: list[tuple[str, list]] = []
    window = WINDOW_SIZES[window_size] if window_size else None
    if window:
        keys.append(_window_sql(window, alias))
    keys += [_dimension_sql(metric, name, alias) for name in group_by]

    scope_clauses: list[str] = []
    scope_params: list = []
    if customer is not None:
        _check_same_merchant(metric, customer)
        clause, params = _customer_where(customer, alias)
        scope_clauses.append(clause)
        scope_params += params
    filter_clauses, filter_params = _dimension_filter(metric, filter_group_by, alias)
    scope_clauses += filter_clauses
    scope_params += filter_params

    rows = _aggregate_rows(
        metric=metric,
        start=start,
        end=end,
        scope_sql=" AND ".join(scope_clauses) or None,
        scope_params=scope_params,
        keys=keys,
    )
    groups: list[UsageGroup] = []
    for row in rows:
        values = list(row)
        window_start = window_end = None
        if window:
            window_start = sql.to_datetime(values.pop(0))
            window_end = _window_end(window_start, window)
        group = {name: ("" if v is None else str(v)) for name, v in zip(group_by, values[: len(group_by)], strict=True)}
        value, count = values[len(group_by)], values[len(group_by) + 1]
        groups.append(UsageGroup(window_start, window_end, group, _finish(metric, value), int(count)))
    groups.sort(key=lambda g: (g.window_start or start, -g.value, sorted(g.group.items())))
    return groups


def usage_extent(
    *,
    metrics: Sequence[BillableMetric],
    customer: Customer | None = None,
    filter_group_by: dict | None = None,
    attributed_only: bool = False,
) -> tuple[datetime, datetime] | None:
    """The first and last instants (both included, aware UTC) of the events that count toward any of
    ``metrics`` (one merchant's) at any time from each one's ``event_from``, scoped as ``usage_grouped``
    scopes them (``customer``, ``filter_group_by``, which every metric must define); ``attributed_only``:
    only events a customer can be found for. None when there is none. One query: where a read that found
    nothing in its period would find something."""
    if not metrics:
        return None
    alias = "e"
    merchant_ids = {metric.merchant_id for metric in metrics}
    if len(merchant_ids) != 1:
        raise ValueError("The metrics of one merchant.")
    branches: list[str] = []
    params: list = [merchant_ids.pop()]
    for metric in metrics:
        clauses = [f"{alias}.event_type = %s"]
        branch_params: list = [metric.event_type]
        if metric.event_from:
            clauses.append(f'{alias}."timestamp" >= %s')
            branch_params.append(sql.db_datetime(metric.event_from))
        for extra, extra_params in (_metric_filters(metric, alias), _dimension_filter(metric, filter_group_by, alias)):
            clauses += extra
            branch_params += extra_params
        branches.append("(" + " AND ".join(clauses) + ")")
        params += branch_params
    where = f"{alias}.merchant_id = %s AND ({' OR '.join(branches)})"
    if customer is not None:
        _check_same_merchant(metrics[0], customer)
        clause, customer_params = _customer_where(customer, alias)
        where += f" AND {clause}"
        params += customer_params
    if attributed_only:
        where += f" AND {_subject_sql(alias)} IS NOT NULL"
    query = f'SELECT MIN({alias}."timestamp"), MAX({alias}."timestamp") FROM {EVENTS_TABLE} {alias} WHERE {where}'
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        first, last = cursor.fetchone()
    if first is None:
        return None
    return sql.to_datetime(first), sql.to_datetime(last)


def event_values(
    *,
    metric: BillableMetric,
    customer: Customer,
    start: datetime,
    end: datetime,
    extra_paths: Sequence[str] = (),
) -> list[tuple[datetime, Decimal, list]]:
    """Each counted event's (timestamp, value, [values at extra_paths]) in time order, in one query.

    The value is the number at ``value_property`` (1 for COUNT and for UNIQUE_COUNT without a
    property); events without a numeric value are left out. An extra path's value is a Decimal when
    numeric, else its text, else None — e.g. ``$.unit_price`` for prices carried on events.
    """
    rows = event_values_by_customer(metric=metric, start=start, end=end, customers=[customer], extra_paths=extra_paths)
    return [(moment, value, extras) for moment, _, value, extras in rows[customer.pk]]


def event_values_by_customer(
    *,
    metric: BillableMetric,
    start: datetime,
    end: datetime,
    customers: Iterable[Customer],
    extra_paths: Sequence[str] = (),
) -> dict[str, list[tuple[datetime, int, Decimal, list]]]:
    """Customer id → the rows of ``event_values`` with each event's id after its timestamp, for several
    customers in one query; every given customer is present ([] without events). The invoice reads its
    customer's rows here too, so real-time debits rate exactly the rows the invoice rates."""
    customer_list = list(customers)
    result: dict[str, list[tuple[datetime, int, Decimal, list]]] = {c.pk: [] for c in customer_list}
    if not customer_list:
        return result
    for customer in customer_list:
        _check_same_merchant(metric, customer)
    alias = "e"
    where, params = _metric_where(metric, start, end, alias)
    scope_sql, scope_params = _customers_where(customer_list, alias)
    if metric.value_property and metric.aggregation != Aggregation.COUNT:
        value_sql, value_params = sql.json_number(f"{alias}.data", sql.path_parts(metric.value_property))
    else:
        value_sql, value_params = "1", []
    extra_sqls, extra_params = [], []
    for path in extra_paths:
        text_sql, text_params = sql.json_text(f"{alias}.data", sql.path_parts(path))
        extra_sqls.append(text_sql)
        extra_params += text_params
    extras = "".join(f", {s}" for s in extra_sqls)
    query = (
        f'SELECT {_subject_sql(alias)}, {alias}."timestamp", {alias}.id, {value_sql}{extras} FROM {EVENTS_TABLE} {alias} '
        f"WHERE {where} AND {scope_sql} AND {value_sql} IS NOT NULL "
        f'ORDER BY {alias}."timestamp", {alias}.id'
    )
    with connection.cursor() as cursor:
        cursor.execute(query, value_params + extra_params + params + scope_params + value_params)
        rows = cursor.fetchall()
    for row in rows:
        found = result.get(row[0])
        if found is not None:
            found.append(
                (sql.to_datetime(row[1]), int(row[2]), sql.to_decimal(row[3]), [_extra_value(v) for v in row[4:]])
            )
    return result


def _extra_value(text):
    if text is None:
        return None
    if sql.NUMERIC_STRING.fullmatch(str(text)):
        return Decimal(str(text))
    return str(text)


def metric_events(
    *,
    metric: BillableMetric,
    start: datetime,
    end: datetime,
    customer: Customer | None = None,
    external_id: str | None = None,
    external_subject: str | None = None,
) -> QuerySet[UsageEvent]:
    """Raw events that count toward ``metric`` over [start, end), newest first."""
    where, params = _metric_where(metric, start, end, EVENTS_TABLE)
    queryset = UsageEvent.objects.filter(RawSQL(where, params, output_field=BooleanField()))
    if customer is not None:
        _check_same_merchant(metric, customer)
        match = Q(customer=customer)
        if customer.external_id:
            match |= Q(customer__isnull=True, external_subject=customer.external_id)
        queryset = queryset.filter(match)
    if external_id:
        queryset = queryset.filter(external_id=external_id)
    if external_subject:
        queryset = queryset.filter(external_subject=external_subject)
    return queryset.order_by("-timestamp", "-id")


def event_get_by_idempotency_key(*, merchant: Merchant, idempotency_key: str) -> UsageEvent | None:
    return UsageEvent.objects.filter(merchant=merchant, idempotency_key=idempotency_key).first()


def metric_get(*, merchant: Merchant, metric_id: str) -> BillableMetric | None:
    """The merchant's metric with its filters, or None (another merchant's metric is not found)."""
    return BillableMetric.objects.filter(merchant=merchant, pk=metric_id).prefetch_related("filters").first()


@dataclass(frozen=True, slots=True)
class AwaitingLink:
    """An event stored before its customer existed, and the customer its external subject names now."""

    id: int
    customer_id: str
    timestamp: datetime


def events_awaiting_link(
    *, merchant: Merchant | None = None, external_subjects: Iterable[str] | None = None
) -> list[AwaitingLink]:
    """The events ``services.events_link_external_subjects`` would link now, oldest first (one query on
    the partial index of unlinked events)."""
    events = UsageEvent.objects.filter(customer__isnull=True).exclude(external_subject="")
    if merchant is not None:
        events = events.filter(merchant=merchant)
    if external_subjects is not None:
        events = events.filter(external_subject__in=list(external_subjects))
    named = Customer.objects.filter(merchant_id=OuterRef("merchant_id"), external_id=OuterRef("external_subject"))
    rows = (
        events.annotate(named=Subquery(named.values("id")[:1]))
        .filter(named__isnull=False)
        .order_by("timestamp", "id")
        .values_list("id", "named", "timestamp")
    )
    return [AwaitingLink(event_id, customer_id, timestamp) for event_id, customer_id, timestamp in rows]

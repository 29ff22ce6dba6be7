"""Running usage totals for real-time billing (``RealtimeUsageCounter``).

Real-time billing prices each request as ``rate(usage after) − rate(usage before)``. For SUM and COUNT
metrics the usage after is the usage before plus the values of the request's new events, which metering
already read while validating them (``AcceptedEvent.metric_values``). So "usage before" is one counter
row per (customer, metric, usage window), read and rewritten under the customer's wallet lock, instead
of two aggregates over every event of the period.

A counter is created from one SQL aggregate the first time it is needed, so periods that began before
counters existed stay exact. MAX, MIN, AVG, UNIQUE_COUNT and LATEST cannot be updated from the new
events alone and keep the aggregate. A filter value the databases would render differently from Python
(a float, an object, an array on the path) makes that request re-aggregate the metric (``None`` from
``event_increment``): exactness first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import orjson
from django.db import connection

from catalog.models import Aggregation, BillableMetric, MetricFilterOperator
from catalog.pricing.limits import QUANTUM  # the counter column's 12 places
from core.bulk import WriteBatch, rows_insert
from core.db import any_of, rows_select
from metering import sql
from metering.services import AcceptedEvent

from .models import RealtimeUsageCounter

ZERO = Decimal("0")
_UNKNOWN = object()

UsageKey = tuple[str, datetime, datetime]  # (metric id, window start, window end)
CounterKey = tuple[UsageKey, str]  # (usage key, customer id)


def is_counted(metric: BillableMetric) -> bool:
    """SUM (of a readable property) and COUNT: the increment is a function of the new events alone."""
    if metric.aggregation == Aggregation.COUNT:
        return True
    if metric.aggregation != Aggregation.SUM or not metric.value_property:
        return False
    try:
        sql.path_parts(metric.value_property)
    except ValueError:
        return False
    return True


def definition(metric: BillableMetric) -> str:
    """A fingerprint of everything that decides which events count and for how much."""
    filters = sorted(
        (f.property_path, f.operator, orjson.dumps(f.values, option=orjson.OPT_SORT_KEYS).decode())
        for f in metric.filters.all()
    )
    event_from = metric.event_from.isoformat() if metric.event_from else ""
    text = repr((metric.aggregation, metric.event_type, metric.value_property, event_from, filters))
    return hashlib.sha256(text.encode()).hexdigest()


def _filter_text(data, parts: list[str]):
    """The text SQL's json_text gives for the value at ``parts`` (None = NULL), or _UNKNOWN where the
    two databases and Python could disagree."""
    node = data
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                return None
            node = node[part]
        elif isinstance(node, list):
            return _UNKNOWN  # PostgreSQL would index into the array
        else:
            return None
    if node is None:
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, str):
        return node
    if isinstance(node, int):
        return str(node)
    return _UNKNOWN


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _passes_filters(metric: BillableMetric, data: dict) -> bool | None:
    """The metric's filters as ``metering.selectors`` applies them in SQL; None when undecidable here."""
    for metric_filter in metric.filters.all():
        try:
            parts = sql.path_parts(metric_filter.property_path)
        except ValueError:
            continue  # SQL ignores it too
        values = [_as_text(v) for v in (metric_filter.values or [])]
        if not values:
            continue
        text = _filter_text(data, parts)
        if text is _UNKNOWN:
            return None
        if metric_filter.operator in (MetricFilterOperator.EQUALS, MetricFilterOperator.IN):
            if text is None or text not in values:
                return False
        elif text is not None and text in values:
            return False
    return True


def event_increment(metric: BillableMetric, event: AcceptedEvent, window: tuple[datetime, datetime]) -> Decimal | None:
    """What ``event`` adds to the metric's usage over ``window`` (0 when it does not count); None when it
    cannot be decided without the database."""
    if metric.pk not in event.metric_values or not window[0] <= event.timestamp < window[1]:
        return ZERO
    if metric.event_from is not None and event.timestamp < metric.event_from:
        return ZERO
    passes = _passes_filters(metric, event.data)
    if passes is None:
        return None
    if not passes:
        return ZERO
    value = event.metric_values[metric.pk]
    return ZERO if value is None else value


def event_counts(metric: BillableMetric, event: AcceptedEvent, window: tuple[datetime, datetime]) -> bool | None:
    """Whether ``event`` is one of the metric's events over ``window`` as ``metering.selectors`` selects
    them (window, ``event_from``, filters); None when it cannot be decided without the database."""
    if metric.pk not in event.metric_values or not window[0] <= event.timestamp < window[1]:
        return False
    if metric.event_from is not None and event.timestamp < metric.event_from:
        return False
    return _passes_filters(metric, event.data)


_READ = ["customer_id", "metric_id", "window_start", "window_end", "definition", "usage"]
_WRITTEN = [*_READ, "updated_at"]


def counters_read(*, wanted: Iterable[CounterKey], definitions: dict[str, str]) -> dict[CounterKey, Decimal]:
    """The fresh counters among ``wanted`` (one hand-written query); missing and stale ones are left out."""
    wanted = set(wanted)
    if not wanted:
        return {}
    customer_ids = sorted({customer_id for _, customer_id in wanted})
    metric_ids = sorted({key[0] for key, _ in wanted})
    start_field = RealtimeUsageCounter._meta.get_field("window_start")
    starts = [start_field.get_db_prep_value(start, connection) for start in sorted({key[1] for key, _ in wanted})]
    conditions = [
        any_of(column, values) for column, values in zip(_READ[:3], (customer_ids, metric_ids, starts), strict=True)
    ]
    rows = rows_select(
        f"SELECT {', '.join(_READ)} FROM {RealtimeUsageCounter._meta.db_table}"
        f" WHERE {' AND '.join(sql for sql, _ in conditions)}",
        [param for _, params in conditions for param in params],
        [(RealtimeUsageCounter, name) for name in _READ],
        prepared=True,
    )
    found = {}
    for customer_id, metric_id, start, end, fingerprint, usage in rows:
        key = ((metric_id, start, end), customer_id)
        if key in wanted and fingerprint == definitions[metric_id]:
            found[key] = usage
    return found


def counters_write(
    *, values: dict[CounterKey, Decimal], definitions: dict[str, str], now: datetime, batch: WriteBatch | None = None
) -> None:
    """Create or overwrite counters (one upsert, added to ``batch`` when given). A total with more than
    12 decimal places cannot be stored exactly: its counter is removed (at once) and the next request
    aggregates again."""
    rows, unstorable = [], []
    for ((metric_id, start, end), customer_id), usage in values.items():
        if usage.quantize(QUANTUM) != usage:
            unstorable.append(((metric_id, start, end), customer_id))
            continue
        rows.append((customer_id, metric_id, start, end, definitions[metric_id], usage, now))
    if rows:
        rows_insert(
            RealtimeUsageCounter,
            _WRITTEN,
            rows,
            unique_fields=["customer_id", "metric_id", "window_start", "window_end"],
            update_fields=["usage", "definition", "updated_at"],
            batch=batch,
        )
    for (metric_id, start, end), customer_id in unstorable:
        RealtimeUsageCounter.objects.filter(
            customer_id=customer_id, metric_id=metric_id, window_start=start, window_end=end
        ).delete()


def counters_forget(*, events: Iterable[AcceptedEvent]) -> None:
    """Drop the counters of the windows these events fall in (late events, not counted by anyone): a
    later read, e.g. after the period's invoice is voided, aggregates again."""
    from django.db.models import Q

    condition = Q()
    for event in events:
        condition |= Q(customer_id=event.customer_id, window_start__lte=event.timestamp, window_end__gt=event.timestamp)
    if condition:
        RealtimeUsageCounter.objects.filter(condition).delete()

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

**Dimensional prices** (usage ``{dimension values: quantity}``, ``usage_aggregate_by_customer_and_values``)
of a SUM or COUNT metric keep one row per (customer, metric, window, dimension paths) holding the whole
map (``combinations``: the paths and ``[[values], "quantity"]`` pairs, quantities as Decimal text), read
by the same statement as the plain counters and written by the same upsert. Why one row with the whole
map rather than a row per combination: the map is then complete by construction — a combination missing
from it has no event, which rows per combination could not tell from "not counted yet" without the
aggregate — and a request reads and writes one row per customer and price whatever the combinations it
touches. The increment per combination is computed in Python exactly as the aggregate groups it
(``dimension_increments``): the text ``metering.sql.json_text`` gives each value (strings, integers,
booleans, NULL for a missing value or JSON null); a value the databases could render differently (a
float, an object, an array on the path, an integer beyond 64 bits) is not guessed and that request
aggregates again. A map of more than ``MAX_COMBINATIONS`` combinations is not kept (its JSON would be
read and rewritten by every request: the aggregate is read instead), nor one whose quantities do not fit
the counters' 12 decimal places. The key's ``dimensions`` fingerprints the paths and ``definition`` the
metric, so an edited metric or another set of dimensions never reads a map built under other rules.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import orjson
from django.db import connection

from catalog.models import QUANTITY_DIGITS, Aggregation, BillableMetric, MetricFilterOperator
from catalog.pricing.currency import CTX
from catalog.pricing.limits import QUANTUM  # the counter column's 12 places
from core.bulk import WriteBatch, rows_insert
from core.db import any_of, rows_select
from metering import sql
from metering.services import AcceptedEvent

from .models import RealtimeUsageCounter

ZERO = Decimal("0")
_UNKNOWN = object()

# (metric id, window start, window end), or with the dimension paths a dimensional price's key
# (``invoicing.realtime.windows.usage_key``).
UsageKey = tuple[str, datetime, datetime] | tuple[str, datetime, datetime, tuple[str, ...]]
CounterKey = tuple[UsageKey, str]  # (usage key, customer id)
Combinations = dict[tuple[str | None, ...], Decimal]  # dimension values (text, None = NULL) → quantity
CounterValue = Decimal | Combinations

# The most combinations a dimensional counter keeps. Each request parses and rewrites the whole map, so
# its size is the request's cost: 256 combinations (e.g. 32 models × 8 regions) stay well under a
# millisecond of JSON work; a customer beyond it is priced from the aggregate, as before counters.
MAX_COMBINATIONS = 256
_COLUMN_LIMIT = Decimal(10) ** (QUANTITY_DIGITS["max_digits"] - QUANTITY_DIGITS["decimal_places"])
_INT64 = 2**63


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


def is_dimensional_counted(metric: BillableMetric, paths: tuple[str, ...]) -> bool:
    """A counted metric whose dimension paths are all readable: its dimensional usage can be kept."""
    if not is_counted(metric):
        return False
    try:
        for path in paths:
            sql.path_parts(path)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1024)
def dimensions_fingerprint(paths: tuple[str, ...]) -> str:
    """The counter key's ``dimensions`` for these paths ("" for none: the plain counter)."""
    if not paths:
        return ""
    return hashlib.sha256(orjson.dumps(list(paths))).hexdigest()


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
    if isinstance(node, int) and -_INT64 <= node < _INT64:
        return str(node)  # beyond 64 bits SQLite reads it as a float ("1.8e+19"), PostgreSQL exactly
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


def dimension_increments(
    metric: BillableMetric,
    events: Iterable[AcceptedEvent],
    window: tuple[datetime, datetime],
    paths: tuple[str, ...],
) -> Combinations | None:
    """What ``events`` add to each combination of the dimension values at ``paths`` over ``window``, as
    ``usage_aggregate_by_customer_and_values`` groups them: an event that counts makes its combination
    present even when it adds 0 (the aggregate has a row for it). None when an event cannot be decided
    without the database (a filter, or a dimension value the databases could render differently)."""
    parts = [sql.path_parts(path) for path in paths]
    added: Combinations = {}
    for event in events:
        counts = event_counts(metric, event, window)
        if counts is None:
            return None
        if not counts:
            continue
        values = tuple(_filter_text(event.data, path) for path in parts)
        if _UNKNOWN in values:
            return None
        value = event.metric_values[metric.pk]
        added[values] = added.get(values, ZERO) + (ZERO if value is None else value)
    return added


def combinations_add(before: Combinations, added: Combinations) -> Combinations:
    """``before`` with ``added`` added per combination (a new map: ``before`` is left as it was)."""
    after = dict(before)
    for values, quantity in added.items():
        after[values] = after.get(values, ZERO) + quantity
    return after


def _storable(value: Decimal) -> bool:
    """Kept exactly by a counter: below the column's magnitude, at most 12 decimal places."""
    return value.is_finite() and value.copy_abs() < _COLUMN_LIMIT and value.quantize(QUANTUM, context=CTX) == value


def _combinations_json(paths: tuple[str, ...], usage: Combinations) -> dict | None:
    """The ``combinations`` column of a dimensional counter, or None when it is not kept (too many
    combinations, or a quantity or total that does not fit 12 places)."""
    if len(usage) > MAX_COMBINATIONS:
        return None
    if not all(_storable(quantity) for quantity in usage.values()):
        return None
    return {"paths": list(paths), "usage": [[list(values), str(quantity)] for values, quantity in usage.items()]}


def _combinations_read(paths: tuple[str, ...], stored) -> Combinations | None:
    """A stored map back as the selector returns it; None when it was written for other paths or is
    not of the shape ``_combinations_json`` writes (then it is treated as missing)."""
    if not isinstance(stored, dict) or stored.get("paths") != list(paths):
        return None
    usage: Combinations = {}
    for values, quantity in stored.get("usage") or ():
        usage[tuple(values)] = Decimal(quantity)
    return usage


_READ = ["customer_id", "metric_id", "window_start", "window_end", "dimensions", "definition", "usage", "combinations"]
_WRITTEN = [*_READ, "updated_at"]
_UNIQUE = ["customer_id", "metric_id", "window_start", "window_end", "dimensions"]


class StoredCounters(NamedTuple):
    """What ``counters_read`` found: the fresh counters' values, and every wanted key that has a row
    (fresh or stale: a counter that may no longer be kept must be deleted, not left to be read)."""

    fresh: dict[CounterKey, CounterValue]
    present: set[CounterKey]


def counters_read(*, wanted: Iterable[CounterKey], definitions: dict[str, str]) -> StoredCounters:
    """The counters among ``wanted`` — plain and dimensional in one hand-written query; missing and
    stale ones are left out of ``fresh``."""
    wanted = set(wanted)
    if not wanted:
        return StoredCounters({}, set())
    customer_ids = sorted({customer_id for _, customer_id in wanted})
    metric_ids = sorted({key[0] for key, _ in wanted})
    start_field = RealtimeUsageCounter._meta.get_field("window_start")
    starts = [start_field.get_db_prep_value(start, connection) for start in sorted({key[1] for key, _ in wanted})]
    # (metric id, start, end, dimensions fingerprint) → the wanted usage key it stores
    by_row_key = {(key[0], key[1], key[2], dimensions_fingerprint(_paths(key))): key for key, _ in wanted}
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
    found: dict[CounterKey, CounterValue] = {}
    present: set[CounterKey] = set()
    for customer_id, metric_id, start, end, dimensions, fingerprint, usage, combinations in rows:
        usage_key = by_row_key.get((metric_id, start, end, dimensions))
        key = (usage_key, customer_id)
        if usage_key is None or key not in wanted:
            continue
        present.add(key)
        if fingerprint != definitions[metric_id]:
            continue
        if dimensions:
            value = _combinations_read(_paths(usage_key), combinations)
            if value is not None:
                found[key] = value
        else:
            found[key] = usage
    return StoredCounters(found, present)


def _paths(key: UsageKey) -> tuple[str, ...]:
    return key[3] if len(key) == 4 else ()


def counters_write(
    *,
    values: dict[CounterKey, CounterValue],
    definitions: dict[str, str],
    now: datetime,
    batch: WriteBatch | None = None,
    present: set[CounterKey] | None = None,
) -> None:
    """Create or overwrite counters (one upsert, added to ``batch`` when given). A total with more than
    12 decimal places cannot be stored exactly, nor a dimensional map beyond ``MAX_COMBINATIONS``: such a
    counter is removed (at once; only when it has a row, if ``present`` says which do) and the next
    request aggregates again."""
    rows, unstorable = [], []
    for (key, customer_id), usage in values.items():
        metric_id, start, end = key[0], key[1], key[2]
        paths = _paths(key)
        if isinstance(usage, dict):
            combinations = _combinations_json(paths, usage)
            total = sum(usage.values(), ZERO)
            if combinations is None or not _storable(total):
                unstorable.append((key, customer_id))
                continue
            rows.append(
                (customer_id, metric_id, start, end, dimensions_fingerprint(paths), definitions[metric_id], total)
                + (combinations, now)
            )
        elif not _storable(usage):
            unstorable.append((key, customer_id))
        else:
            rows.append((customer_id, metric_id, start, end, "", definitions[metric_id], usage, None, now))
    if rows:
        rows_insert(
            RealtimeUsageCounter,
            _WRITTEN,
            rows,
            unique_fields=_UNIQUE,
            update_fields=["usage", "combinations", "definition", "updated_at"],
            batch=batch,
        )
    for key, customer_id in unstorable:
        if present is not None and (key, customer_id) not in present:
            continue  # no row to remove: not even a statement
        RealtimeUsageCounter.objects.filter(
            customer_id=customer_id,
            metric_id=key[0],
            window_start=key[1],
            window_end=key[2],
            dimensions=dimensions_fingerprint(_paths(key)),
        ).delete()


def counters_forget(*, events: Iterable[AcceptedEvent]) -> None:
    """Drop the counters — plain and dimensional — of the windows these events fall in (late events,
    not counted by anyone): a later read, e.g. after the period's invoice is voided, aggregates again."""
    from django.db.models import Q

    condition = Q()
    for event in events:
        condition |= Q(customer_id=event.customer_id, window_start__lte=event.timestamp, window_end__gt=event.timestamp)
    if condition:
        RealtimeUsageCounter.objects.filter(condition).delete()

"""Real-time debits of percentage and dynamic prices: priced from their events' values, like the invoice.

Their invoice line rates the window's individual events (``invoicing.usage.event_values_usage``: amounts
for a percentage price, timestamped quantities or priced segments for a dynamic one), so their usage here
is those events' rows, ``(timestamp, event id, value, [values at event_paths])`` in time order:

* **before** the request: one query per (metric, window, paths) for all the request's customers
  (``metering.selectors.event_values_by_customer``, under the wallet lock, the same values and order the
  invoice reads with ``event_values``);
* **after**: those rows plus the request's accepted events, read from their data in Python (no query)
  when that is decidable exactly — the metric is a SUM or COUNT (its value is the one metering already
  read, ``AcceptedEvent.metric_values``), its filters are decided in Python, and an event's unit price
  is an integer, a numeric string or a short float. Otherwise the same query again.

The debit is ``rate(events after) − rate(events before)`` at the ledger's scale
(``wallets.costing.incremental_event_cost``), so a period's debits telescope to the line's exact amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from catalog.models import BillableMetric, Customer, Price
from catalog.pricing import PricingError
from metering import sql
from metering.selectors import event_values_by_customer
from metering.services import AcceptedEvent
from wallets.costing import incremental_event_cost

from .. import usage as usage_source
from .. import usage_counters as counters
from ..pricing_adapter import price_spec_from_price

EventRow = tuple[datetime, int, Decimal, list]  # (timestamp, event id, value, [values at the price's paths])
EventRows = tuple[EventRow, ...]
ZERO = Decimal(0)
_FLOAT_DIGITS = 15  # SQLite renders a stored float with 15 significant digits: shorter ones read back exactly
_UNDECIDED = object()  # a property whose value only the database can tell as it reads it


def is_event_valued(price: Price) -> bool:
    """A metered price rated from its events' values (percentage, dynamic)."""
    return price.billable_metric_id is not None and usage_source.needs_event_values(price)


def event_rows_by_customer(
    *, metric: BillableMetric, window: tuple[datetime, datetime], customers: Iterable[Customer], paths: Sequence[str]
) -> dict[str, EventRows]:
    """Customer id → the window's event rows of ``metric`` (one query for all the customers)."""
    found = event_values_by_customer(
        metric=metric, start=window[0], end=window[1], customers=customers, extra_paths=paths
    )
    return {customer_id: tuple(rows) for customer_id, rows in found.items()}


def event_rows_after(
    *,
    metric: BillableMetric,
    window: tuple[datetime, datetime],
    paths: Sequence[str],
    before: EventRows,
    events: Iterable[AcceptedEvent],
) -> EventRows | None:
    """``before`` plus the rows ``events`` add, in the selector's order; None when an event's row cannot be
    read exactly without the database (then the caller reads the rows again)."""
    if not counters.is_counted(metric):
        return None
    added = []
    for event in events:
        counts = counters.event_counts(metric, event, window)
        if counts is None:
            return None
        value = event.metric_values.get(metric.pk) if counts else None
        if value is None:  # not the metric's, or no value: the selector leaves it out too
            continue
        extras = []
        for path in paths:
            extra = _extra_value(event.data, path)
            if extra is _UNDECIDED:
                return None
            extras.append(extra)
        added.append((event.timestamp, event.id, value, extras))
    if not added:
        return before
    return tuple(sorted((*before, *added), key=lambda row: (row[0], row[1])))


def _extra_value(data: dict, path: str):
    """A property as ``metering.selectors`` reads it at ``path`` (a number, text or None)."""
    try:
        parts = sql.path_parts(path)
    except ValueError:
        return _UNDECIDED
    node = data
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool) or isinstance(node, dict | list):
        return _UNDECIDED
    if isinstance(node, int):
        return Decimal(node)
    if isinstance(node, float):
        text = repr(node)
        digits = text.lstrip("-").replace(".", "").lstrip("0")
        if "e" in text or "n" in text or len(digits) > _FLOAT_DIGITS:
            return _UNDECIDED
        return Decimal(text)
    if isinstance(node, str):
        return Decimal(node) if sql.NUMERIC_STRING.fullmatch(node) else node
    return _UNDECIDED


def event_rows_total(rows: EventRows) -> Decimal:
    """The rows' values added up (a debit's usage for its record)."""
    return sum((row[2] for row in rows), ZERO)


def event_values_cost(price: Price, currency: str, *, before: EventRows, after: EventRows) -> Decimal:
    """rate(events after) − rate(events before) of ``price`` at the ledger's scale. Events the engine
    cannot rate (an event price that is not a number, a time before a schedule's first rate) cannot be
    invoiced either: no debit is made for them (0), and the period invoice reports the error."""
    spec = price_spec_from_price(price, currency=currency)
    try:
        return incremental_event_cost(
            spec=spec,
            usage_before=usage_source.event_values_usage(price, _plain(before)),
            usage_after=usage_source.event_values_usage(price, _plain(after)),
        )
    except (ValueError, PricingError):
        return ZERO


def _plain(rows: EventRows) -> list[tuple]:
    """The rows as ``event_values`` gives them (without the event ids)."""
    return [(moment, value, extras) for moment, _, value, extras in rows]

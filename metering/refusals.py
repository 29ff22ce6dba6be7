"""Which values a metric's events must carry: its prices that refuse values they do not name.

A dimensional price (catalog/pricing/README.md, "Dimensional prices") with ``"unmatched": "refuse"``
prices only the value combinations it lists; ingestion refuses an event of its metric whose values it
does not name (400, on ``data.<property>``) when that price bills the event's customer at the event's
timestamp (``catalog.billing_prices.prices_billing_usage``): a customer whose plan prices the same metric
otherwise (a default rate for unmatched values, no dimensions) is not refused because of another plan's
price. The refusing prices are read with the routing (``metering.selectors.metric_routes``, one query)
and cached with it, so an event whose values every refusing price names costs nothing more; only events
that some refusing price does not name ask, once per request, which of them it bills.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import FilteredRelation, Q

from . import sql


def refusing_relation() -> FilteredRelation:
    """The metric's prices that refuse unmatched values, joined to the routing query (``metric_routes``);
    a new one per query (a FilteredRelation is bound to the query that uses it)."""
    return FilteredRelation("prices", condition=Q(prices__dimensional_rates__unmatched="refuse"))


def refusing_prices(rows: Iterable[tuple]) -> dict[str, list]:
    """Metric id → the (price id, name, paths, priced value tuples) of its prices that refuse unmatched values,
    from the routing rows (metric id, group_by, price id, price name, dimensional rates; the price None for a
    metric without one); catalog/pricing/README.md, "Dimensional prices"."""
    found: dict[str, list] = {}
    for metric_id, group_by, price_id, name, rates in rows:
        if not isinstance(rates, dict):
            continue
        keys = rates.get("dimensions") or []
        dims = group_by if isinstance(group_by, dict) else {}
        try:
            paths = tuple(tuple(sql.path_parts(dims.get(key) or f"$.{key}")) for key in keys)
        except ValueError:
            continue
        values = frozenset(
            tuple(str(item["values"].get(key)) for key in keys)
            for item in rates.get("rates") or []
            if isinstance(item, dict) and isinstance(item.get("values"), dict)
        )
        found.setdefault(metric_id, []).append((price_id, name, paths, values))
    return found

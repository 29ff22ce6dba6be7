"""Writes of usage: validating and storing events (one pass, bulk insert), linking external subjects.

Kept whole because validation and storage are one pass of the ingestion hot path (each event checked and its
row built in one loop, the batch inserted at once; statement counts pinned by
tests/metering/test_ingest_hot_path.py), and the field-by-field validation is most of its length. The seam
when it grows: the validation (``_validate`` and its field checks) as a module of its own."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from catalog.billing_prices import UsageAsk, prices_billing_usage
from catalog.models import Customer, Merchant
from catalog.pricing.limits import BOUND_TEXT, LIMIT, within_bound
from core.db import any_of, planned_once_cursor

from . import sql
from .models import UsageEvent
from .selectors import MetricRoute, metric_routes_cached

MAX_BATCH_EVENTS = 5000
MAX_EVENT_DATA_BYTES = 16 * 1024
# Levels of objects/arrays inside ``data`` ({"a": {"b": 1}} is 2). orjson parses up to 1,024 levels but
# serializes only ~254, so the limit is checked while validating, before ``data`` is serialized.
MAX_DATA_DEPTH = 32
# Bounds of two event fields, one value for the full check and the fast pass (and the column sizes).
MAX_SOURCE_LENGTH = 500
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# The top-level keys of an event (the Paygentic EventInput); any other key is refused, naming it.
EVENT_FIELDS = frozenset(
    ("type", "source", "subject", "externalSubject", "data", "timestamp", "idempotencyKey", "externalId", "namespace")
)
_SQLITE_CHUNK = 500

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
NUL = "\x00"
NUL_MESSAGE = "Null characters (\\u0000) are not allowed."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9_-]+")
_COLUMNS = (
    "merchant_id",
    "customer_id",
    "external_subject",
    "event_type",
    '"timestamp"',
    "received_at",
    "idempotency_key",
    "external_id",
    "source",
    "data",
)
_TABLE = UsageEvent._meta.db_table


@dataclass(slots=True)
class EventResult:
    """What happened to one submitted event (``index`` is its position in the request)."""

    index: int
    status: str
    id: int | None = None
    idempotency_key: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def public_id(self) -> str | None:
        return f"evt_{self.id}" if self.id is not None else None


@dataclass(slots=True)
class AcceptedEvent:
    """A newly stored event, with its resolved customer and the value each routed metric reads from it."""

    index: int
    id: int
    idempotency_key: str
    event_type: str
    source: str
    customer_id: str | None
    external_subject: str
    external_id: str
    timestamp: datetime
    received_at: datetime
    data: dict
    # metric id → value at its valueProperty (Decimal), 1 for COUNT/UNIQUE_COUNT without a property,
    # None when the event carries no value for that metric.
    metric_values: dict[str, Decimal | None]


@dataclass(slots=True)
class IngestOutcome:
    results: list[EventResult]
    accepted: list[AcceptedEvent]

    @property
    def counts(self) -> dict[str, int]:
        counts = {ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0}
        for result in self.results:
            counts[result.status] += 1
        return counts


@dataclass(frozen=True, slots=True)
class CustomerGuard:
    """A SQL condition on the customer row (aliased ``c``) that the one-statement insert of a single event
    must also meet, with its parameters: a caller's rule folded into the insert (invoicing: "no active
    real-time subscription"), so that the common case costs one statement."""

    sql: str
    params: tuple


@dataclass(slots=True)
class _Candidate:
    index: int
    event_type: str
    source: str
    subject: str | None
    external_subject: str
    timestamp: datetime
    idempotency_key: str
    external_id: str
    data: dict
    data_json: str
    metric_values: dict[str, Decimal | None]
    customer_id: str | None = None
    # The refusing prices whose values the event lacks, with their errors: refused only by a price that
    # bills the customer (``_refusals_resolve``).
    refusals: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@dataclass(slots=True)
class _Memo:
    """Checks already passed within one call: many events of a batch share a type and often a timestamp."""

    valid_types: set[str] = field(default_factory=set)
    timestamps: dict[str, datetime] = field(default_factory=dict)


_OUT_OF_BOUNDS = object()


def _numeric_value(value) -> Decimal | None | bool | object:
    """Decimal for a number or numeric string, None when absent, False when present but not a number,
    ``_OUT_OF_BOUNDS`` for a number beyond the shared bound (``catalog.pricing.limits``)."""
    if value is None:
        return None
    if value.__class__ is int:
        return Decimal(value) if -LIMIT < value < LIMIT else _OUT_OF_BOUNDS
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        if not math.isfinite(value):
            return False
        number = Decimal(repr(value))
    elif isinstance(value, str) and sql.NUMERIC_STRING.fullmatch(value):
        number = Decimal(value)
    else:
        return False
    return number if within_bound(number) else _OUT_OF_BOUNDS


def _too_deep(data: dict) -> bool:
    """True when ``data`` nests objects/arrays more than ``MAX_DATA_DEPTH`` levels (iterative: no recursion)."""
    level: list = [data]
    depth = 1
    while True:
        below = []
        for node in level:
            for value in node.values() if node.__class__ is dict else node:
                if value.__class__ is dict or value.__class__ is list:
                    below.append(value)
        if not below:
            return False
        depth += 1
        if depth > MAX_DATA_DEPTH:
            return True
        level = below


def _value_at(data: dict, path: tuple[str, ...]):
    node = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _dimension_text(value) -> str | None:
    """A property as the dimensional aggregation reads it (``sql.json_text``): text, ``true``/``false``."""
    if value is None or value.__class__ is dict or value.__class__ is list:
        return None
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


def _refused_values(route: MetricRoute, data) -> list[tuple[str, dict[str, str]]]:
    """The prices of ``route``'s metric that refuse the event's values (they price only the values they name,
    "unmatched": "refuse"), each with its field-level error: (price id, error). Whether one refuses the
    event depends on whether it bills the event's customer (``_refusals_resolve``)."""
    refused = []
    for price_id, name, paths, values in route.refusals:
        found = tuple(_dimension_text(_value_at(data, path) if isinstance(data, dict) else None) for path in paths)
        if found in values:
            continue
        field = "data." + ".".join(paths[0])
        listed = ", ".join(sorted("/".join(v) for v in values)[:10]) or "none"
        shown = "/".join("(missing)" if v is None else v for v in found)
        message = f"{field} “{shown}” has no rate on the price “{name}”; priced values: {listed}."
        refused.append((price_id, {"field": field, "message": message}))
    return refused


def _refusals_resolve(
    merchant_id: str, candidates: list[_Candidate], results: list[EventResult | None]
) -> list[_Candidate]:
    """Refuse the candidates whose values a refusing price does not name when that price bills their
    customer at their timestamp (one query for the whole request, asked only when some candidate has such
    values); the others are kept, in order. A customer with no subscription billed by the price (another
    plan's customer, one not known yet) is not refused: nothing would rate its usage with that price."""
    pending = [candidate for candidate in candidates if candidate.refusals]
    if not pending:
        return candidates
    asks = [
        UsageAsk(
            subject=candidate.subject,
            external_subject=candidate.external_subject,
            moment=candidate.timestamp,
            price_ids=frozenset(price_id for price_id, _ in candidate.refusals),
        )
        for candidate in pending
    ]
    billing = prices_billing_usage(merchant_id=merchant_id, asks=asks)
    refused: set[int] = set()
    for candidate, billed in zip(pending, billing, strict=True):
        errors: list[dict[str, str]] = []
        for price_id, error in candidate.refusals:
            if price_id in billed and not any(e["field"] == error["field"] for e in errors):
                errors.append(error)
        if errors:
            results[candidate.index] = EventResult(candidate.index, REJECTED, errors=errors)
            refused.add(candidate.index)
    return [candidate for candidate in candidates if candidate.index not in refused] if refused else candidates


def _optional_string(raw: dict, key: str, errors: list, *, max_length: int) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.append({"field": key, "message": f"{key} must be a string."})
        return ""
    if len(value) > max_length:
        errors.append({"field": key, "message": f"{key} is longer than {max_length} characters."})
    elif NUL in value:
        errors.append({"field": key, "message": NUL_MESSAGE})
    return value


def _validate(
    index: int,
    raw,
    *,
    merchant_id: str,
    routes: dict[str, list[MetricRoute]],
    now: datetime,
    future_limit: datetime,
    memo: _Memo,
) -> _Candidate | list[dict[str, str]]:
    """Check one event's shape (plain Python, no serializer); the subject is resolved later in bulk."""
    if not isinstance(raw, dict):
        return [{"field": "body", "message": "An event must be a JSON object."}]
    errors: list[dict[str, str]] = []
    if not raw.keys() <= EVENT_FIELDS:
        for name in sorted(str(key) for key in raw.keys() - EVENT_FIELDS):
            errors.append({"field": name.replace(NUL, "\\u0000"), "message": f"Unknown field “{name}”."})

    event_type = raw.get("type")
    event_routes: list[MetricRoute] = []
    if event_type.__class__ is str and event_type in memo.valid_types:
        event_routes = routes[event_type]
    elif event_type is None or event_type == "":
        errors.append({"field": "type", "message": "type is required."})
    elif not isinstance(event_type, str):
        errors.append({"field": "type", "message": "type must be a string."})
    elif _CONTROL.search(event_type) or len(event_type) > 200:
        errors.append({"field": "type", "message": "type must be at most 200 characters, without control characters."})
    elif event_type not in routes:
        errors.append(
            {"field": "type", "message": f"No billable metric has the event type “{event_type}”; create one first."}
        )
    else:
        event_routes = routes[event_type]
        memo.valid_types.add(event_type)

    source = raw.get("source")
    if source is None or source == "":
        errors.append({"field": "source", "message": "source is required (the URI of the emitting application)."})
        source = ""
    elif not isinstance(source, str) or len(source) > MAX_SOURCE_LENGTH:
        errors.append(
            {"field": "source", "message": f"source must be a string of at most {MAX_SOURCE_LENGTH} characters."}
        )
        source = ""
    elif NUL in source:
        errors.append({"field": "source", "message": NUL_MESSAGE})
        source = ""

    subject = raw.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject or NUL in subject):
        errors.append({"field": "subject", "message": "subject must be a customer id (cus_…)."})
        subject = None
    external_subject = _optional_string(raw, "externalSubject", errors, max_length=200)
    if subject is None and not external_subject and not any(e["field"] == "subject" for e in errors):
        errors.append({"field": "subject", "message": "Give subject (a customer id) or externalSubject."})

    data = raw.get("data")
    data_json = ""
    metric_values: dict[str, Decimal | None] = {}
    refusals: list[tuple[str, dict[str, str]]] = []
    if data is None:
        errors.append({"field": "data", "message": "data is required (an object)."})
    elif not isinstance(data, dict):
        errors.append({"field": "data", "message": "data must be a JSON object."})
    elif _too_deep(data):
        errors.append({"field": "data", "message": f"data is nested more than {MAX_DATA_DEPTH} levels deep."})
    else:
        data_json = orjson.dumps(data).decode()
        if "\\u0000" in data_json:  # PostgreSQL's jsonb cannot store a null character
            errors.append({"field": "data", "message": NUL_MESSAGE})
        elif len(data_json) > MAX_EVENT_DATA_BYTES:
            errors.append(
                {"field": "data", "message": f"data is {len(data_json)} bytes; the limit is {MAX_EVENT_DATA_BYTES}."}
            )
        for route in event_routes:
            if route.refusals:
                refusals += _refused_values(route, data)
            if route.value_path is None:
                metric_values[route.metric_id] = Decimal(1)
                continue
            value = _value_at(data, route.value_path)
            if not route.numeric:
                metric_values[route.metric_id] = None if value is None else Decimal(1)
                continue
            number = _numeric_value(value)
            if number is False or number is _OUT_OF_BOUNDS:
                name = "data." + ".".join(route.value_path)
                if not any(e["field"] == name for e in errors):
                    message = (
                        f'{name} must be a number (or a numeric string such as "12.5").'
                        if number is False
                        else f"{name} must be a number with {BOUND_TEXT}."
                    )
                    errors.append({"field": name, "message": message})
            else:
                metric_values[route.metric_id] = number

    timestamp = now
    raw_timestamp = raw.get("timestamp")
    if raw_timestamp.__class__ is str and raw_timestamp in memo.timestamps:
        timestamp = memo.timestamps[raw_timestamp]
    elif raw_timestamp is not None:
        parsed = None
        if isinstance(raw_timestamp, str) and not _CONTROL.search(raw_timestamp):
            try:
                parsed = datetime.fromisoformat(raw_timestamp)
            except ValueError:
                parsed = None
        if parsed is None:
            errors.append(
                {"field": "timestamp", "message": "timestamp must be an ISO-8601 date-time, e.g. 2025-01-02T03:04:05Z."}
            )
        else:
            timestamp = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
            if timestamp <= future_limit:
                memo.timestamps[raw_timestamp] = timestamp
            else:
                errors.append(
                    {
                        "field": "timestamp",
                        "message": "timestamp is too far in the future "
                        f"(at most {settings.METERLINE_EVENT_FUTURE_TOLERANCE} after the server time).",
                    }
                )

    idempotency_key = raw.get("idempotencyKey")
    if idempotency_key is None or idempotency_key == "":
        idempotency_key = uuid.uuid4().hex
    elif (
        not isinstance(idempotency_key, str)
        or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH
        or NUL in idempotency_key
    ):
        errors.append(
            {
                "field": "idempotencyKey",
                "message": f"idempotencyKey must be a string of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters, "
                "without null characters.",
            }
        )

    external_id = _optional_string(raw, "externalId", errors, max_length=255)
    if external_id and not _EXTERNAL_ID.fullmatch(external_id):
        errors.append({"field": "externalId", "message": "externalId may contain only letters, digits, _ and -."})

    namespace = raw.get("namespace")
    if namespace not in (None, "", merchant_id):
        errors.append({"field": "namespace", "message": "namespace must be your own organization id (or left out)."})

    if errors:
        return errors
    return _Candidate(
        index=index,
        event_type=event_type,
        source=source,
        subject=subject,
        external_subject=external_subject,
        timestamp=timestamp,
        idempotency_key=idempotency_key,
        external_id=external_id,
        data=data,
        data_json=data_json,
        metric_values=metric_values,
        refusals=refusals,
    )


def events_ingest(
    *, merchant: Merchant, raw_events: Sequence, now: datetime, known_customers: Mapping[str, str] | None = None
) -> IngestOutcome:
    """Validate and store usage events; bad items are rejected with field errors, good ones kept.

    A constant number of queries whatever the batch size: customer resolution, one bulk insert with
    ``ON CONFLICT (merchant, idempotency_key) DO NOTHING`` (on PostgreSQL one ``INSERT … SELECT`` over
    the batch sent as a single JSON parameter), a look-up of duplicates' ids when there are any, and
    a link of older unlinked events when an ``externalSubject`` resolved. The event-type → metric
    routing comes from a per-process cache (``metric_routes_cached``), re-read when an event names a
    type it does not know. One event naming its customer by ``subject`` is stored by ONE statement
    that resolves the customer and inserts (the hot path of ``POST /v0/events``); it needs no
    transaction of its own. Everything else runs in one transaction. Safe to call inside an outer
    transaction (never ``durable``, and without a savepoint of its own: an error rolls the caller's
    transaction back); ``now`` is the server time used for absent timestamps, ``received_at`` and the
    future-tolerance check. ``known_customers``: id → external id ("" for none) of customers of this
    merchant the caller read in its transaction (real-time billing has them with their subscriptions);
    subjects among them are not looked up again.
    """
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise ValueError(f"At most {MAX_BATCH_EVENTS} events per request.")
    results, candidates = _validate_all(merchant, raw_events, now)
    if len(candidates) == 1 and candidates[0].subject:
        candidate = candidates[0]
        event_id = _insert_one_for_subject(merchant_id=merchant.pk, candidate=candidate, received_at=now)
        if event_id is not None:
            candidate.customer_id = candidate.subject
            results[candidate.index] = EventResult(candidate.index, ACCEPTED, event_id, candidate.idempotency_key)
            return IngestOutcome(results=results, accepted=[_accepted(candidate, event_id, now)])
        # Nothing inserted: an unknown customer or a duplicate; the general path says which.
    # No savepoint inside a caller's transaction: nothing here is retried after an error.
    with transaction.atomic(savepoint=False):
        accepted = _store(merchant, candidates, results, now, known_customers or {})
    return IngestOutcome(results=results, accepted=accepted)


def _validate_all(
    merchant: Merchant, raw_events: Sequence, now: datetime
) -> tuple[list[EventResult | None], list[_Candidate]]:
    """Validate every event: the rejected ones' results filled in, the valid ones as candidates."""
    routes = metric_routes_cached(merchant_id=merchant.pk)
    # Only string types can route; anything else is refused per item below (a dict is not even hashable).
    event_types = {t for raw in raw_events if isinstance(raw, dict) and isinstance(t := raw.get("type"), str)}
    if any(t not in routes for t in event_types):
        # A metric created since the table was cached (possibly by another process): never refuse on stale data.
        routes = metric_routes_cached(merchant_id=merchant.pk, fresh=True)
    results: list[EventResult | None] = [None] * len(raw_events)
    candidates: list[_Candidate] = []
    future_limit = now + settings.METERLINE_EVENT_FUTURE_TOLERANCE
    memo = _Memo()
    merchant_id = merchant.pk
    for index, raw in enumerate(raw_events):
        checked = _validate_common(index, raw, merchant_id, routes, now, future_limit, memo)
        if checked is None:
            checked = _validate(
                index, raw, merchant_id=merchant_id, routes=routes, now=now, future_limit=future_limit, memo=memo
            )
        if checked.__class__ is list:
            results[index] = EventResult(index, REJECTED, errors=checked)
        else:
            candidates.append(checked)

    return results, _refusals_resolve(merchant_id, candidates, results)


_ONE = Decimal(1)


def _validate_common(
    index: int,
    raw,
    merchant_id: str,
    routes: dict[str, list[MetricRoute]],
    now: datetime,
    future_limit: datetime,
    memo: _Memo,
) -> _Candidate | None:
    """The common valid event in one straight pass (most of a batch): flat ``data``, an event type already
    checked in this call, a ``subject``, an ``idempotencyKey``, no ``externalSubject``/``externalId``.

    ``None`` whenever anything differs from that shape — then ``_validate`` decides, with its messages.
    It accepts only events ``_validate`` accepts and builds the same candidate
    (tests/metering/test_validation_fast_path.py).
    """
    if raw.__class__ is not dict:
        return None
    event_type = raw.get("type")
    if event_type.__class__ is not str or event_type not in memo.valid_types:
        return None
    source = raw.get("source")
    if source.__class__ is not str or not source or len(source) > MAX_SOURCE_LENGTH or NUL in source:
        return None
    subject = raw.get("subject")
    if subject.__class__ is not str or not subject or NUL in subject:
        return None
    idempotency_key = raw.get("idempotencyKey")
    if idempotency_key.__class__ is not str or not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        return None
    raw_timestamp = raw.get("timestamp")
    namespace = raw.get("namespace")
    # type, source, subject, data, idempotencyKey, and timestamp/namespace when given: any other key (an
    # unknown field, externalSubject, externalId, a null) and the full check decides.
    if len(raw) != 5 + (raw_timestamp is not None) + (namespace is not None):
        return None
    if NUL in idempotency_key or namespace not in (None, "", merchant_id):
        return None
    data = raw.get("data")
    if data.__class__ is not dict:
        return None
    for value in data.values():
        if value.__class__ is dict or value.__class__ is list:
            return None  # nested: the full check walks its depth
    data_json = orjson.dumps(data).decode()
    if len(data_json) > MAX_EVENT_DATA_BYTES or "\\u0000" in data_json:
        return None
    metric_values: dict[str, Decimal | None] = {}
    for route in routes[event_type]:
        if route.refusals and _refused_values(route, data):
            return None  # the full check keeps the refusals, resolved with the request's others
        if route.value_path is None:
            metric_values[route.metric_id] = _ONE
            continue
        value = _value_at(data, route.value_path)
        if not route.numeric:
            metric_values[route.metric_id] = None if value is None else _ONE
            continue
        number = _numeric_value(value)
        if number is False or number is _OUT_OF_BOUNDS:
            return None
        metric_values[route.metric_id] = number
    if raw_timestamp is None:
        timestamp = now
    elif raw_timestamp.__class__ is str:
        timestamp = memo.timestamps.get(raw_timestamp)
        if timestamp is None:
            if not raw_timestamp.isprintable():  # control characters: the full check refuses them
                return None
            try:
                parsed = datetime.fromisoformat(raw_timestamp)
            except ValueError:
                return None
            if parsed.tzinfo is None:
                timestamp = parsed.replace(tzinfo=UTC)
            else:
                timestamp = parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
            if timestamp > future_limit:
                return None
            memo.timestamps[raw_timestamp] = timestamp
    else:
        return None
    # (positional, in field order: index, type, source, subject, external subject, timestamp, key,
    # external id, data, its JSON, metric values)
    return _Candidate(
        index, event_type, source, subject, "", timestamp, idempotency_key, "", data, data_json, metric_values
    )


def events_ingest_guarded(
    *, merchant: Merchant, raw_events: Sequence, now: datetime, guard: CustomerGuard
) -> IngestOutcome | None:
    """The hot path of the event endpoints: events naming their customer by ``subject``, stored by ONE
    set-based statement that resolves each customer (the merchant's, and meeting ``guard``) and inserts
    (a single event: one ``INSERT … SELECT … FROM catalog_customer``; a batch: one ``INSERT … SELECT …
    FROM jsonb_array_elements(…) JOIN catalog_customer`` on PostgreSQL, ``json_each`` on SQLite).

    Returns the outcome — per item exact: accepted, duplicate (with the stored event's id), rejected (field
    errors, unknown customer) — or ``None`` when the caller must take its general path, nothing stored:
    some customer fails ``guard``; an event names its customer only by ``externalSubject``; a key repeats
    within the batch; or (a single event) nothing was inserted. A batch runs in one transaction (a
    savepoint inside a caller's), rolled back before returning ``None``; a single event is one statement.
    """
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise ValueError(f"At most {MAX_BATCH_EVENTS} events per request.")
    results, candidates = _validate_all(merchant, raw_events, now)
    if not candidates:
        return IngestOutcome(results=results, accepted=[])
    if not all(c.subject for c in candidates) or len({c.idempotency_key for c in candidates}) < len(candidates):
        return None
    merchant_id = merchant.pk
    if len(candidates) == 1:
        candidate = candidates[0]
        event_id = _insert_one_for_subject(merchant_id=merchant_id, candidate=candidate, received_at=now, guard=guard)
        if event_id is None:
            return None  # an unknown customer, a resend or the guard: the general path says which
        candidate.customer_id = candidate.subject
        results[candidate.index] = EventResult(candidate.index, ACCEPTED, event_id, candidate.idempotency_key)
        return IngestOutcome(results=results, accepted=[_accepted(candidate, event_id, now)])

    with transaction.atomic():
        inserted = _insert_joined(merchant_id=merchant_id, candidates=candidates, received_at=now, guard=guard)
        unknown: set[str] = set()
        existing: dict[str, int] = {}
        if len(inserted) < len(candidates):  # the rare path: resends, unknown customers, the guard
            missing = [c for c in candidates if c.idempotency_key not in inserted]
            passes = _customers_meeting(merchant_id=merchant_id, subjects={c.subject for c in missing}, guard=guard)
            if not all(passes.get(c.subject, True) for c in missing):
                transaction.set_rollback(True)
                return None
            unknown = {c.subject for c in missing if c.subject not in passes}
            keys = [c.idempotency_key for c in missing if c.subject in passes]
            existing = dict(
                UsageEvent.objects.filter(merchant_id=merchant_id, idempotency_key__in=keys).values_list(
                    "idempotency_key", "id"
                )
            )
    accepted: list[AcceptedEvent] = []
    for candidate in candidates:
        key = candidate.idempotency_key
        event_id = inserted.get(key)
        if event_id is not None:
            candidate.customer_id = candidate.subject
            results[candidate.index] = EventResult(candidate.index, ACCEPTED, event_id, key)
            accepted.append(_accepted(candidate, event_id, now))
        elif candidate.subject in unknown:
            results[candidate.index] = EventResult(
                candidate.index,
                REJECTED,
                errors=[{"field": "subject", "message": f"No customer {candidate.subject} in your organization."}],
            )
        else:
            results[candidate.index] = EventResult(candidate.index, DUPLICATE, existing.get(key), key)
    return IngestOutcome(results=results, accepted=accepted)


# The events table has no foreign-key constraints in the database (migration 0004): every statement that
# reads a customer to store its events locks the customer row against deletion until the transaction
# ends (what the constraint triggers did, at a fraction of their cost); ``customer_delete`` locks the
# customer FOR UPDATE before the ORM's PROTECT check. SQLite serializes writers, so it needs no lock.
_KEY_SHARE = "FOR KEY SHARE OF c"


# One set-based statement for a batch naming its customers by subject: the events travel as ONE JSON
# parameter (orjson, each event's data embedded as the JSON text validation produced), unpacked by
# jsonb_array_elements (PostgreSQL) or json_each (SQLite) and joined to the merchant's customers, so the
# customer check, the caller's guard and the insert are one statement. ``{guard}`` is the caller's SQL.
_JOINED_INSERT_POSTGRES = (
    f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "
    "SELECT %s, c.id, e->>1, e->>2, (e->>3)::timestamptz, %s, e->>4, e->>5, e->>6, e->7 "
    f"FROM jsonb_array_elements(%s::jsonb) AS e JOIN {Customer._meta.db_table} AS c "
    "ON c.merchant_id = %s AND c.id = e->>0 WHERE {guard} FOR KEY SHARE OF c "
    "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING idempotency_key, id"
)
# SQLite: json_each over the same array; the WHERE clause also keeps ``ON CONFLICT`` from being parsed
# as part of the join (SQLite's documented ambiguity of INSERT … SELECT … ON CONFLICT).
_JOINED_INSERT_SQLITE = (
    f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "
    "SELECT %s, c.id, json_extract(e.value, '$[1]'), json_extract(e.value, '$[2]'), "
    "json_extract(e.value, '$[3]'), %s, json_extract(e.value, '$[4]'), json_extract(e.value, '$[5]'), "
    "json_extract(e.value, '$[6]'), json_extract(e.value, '$[7]') "
    f"FROM json_each(%s) AS e JOIN {Customer._meta.db_table} AS c "
    "ON c.merchant_id = %s AND c.id = json_extract(e.value, '$[0]') WHERE {guard} "
    "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING idempotency_key, id"
)


def _insert_joined(
    *, merchant_id: str, candidates: list[_Candidate], received_at: datetime, guard: CustomerGuard
) -> dict[str, int]:
    """Insert the events whose customer is the merchant's and meets ``guard``, skipping stored keys;
    idempotency key → id of the rows inserted now."""
    postgres = sql.is_postgres()
    adapt = (lambda v: v) if postgres else sql.db_datetime
    fragment = orjson.Fragment
    payload = orjson.dumps(
        [
            (
                c.subject,
                c.external_subject,
                c.event_type,
                adapt(c.timestamp),
                c.idempotency_key,
                c.external_id,
                c.source,
                fragment(c.data_json),
            )
            for c in candidates
        ]
    ).decode()
    statement = (_JOINED_INSERT_POSTGRES if postgres else _JOINED_INSERT_SQLITE).replace("{guard}", guard.sql)
    with planned_once_cursor() as cursor:
        cursor.execute(statement, [merchant_id, adapt(received_at), payload, merchant_id, *guard.params])
        return dict(cursor.fetchall())


def _customers_meeting(*, merchant_id: str, subjects: set[str], guard: CustomerGuard) -> dict[str, bool]:
    """The merchant's customers among ``subjects``: id → whether it meets ``guard`` (one query)."""
    named, params = any_of("c.id", sorted(subjects))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id, CASE WHEN {guard.sql} THEN 1 ELSE 0 END FROM {Customer._meta.db_table} AS c "
            f"WHERE c.merchant_id = %s AND {named}",
            [*guard.params, merchant_id, *params],
        )
        return {customer_id: bool(meets) for customer_id, meets in cursor.fetchall()}


def _accepted(candidate: _Candidate, event_id: int, received_at: datetime) -> AcceptedEvent:
    return AcceptedEvent(
        candidate.index,
        event_id,
        candidate.idempotency_key,
        candidate.event_type,
        candidate.source,
        candidate.customer_id,
        candidate.external_subject,
        candidate.external_id,
        candidate.timestamp,
        received_at,
        candidate.data,
        candidate.metric_values,
    )


def _store(
    merchant: Merchant,
    candidates: list[_Candidate],
    results: list[EventResult | None],
    now: datetime,
    known_customers: Mapping[str, str],
) -> list[AcceptedEvent]:
    """Resolve subjects, insert, classify duplicates; fills ``results`` and returns the accepted events."""
    # Resolve subjects and external subjects in one query.
    subjects = {c.subject for c in candidates if c.subject}
    external_subjects = {c.external_subject for c in candidates if c.external_subject and not c.subject}
    by_id: dict[str, str | None] = {c: known_customers[c] for c in subjects if c in known_customers}
    by_external: dict[str, str] = {ext: c for c, ext in known_customers.items() if ext}
    unknown_subjects = subjects - by_id.keys()
    unknown_externals = external_subjects - by_external.keys()
    if unknown_subjects or unknown_externals:
        for customer_id, customer_external_id in _customers_matching(merchant, unknown_subjects, unknown_externals):
            by_id[customer_id] = customer_external_id
            if customer_external_id:
                by_external[customer_external_id] = customer_id
    resolved_externals: set[str] = set()
    ready: list[_Candidate] = []
    for candidate in candidates:
        if candidate.subject:
            if candidate.subject not in by_id:
                results[candidate.index] = EventResult(
                    index=candidate.index,
                    status=REJECTED,
                    errors=[{"field": "subject", "message": f"No customer {candidate.subject} in your organization."}],
                )
                continue
            candidate.customer_id = candidate.subject
        elif candidate.external_subject in by_external:
            candidate.customer_id = by_external[candidate.external_subject]
            resolved_externals.add(candidate.external_subject)
        ready.append(candidate)

    # The first occurrence of a key in the batch is the one inserted; repeats are duplicates of it.
    first_by_key: dict[str, _Candidate] = {}
    to_insert: list[_Candidate] = []
    for candidate in ready:
        if candidate.idempotency_key in first_by_key:
            continue
        first_by_key[candidate.idempotency_key] = candidate
        to_insert.append(candidate)

    inserted = _insert(merchant_id=merchant.pk, candidates=to_insert, received_at=now) if to_insert else {}
    missing = [c.idempotency_key for c in to_insert if c.idempotency_key not in inserted]
    existing: dict[str, int] = {}
    if missing:
        existing = dict(
            UsageEvent.objects.filter(merchant=merchant, idempotency_key__in=missing).values_list(
                "idempotency_key", "id"
            )
        )

    accepted: list[AcceptedEvent] = []
    for candidate in ready:
        key = candidate.idempotency_key
        event_id = inserted.get(key)
        if event_id is not None and first_by_key[key] is candidate:
            results[candidate.index] = EventResult(candidate.index, ACCEPTED, event_id, key)
            accepted.append(_accepted(candidate, event_id, now))
        else:
            results[candidate.index] = EventResult(candidate.index, DUPLICATE, event_id or existing.get(key), key)

    if resolved_externals:
        events_link_external_subjects(merchant=merchant, external_subjects=resolved_externals)
    return accepted


def _insert_one_for_subject(
    *, merchant_id: str, candidate: _Candidate, received_at: datetime, guard: CustomerGuard | None = None
) -> int | None:
    """One statement: insert the event if its customer is the merchant's (and meets ``guard``) and its key
    is new; its id, or None."""
    postgres = sql.is_postgres()
    adapt = (lambda v: v) if postgres else sql.db_datetime
    data_mark = "%s::jsonb" if postgres else "%s"
    guard_sql, guard_params = (f" AND {guard.sql}", guard.params) if guard is not None else ("", ())
    lock = f" {_KEY_SHARE}" if postgres else ""
    with planned_once_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "
            f"SELECT %s, c.id, %s, %s, %s, %s, %s, %s, %s, {data_mark} FROM {Customer._meta.db_table} AS c "
            f"WHERE c.merchant_id = %s AND c.id = %s{guard_sql}{lock} "
            "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING id",
            [
                merchant_id,
                candidate.external_subject,
                candidate.event_type,
                adapt(candidate.timestamp),
                adapt(received_at),
                candidate.idempotency_key,
                candidate.external_id,
                candidate.source,
                candidate.data_json,
                merchant_id,
                candidate.subject,
                *guard_params,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _customers_matching(merchant: Merchant, subjects: set[str], external_subjects: set[str]) -> list[tuple]:
    """(id, external_id) of the merchant's customers named by id or external id, in one query."""
    if sql.is_postgres():
        # Two array parameters instead of thousands of placeholders (building those costs ~20 ms per 1,000).
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, external_id FROM {Customer._meta.db_table} AS c WHERE merchant_id = %s "
                f"AND (id = ANY(%s) OR external_id = ANY(%s)) {_KEY_SHARE}",
                [merchant.pk, list(subjects), list(external_subjects)],
            )
            return cursor.fetchall()
    return list(
        Customer.objects.filter(merchant=merchant)
        .filter(_subject_lookup(subjects, external_subjects))
        .values_list("id", "external_id")
    )


def _subject_lookup(subjects: set[str], external_subjects: set[str]):
    lookup = Q(pk__in=subjects) if subjects else Q()
    if external_subjects:
        lookup = (lookup | Q(external_id__in=external_subjects)) if subjects else Q(external_id__in=external_subjects)
    return lookup


def _rows(merchant_id: str, candidates: list[_Candidate], received_at: datetime, *, adapt) -> list[tuple]:
    received = adapt(received_at)
    return [
        (
            merchant_id,
            c.customer_id,
            c.external_subject,
            c.event_type,
            adapt(c.timestamp),
            received,
            c.idempotency_key,
            c.external_id,
            c.source,
            c.data_json,
        )
        for c in candidates
    ]


def _insert(*, merchant_id: str, candidates: list[_Candidate], received_at: datetime) -> dict[str, int]:
    """Insert, skipping keys already stored; returns idempotency key → id of the rows inserted now."""
    if sql.is_postgres():
        return _insert_json_batch(merchant_id=merchant_id, candidates=candidates, received_at=received_at)
    rows = _rows(merchant_id, candidates, received_at, adapt=sql.db_datetime)
    inserted: dict[str, int] = {}
    row_marks = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    with connection.cursor() as cursor:
        for offset in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[offset : offset + _SQLITE_CHUNK]
            cursor.execute(
                f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES {', '.join([row_marks] * len(chunk))} "
                "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING idempotency_key, id",
                [value for row in chunk for value in row],
            )
            inserted.update(cursor.fetchall())
    return inserted


# PostgreSQL: the whole batch travels as ONE jsonb parameter (an array of 7-element arrays, serialised
# by orjson in C, each event's data embedded as the JSON text already produced by validation) and is
# unpacked by one INSERT … SELECT … ON CONFLICT DO NOTHING. One round trip and no per-row Python
# adaptation: measured faster than COPY into a staging table followed by INSERT … SELECT
# (metering/README.md, "Performance").
_JSON_BATCH_INSERT = (
    f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) "
    "SELECT %s, e->>0, e->>1, e->>2, (e->>3)::timestamptz, %s, e->>4, e->>5, e->>6, e->7 "
    "FROM jsonb_array_elements(%s::jsonb) AS e "
    "ON CONFLICT (merchant_id, idempotency_key) DO NOTHING RETURNING idempotency_key, id"
)


def _insert_json_batch(*, merchant_id: str, candidates: list[_Candidate], received_at: datetime) -> dict[str, int]:
    fragment = orjson.Fragment
    payload = orjson.dumps(
        [
            (
                c.customer_id,
                c.external_subject,
                c.event_type,
                c.timestamp,
                c.idempotency_key,
                c.external_id,
                c.source,
                fragment(c.data_json),
            )
            for c in candidates
        ]
    ).decode()
    with connection.cursor() as cursor:
        cursor.execute(_JSON_BATCH_INSERT, [merchant_id, received_at, payload])
        return dict(cursor.fetchall())


@transaction.atomic
def events_link_external_subjects(
    *, merchant: Merchant | None = None, external_subjects: Collection[str] | None = None
) -> int:
    """Link events stored before their customer existed to the customer whose external id they name.

    One ``UPDATE … FROM`` join; returns the number of events linked. Run every minute by Celery beat
    and, for the subjects that just resolved, during ingestion.
    """
    clauses = [
        "e.customer_id IS NULL",
        "e.external_subject <> ''",
        "c.merchant_id = e.merchant_id",
        "c.external_id = e.external_subject",
    ]
    params: list = []
    if merchant is not None:
        clauses.append("e.merchant_id = %s")
        params.append(merchant.pk)
    if external_subjects is not None:
        subjects = list(external_subjects)
        if not subjects:
            return 0
        clauses.append(f"e.external_subject IN ({', '.join(['%s'] * len(subjects))})")
        params += subjects
    customers = Customer._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TABLE} AS e SET customer_id = c.id FROM {customers} AS c WHERE {' AND '.join(clauses)}", params
        )
        return cursor.rowcount

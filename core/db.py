"""Database helpers for the hot paths that speak SQL directly."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute

PSYCOPG_DEFAULT_PREPARE_THRESHOLD = 5


def _wrapper():
    """The default connection's wrapper itself: ``django.db.connection`` is a proxy that looks the
    wrapper up (through asgiref's local) on every attribute, which hot paths would pay per attribute read."""
    return connections[DEFAULT_DB_ALIAS]


@contextmanager
def planned_once_cursor() -> Iterator[CursorWrapper]:
    """A cursor for a statement a process runs thousands of times with the same text.

    On PostgreSQL it binds parameters on the server and asks psycopg to prepare the statement (once per
    connection and statement text), so PostgreSQL stops planning it: planning the single-event insert
    and the real-time check cost more than executing them. Django's default cursor binds on the client
    and never prepares (and Django turns psycopg's automatic preparation off). Connections open with
    ``plan_cache_mode=force_generic_plan`` (settings), so a prepared statement is planned once per
    connection. Behind PgBouncer in transaction mode this needs PgBouncer >= 1.21 with
    ``max_prepared_statements`` > 0; older transaction-pooling proxies break prepared statements.

    The cursor is wrapped like ``connection.cursor()`` (thread check, query logging), so tests still
    count these statements. On SQLite: the ordinary cursor.
    """
    # The wrapper itself, not the ``connection`` proxy: each attribute of the proxy is a look-up through
    # asgiref's local, and Django's cursor wrapper reads its connection's attributes on every execute.
    db = _wrapper()
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            yield cursor
        return
    db.ensure_connection()
    db.validate_thread_sharing()
    raw_connection = db.connection
    # Django opens connections with prepare_threshold=None, which psycopg reads as "never prepare",
    # even when asked; lifted only around this cursor (Django's own cursors bind on the client and are
    # never prepared whatever the threshold).
    threshold = raw_connection.prepare_threshold
    raw_connection.prepare_threshold = PSYCOPG_DEFAULT_PREPARE_THRESHOLD
    wrapper = _LoggedAsWritten if db.queries_logged else CursorWrapper
    cursor = wrapper(_preparing_cursor_class()(raw_connection), db)
    try:
        yield cursor
    finally:
        cursor.close()
        raw_connection.prepare_threshold = threshold


class _LoggedAsWritten(CursorDebugWrapper):
    """Logs the statement as written (``%s`` placeholders): Django's rendering of the executed query
    reads client-side binding state that a prepared statement does not have."""

    @contextmanager
    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        with super().debug_sql(sql, params, use_last_executed_query=False, many=many):
            yield


@functools.cache
def _preparing_cursor_class():
    from django.db.backends.postgresql.base import ServerBindingCursor  # PostgreSQL only

    class PreparingCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

    return PreparingCursor


# -- timestamps read at C speed -----------------------------------------------------------------------


@functools.cache
def _utc_timestamptz_loader():
    """psycopg's own (C) text loader of ``timestamptz``, under the class name Django checks.

    Django registers a Python subclass of psycopg's pure-Python loader on every connection (to attach
    its time zone), so each timestamp of every row is parsed by Python code: ~3 µs a value, a tenth of
    the real-time hot path's Python time. When the connection's zone is UTC, psycopg's C loader already
    returns exactly what Django's would (aware datetimes in ``datetime.timezone.utc``); this class keeps
    Django's ``timezone`` attribute (its ``create_cursor`` compares it) and hands each instance the C
    loader's ``load``."""
    from psycopg import adapters
    from psycopg.postgres import types
    from psycopg.pq import Format
    from psycopg.types.datetime import TimestamptzLoader

    fast = adapters.get_loader(types["timestamptz"].oid, Format.TEXT)  # the C class with psycopg[binary]

    class UtcTimestamptzLoader(TimestamptzLoader):
        timezone = datetime.UTC

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self.load = fast(oid, context).load

    return UtcTimestamptzLoader


def timestamptz_loader_install(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver (connection set-up, not business logic): on a PostgreSQL
    connection whose session and Django both use UTC, timestamps are loaded by psycopg's C loader."""
    if connection.vendor != "postgresql" or connection.timezone is not datetime.UTC:
        return
    raw = connection.connection
    if raw.info.timezone is not datetime.UTC:
        return
    raw.adapters.register_loader("timestamptz", _utc_timestamptz_loader())


# -- hand-written reads that still convert values like the ORM ---------------------------------------

_PLANS: dict[tuple, list] = {}


def _conversions(db, columns: tuple) -> list[tuple[int, list, object]]:
    """Per converted column: (position, converters, expression), the backend's and the field's
    converters as the ORM's compiler applies them (SQLite returns decimals as floats and datetimes as
    text; PostgreSQL needs almost none). Cached per database vendor and column list."""
    key = (db.vendor, columns)
    found = _PLANS.get(key)
    if found is None:
        found = []
        for position, column in enumerate(columns):
            if column is None:
                continue
            model, name = column
            expression = model._meta.get_field(name).get_col(model._meta.db_table)
            converters = db.ops.get_db_converters(expression) + expression.get_db_converters(db)
            if converters:
                found.append((position, converters, expression))
        _PLANS[key] = found
    return found


def rows_select(sql: str, params, columns, *, prepared: bool = False) -> list[tuple]:
    """Run a hand-written SELECT and return its rows as tuples, each value converted as the ORM would
    convert it. ``columns`` names, per selected column, ``(model, field name)`` (``None``: returned
    as the driver gives it). ``prepared``: through ``planned_once_cursor`` (a statement whose text
    never changes)."""
    db = _wrapper()
    active = _conversions(db, tuple(columns))
    if prepared:
        with planned_once_cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    else:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    if not active:
        return [tuple(row) for row in rows]
    converted = []
    for row in rows:
        row = list(row)
        for i, converters, expression in active:
            value = row[i]
            for converter in converters:
                value = converter(value, expression, db)
            row[i] = value
        converted.append(tuple(row))
    return converted


# -- model instances from full rows ---------------------------------------------------------------------

_PLAIN_ATTRIBUTES = (DeferredAttribute, ForeignKeyDeferredAttribute)
_LOADS_PLAINLY: dict[type[models.Model], tuple[str, ...] | None] = {}


def _plain_attnames(model: type[models.Model]) -> tuple[str, ...] | None:
    """The attnames of ``model``'s concrete fields when an instance can be built by filling its
    ``__dict__`` (what ``Model.__init__`` amounts to for a full row): neither ``from_db`` nor
    ``__init__`` overridden, and every field's attribute a plain deferred one defined on the model itself
    (a field with a descriptor of its own, like a file field, runs code on assignment; an inherited
    parent's fields live on the parent). None otherwise; init-signal receivers are checked per call."""
    if model in _LOADS_PLAINLY:
        return _LOADS_PLAINLY[model]
    fields = model._meta.concrete_fields
    plain = (
        model.from_db.__func__ is models.Model.from_db.__func__
        and model.__init__ is models.Model.__init__
        and all(type(model.__dict__.get(field.attname)) in _PLAIN_ATTRIBUTES for field in fields)
    )
    found = tuple(field.attname for field in fields) if plain else None
    _LOADS_PLAINLY[model] = found
    return found


def _init_receivers(model: type[models.Model]) -> bool:
    """Does a ``pre_init`` or ``post_init`` receiver listen to ``model``? (None connected at all, the
    usual case, answers without asking the signals per sender.)"""
    if not signals.pre_init.receivers and not signals.post_init.receivers:
        return False
    return signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model)


def instance_from_row(model: type[models.Model], db: str, names: Sequence[str], values: Sequence) -> models.Model:
    """``model.from_db(db, names, values)``, built without ``Model.__init__`` when ``names`` are all of
    the model's concrete fields in order and the model loads plainly (``_plain_attnames``).

    ``__init__`` sets each field through ``setattr`` and sends two signals per instance; a real-time
    request spread over 20 customers builds ~100 instances (subscriptions, customers, wallets, lots)
    and their ``__init__`` was ~8 % of its Python time (py-spy). The result is the same instance: the same ``__dict__`` and
    a ``ModelState`` saying loaded from ``db``. Receivers connected later (a test's, say) are honoured:
    the signal check runs on every call."""
    attnames = _plain_attnames(model)
    if (
        attnames is None
        or len(names) != len(attnames)
        or (names is not attnames and tuple(names) != attnames)
        or _init_receivers(model)
    ):
        return model.from_db(db, names, values)
    instance = model.__new__(model)
    instance.__dict__.update(zip(attnames, values, strict=True))
    state = instance._state = ModelState()
    state.adding = False
    state.db = db
    return instance


@dataclass(frozen=True)
class JoinedColumns:
    """The select list of several joined models' concrete columns, and where each model's part lies."""

    select: str
    converters: tuple
    names: list[tuple[str, ...]]  # per model: its concrete fields' attnames, in select order
    slices: list[tuple[int, int]]  # per model: its part of a row
    pks: list[int]  # per model: the position of its primary key in its part


_JOINED: dict[tuple, JoinedColumns] = {}


def joined_columns(parts: tuple[tuple[type[models.Model], str], ...]) -> JoinedColumns:
    """Every concrete column of ``parts`` ((model, table alias) pairs), cached per database vendor."""
    key = (connection.vendor, parts)
    found = _JOINED.get(key)
    if found is None:
        quote = connection.ops.quote_name
        select, converters, names, slices = [], [], [], []
        for model, alias in parts:
            fields = model._meta.concrete_fields
            start = len(select)
            select += [f"{alias}.{quote(field.column)}" for field in fields]
            converters += [(model, field.attname) for field in fields]
            names.append(tuple(field.attname for field in fields))
            slices.append((start, len(select)))
        pks = [part.index(model._meta.pk.attname) for part, (model, _) in zip(names, parts, strict=True)]
        found = _JOINED[key] = JoinedColumns(", ".join(select), tuple(converters), names, slices, pks)
    return found


def instances_select(
    sql: str, params, parts: Sequence[tuple[type[models.Model], str]], *, prepared: bool = False
) -> list[tuple]:
    """Model instances from a hand-written SELECT over joined tables, without the ORM's query building.

    ``sql`` holds ``{columns}`` where the select list goes; ``parts`` names each joined model and its
    table alias, in select order. Every concrete column of each is selected and converted like the ORM
    converts it, and ``from_db`` builds complete instances. Returns one tuple of instances per row
    (``None`` for a left-joined row that is absent); one instance per model and primary key is shared by
    all the rows naming it. Relations between them are the caller's to attach (assigning the relation,
    ``price.fee = fee``, sets the id and caches the row). Columns selected after ``{columns}`` follow the instances in each tuple, as the driver gives them."""
    parts = tuple(parts)
    columns = joined_columns(parts)
    rows = rows_select(sql.format(columns=columns.select), params, columns.converters, prepared=prepared)
    alias = DEFAULT_DB_ALIAS
    shared: dict[tuple, models.Model] = {}
    found = []
    for row in rows:
        instances = []
        for (model, _), names, (start, end), pk_at in zip(
            parts, columns.names, columns.slices, columns.pks, strict=True
        ):
            values = row[start:end]
            pk = values[pk_at]
            if pk is None:
                instances.append(None)
                continue
            instance = shared.get((model, pk))
            if instance is None:
                instance = shared[(model, pk)] = instance_from_row(model, alias, names, values)
            instances.append(instance)
        found.append((*instances, *row[len(columns.converters) :]))
    return found


def prefetched(
    instances: Iterable[models.Model], cache_name: str, children: Iterable[models.Model], parent_attname: str
):
    """Set ``instance.<cache_name>.all()`` of each instance to its ``children`` (in the given order), as
    ``prefetch_related`` would, from rows read by hand."""
    by_parent: dict = {}
    for child in children:
        by_parent.setdefault(getattr(child, parent_attname), []).append(child)
    for instance in instances:
        related = getattr(type(instance), cache_name).rel.related_model
        queryset = models.QuerySet(model=related)
        queryset._result_cache = by_parent.get(instance.pk, [])
        queryset._prefetch_done = True
        cache = instance.__dict__.setdefault("_prefetched_objects_cache", {})
        cache[cache_name] = queryset


def any_of(column: str, values: Iterable) -> tuple[str, list]:
    """``column`` is one of ``values``: (SQL, params). On PostgreSQL ``column = ANY(%s)`` with one array
    parameter, so the statement's text does not depend on how many values there are (it can be
    prepared once); elsewhere ``column IN (%s, …)``. ``values`` must not be empty."""
    values = list(values)
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [values]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", values

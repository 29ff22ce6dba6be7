"""Database helpers for the hot paths that speak SQL directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

PSYCOPG_DEFAULT_PREPARE_THRESHOLD = 5


@contextmanager
def planned_once_cursor() -> Iterator[CursorWrapper]:
    """A cursor for a statement a process runs thousands of times with the same text.

    On PostgreSQL it binds parameters on the server and asks psycopg to prepare the statement (once per
    connection and statement text), so PostgreSQL stops planning it: planning the single-event insert
    and the real-time check cost more than executing them. Django's default cursor binds on the client
    and never prepares (and Django turns psycopg's automatic preparation off). Not for a server behind a
    transaction-pooling proxy (PgBouncer in transaction mode), where prepared statements break.

    The cursor is wrapped like ``connection.cursor()`` (thread check, query logging), so tests still
    count these statements. On SQLite: the ordinary cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw_connection = connection.connection
    # Django opens connections with prepare_threshold=None, which psycopg reads as "never prepare",
    # even when asked; lifted only around this cursor (Django's own cursors bind on the client and are
    # never prepared whatever the threshold).
    threshold = raw_connection.prepare_threshold
    raw_connection.prepare_threshold = PSYCOPG_DEFAULT_PREPARE_THRESHOLD
    wrapper = _LoggedAsWritten if connection.queries_logged else CursorWrapper
    cursor = wrapper(_preparing_cursor_class()(raw_connection), connection)
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


_PREPARING_CURSOR = None


def _preparing_cursor_class():
    global _PREPARING_CURSOR
    if _PREPARING_CURSOR is None:
        from django.db.backends.postgresql.base import ServerBindingCursor  # PostgreSQL only

        class PreparingCursor(ServerBindingCursor):
            def execute(self, query, params=None, *, prepare=None, binary=None):
                return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)

        _PREPARING_CURSOR = PreparingCursor
    return _PREPARING_CURSOR


# -- hand-written reads that still convert values like the ORM ---------------------------------------

_CONVERTERS: dict[tuple, list] = {}


def _converters(model, fields: tuple[str, ...]) -> list:
    """Per column: the backend's and the field's converters, as the ORM's compiler applies them (SQLite
    returns decimals as floats and datetimes as text; PostgreSQL needs almost none)."""
    key = (connection.vendor, model, fields)
    found = _CONVERTERS.get(key)
    if found is None:
        found = []
        for name in fields:
            column = model._meta.get_field(name).get_col(model._meta.db_table)
            converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            found.append((converters, column) if converters else None)
        _CONVERTERS[key] = found
    return found


def rows_select(sql: str, params, columns, *, prepared: bool = False) -> list[tuple]:
    """Run a hand-written SELECT and return its rows as tuples, each value converted as the ORM would
    convert it. ``columns`` names, per selected column, ``(model, field name)`` (``None``: returned
    as the driver gives it). ``prepared``: through ``planned_once_cursor`` (a statement whose text
    never changes)."""
    plan = []
    for column in columns:
        if column is None:
            plan.append(None)
        else:
            plan.append(_converters(column[0], (column[1],))[0])
    if prepared:
        with planned_once_cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    active = [(i, entry) for i, entry in enumerate(plan) if entry is not None]
    if not active:
        return [tuple(row) for row in rows]
    converted = []
    for row in rows:
        row = list(row)
        for i, (converters, expression) in active:
            value = row[i]
            for converter in converters:
                value = converter(value, expression, connection)
            row[i] = value
        converted.append(tuple(row))
    return converted

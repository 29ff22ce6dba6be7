"""Row writes for the hot paths, without the ORM's per-row compilation.

``rows_update``: Django's ``bulk_update`` builds a ``CASE WHEN pk = … THEN …`` expression per row and
field; for the 20 wallets of a spread real-time batch that cost ~15 ms of Python per request, more than
the database work. ``rows_insert``: ``bulk_create`` builds and compiles every instance.

On PostgreSQL both send one statement whose columns are arrays (``unnest``): its text does not depend on
the number of rows, so it is prepared once per connection (``planned_once_cursor``) and psycopg never
re-parses a long multi-row statement. Elsewhere (SQLite, or a value of an unusual type) ``rows_update``
runs one ``UPDATE … WHERE pk = %s`` per object with ``executemany`` and ``rows_insert`` multi-row
``INSERT … VALUES``, values through each field's ``get_db_prep_save`` as ``save()`` does.

``WriteBatch``: given as ``batch=``, both add their statement to it instead of running it; the caller
runs ``batch.execute()``, which sends PostgreSQL the array statements as ONE statement of data-modifying
``WITH`` clauses (the real-time debit's six writes in one round trip).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import connection, models

from .db import planned_once_cursor

# -- writes sent together -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Write:
    sql: str
    params: list
    many: bool = False  # ``executemany`` (params: one list per row)
    arrays: bool = False  # a PostgreSQL array statement: prepared, and may share a combined statement


class WriteBatch:
    """Writes collected to be sent together: ``rows_insert(..., batch=batch)`` and ``rows_update(...,
    batch=batch)`` add their statement here, and nothing runs until the caller calls ``execute()``.

    A real-time debit writes ledger entries, their allocations, lots, wallets and running totals, and
    nothing reads them back before the commit; one round trip per table cost more than the writing
    (each its own parse, execution start and wake-up of a busy server). ``execute()`` sends them in the
    order added: on PostgreSQL consecutive array statements as ONE statement of data-modifying ``WITH``
    clauses (``WITH w0 AS (INSERT …), w1 AS (UPDATE …) UPDATE …``: one snapshot, foreign keys checked at
    the end of the statement), so none of them may read another's rows nor write a row another writes
    (PostgreSQL would apply only one); any other statement, and every one on SQLite, alone.

    Until ``execute()`` the rows are not written: the caller must not read them, or write them again
    another way, before; a database error of theirs is raised by ``execute()``. Writes never executed
    are never sent.
    """

    def __init__(self) -> None:
        self._writes: list[_Write] = []

    def __len__(self) -> int:
        return len(self._writes)

    def execute(self) -> None:
        """Send the writes added so far, in order (see the class), and empty the batch."""
        writes, self._writes = self._writes, []
        combined: list[_Write] = []
        for write in writes:
            if write.arrays and connection.vendor == "postgresql":
                combined.append(write)
                continue
            _send_combined(combined)
            combined = []
            _send(write)
        _send_combined(combined)


def _send_combined(writes: list[_Write]) -> None:
    if len(writes) < 2:
        for write in writes:
            _send(write)
        return
    clauses = ", ".join(f"w{i} AS ({write.sql})" for i, write in enumerate(writes[:-1]))
    params = [value for write in writes for value in write.params]
    _send(_Write(f"WITH {clauses} {writes[-1].sql}", params, arrays=True))


def _send(write: _Write) -> None:
    if write.arrays:
        with planned_once_cursor() as cursor:
            cursor.execute(write.sql, write.params)
    else:
        with connection.cursor() as cursor:
            if write.many:
                cursor.executemany(write.sql, write.params)
            else:
                cursor.execute(write.sql, write.params)


def _write(write: _Write, batch: WriteBatch | None) -> None:
    """Run ``write`` now, or add it to ``batch``."""
    if batch is None:
        _send(write)
    else:
        batch._writes.append(write)


# PostgreSQL: the hot-path helpers send each column as one array and ``unnest`` it, so the statement's
# text is the same whatever the number of rows (prepared once per connection, and psycopg does not
# re-parse a long multi-row statement on every call). Values of these types go as they are.
_ARRAY_SAFE = (str, int, Decimal, datetime, date, bool, type(None))


_ARRAY_TYPES: dict[models.Field, str | None] = {}


def _array_type(field: models.Field) -> str | None:
    """The PostgreSQL array element type for ``field``'s values (its column type without modifiers;
    the column's own type then applies on assignment), or None when not sent as an array."""
    if field in _ARRAY_TYPES:
        return _ARRAY_TYPES[field]
    if isinstance(field, models.JSONField):
        found = "text"  # JSON text, cast to jsonb in the statement
    else:
        db_type = field.db_type(connection)
        base = None if db_type is None else re.sub(r"\(.*\)", "", db_type).strip()
        found = "text" if base is not None and base.startswith("varchar") else base
    _ARRAY_TYPES[field] = found
    return found


def _as_arrays(columns: Sequence[models.Field], rows: Sequence[Sequence]) -> list[list] | None:
    """Per column, its values (JSON fields as JSON text), or None when a value is of a type that is
    not sent as it is (the caller then falls back to the portable statement)."""
    arrays = []
    for position, column in enumerate(columns):
        values = [row[position] for row in rows]
        if isinstance(column, models.JSONField):
            values = [None if v is None else json.dumps(v, cls=column.encoder) for v in values]
        elif not all(isinstance(v, _ARRAY_SAFE) for v in values):
            return None
        elif len({type(v) for v in values if v is not None}) > 1:
            return None  # psycopg dumps an array of one type (an int among Decimals is refused)
        arrays.append(values)
    return arrays


def _unnest(columns: Sequence[models.Field], names: Sequence[str]) -> tuple[str, str] | None:
    """(``unnest(%b::type[], …) AS u(names…)``, the select list with JSON casts), or None. The arrays
    are sent in binary (``%b``; these statements go through ``planned_once_cursor``, which binds on
    the server): psycopg's text format quotes every element with a regular expression."""
    types = [_array_type(column) for column in columns]
    if any(t is None for t in types):
        return None
    source = f"unnest({', '.join(f'%b::{t}[]' for t in types)}) AS u({', '.join(names)})"
    select = ", ".join(
        f"u.{name}::jsonb" if isinstance(column, models.JSONField) else f"u.{name}"
        for name, column in zip(names, columns, strict=True)
    )
    return source, select


def rows_update(
    model: type[models.Model],
    objects: Iterable[models.Model],
    fields: Sequence[str],
    *,
    batch: WriteBatch | None = None,
) -> int:
    """Write ``fields`` of each of ``objects`` (saved rows of ``model``), now or with ``batch`` (its
    ``execute()``; the values are read now); returns the number of objects."""
    objects = list(objects)
    if not objects or not fields:
        return 0
    quote = connection.ops.quote_name
    columns = [model._meta.get_field(name) for name in fields]
    pk = model._meta.pk
    sql = (
        f"UPDATE {quote(model._meta.db_table)} SET "
        + ", ".join(f"{quote(column.column)} = %s" for column in columns)
        + f" WHERE {quote(pk.column)} = %s"
    )
    if connection.vendor == "postgresql":
        latest = list({obj.pk: obj for obj in objects}.values())  # a row named twice: the last one wins
        rows = [[obj.pk, *(getattr(obj, column.attname) for column in columns)] for obj in latest]
        names = [f"c{i}" for i in range(len(columns) + 1)]
        arrays = _as_arrays([pk, *columns], rows)
        unnest = _unnest([pk, *columns], names) if arrays is not None else None
        if unnest is not None:
            source, _ = unnest
            sets = ", ".join(
                f"{quote(column.column)} = u.{name}" + ("::jsonb" if isinstance(column, models.JSONField) else "")
                for column, name in zip(columns, names[1:], strict=True)
            )
            sql = (
                f"UPDATE {quote(model._meta.db_table)} SET {sets} FROM {source}"
                f" WHERE {quote(model._meta.db_table)}.{quote(pk.column)} = u.c0"
            )
            _write(_Write(sql, arrays, arrays=True), batch)
            return len(objects)
    params = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for column in columns]
        + [pk.get_db_prep_save(obj.pk, connection)]
        for obj in objects
    ]
    _write(_Write(sql, params, many=True), batch)
    return len(objects)


def rows_insert(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Sequence],
    *,
    unique_fields: Sequence[str] = (),
    update_fields: Sequence[str] = (),
    add_fields: Sequence[str] = (),
    batch: WriteBatch | None = None,
) -> int:
    """Insert ``rows`` (tuples of values in ``fields`` order, primary keys included when they are not
    generated by the database) in one statement (see the module's docstring), now or with ``batch`` (its
    ``execute()``); nothing is read back.

    ``bulk_create`` builds model instances and compiles the insert through the ORM: for the ledger
    entries and allocations of a spread real-time batch that was most of the debit's cost. No
    ``pre_save`` runs, so
    ``auto_now``/``auto_now_add`` columns and defaults must be in the rows.

    ``unique_fields`` + ``update_fields``: an upsert (``ON CONFLICT (unique) DO UPDATE SET`` the update
    fields to the new row's values; PostgreSQL and SQLite ≥ 3.24 both speak it). ``add_fields``: on
    conflict, add the new row's values to the stored ones (running totals). SQLite's NUMERIC arithmetic is
    binary floating point: add money there in Python, not with ``add_fields``."""
    rows = list(rows)
    if not rows:
        return 0
    quote = connection.ops.quote_name
    columns = [model._meta.get_field(name) for name in fields]
    head = f"INSERT INTO {quote(model._meta.db_table)} (" + ", ".join(quote(c.column) for c in columns) + ") VALUES "
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    tail = ""
    if unique_fields:
        unique = ", ".join(quote(model._meta.get_field(name).column) for name in unique_fields)
        table = quote(model._meta.db_table)
        updates = [quote(model._meta.get_field(name).column) for name in update_fields]
        additions = [quote(model._meta.get_field(name).column) for name in add_fields]
        tail = f" ON CONFLICT ({unique}) DO UPDATE SET " + ", ".join(
            [f"{c} = EXCLUDED.{c}" for c in updates] + [f"{c} = {table}.{c} + EXCLUDED.{c}" for c in additions]
        )
    if connection.vendor == "postgresql":
        arrays = _as_arrays(columns, rows)
        unnest = _unnest(columns, [f"c{i}" for i in range(len(columns))]) if arrays is not None else None
        if unnest is not None:
            source, select = unnest
            sql = head.removesuffix(" VALUES ") + f" SELECT {select} FROM {source}" + tail
            _write(_Write(sql, arrays, arrays=True), batch)
            return len(rows)
    size = max(1, connection.ops.bulk_batch_size(columns, rows))
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        params = [
            column.get_db_prep_save(value, connection)
            for row in chunk
            for column, value in zip(columns, row, strict=True)
        ]
        _write(_Write(head + ", ".join([one] * len(chunk)) + tail, params), batch)
    return len(rows)

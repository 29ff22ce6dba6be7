"""Row writes for the hot paths, without the ORM's per-row compilation.

``rows_update``: Django's ``bulk_update`` builds a ``CASE WHEN pk = … THEN …`` expression per row and
field; for the 20 wallets of a spread real-time batch that cost ~15 ms of Python per request, more than
the database work. ``rows_insert``: ``bulk_create`` builds and compiles every instance.

On PostgreSQL both send one statement whose rows are ONE JSON parameter (``jsonb_array_elements``, each
row an array of its values, each value read as text and cast to its column's type): its text does not
depend on the number of rows, so it is prepared once per connection (``planned_once_cursor``) and psycopg
never re-parses a long multi-row statement. Elsewhere (SQLite, or a value of an unusual type)
``rows_update`` runs one ``UPDATE … WHERE pk = %s`` per object with ``executemany`` and ``rows_insert``
multi-row ``INSERT … VALUES``, values through each field's ``get_db_prep_save`` as ``save()`` does.

``WriteBatch``: given as ``batch=``, both add their statement to it instead of running it; the caller
runs ``batch.execute()``, which sends PostgreSQL the JSON statements as ONE statement of data-modifying
``WITH`` clauses (the real-time debit's six writes in one round trip).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter

import orjson
from django.db import connection, models

from .db import planned_once_cursor

# -- writes sent together -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Write:
    sql: str
    params: list
    many: bool = False  # ``executemany`` (params: one list per row)
    rows_json: bool = False  # a PostgreSQL statement of rows in one JSON parameter: prepared, may be combined


class WriteBatch:
    """Writes collected to be sent together: ``rows_insert(..., batch=batch)`` and ``rows_update(...,
    batch=batch)`` add their statement here, and nothing runs until the caller calls ``execute()``.

    A real-time debit writes ledger entries, their allocations, lots, wallets and running totals, and
    nothing reads them back before the commit; one round trip per table cost more than the writing
    (each its own parse, execution start and wake-up of a busy server). ``execute()`` sends them in the
    order added: on PostgreSQL consecutive JSON statements as ONE statement of data-modifying ``WITH``
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
            if write.rows_json and connection.vendor == "postgresql":
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
    _send(_Write(f"WITH {clauses} {writes[-1].sql}", params, rows_json=True))


def _send(write: _Write) -> None:
    if write.rows_json:
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


# PostgreSQL: the hot-path helpers send their rows as one JSON document, ``[[v0, v1, …], …]``, each value
# taken as text (``->>``) and cast to its column's type (``_json_source``), so the statement's text is
# the same whatever the number of rows (prepared once per connection). One text parameter dumped by
# orjson in C: psycopg dumped an array per column element by element, ~15 % of a real-time request's
# Python time. Values go as text, never through a JSON number read as a float: Decimals as ``str``
# (exact at any number of places), datetimes as ISO 8601 with their offset and microseconds, None as
# null (SQL NULL once cast), booleans as true/false. Values of these types only (subclasses included: a
# ``TextChoices`` member is a ``str``); a float or anything else sends the write by the portable
# statement, which converts it as ``save()`` does.
_JSON_SAFE = (str, int, Decimal, datetime, date, type(None))
_JSON_SAFE_EXACT = frozenset((str, int, bool, Decimal, datetime, date, type(None)))


_COLUMN_TYPES: dict[models.Field, str | None] = {}


def _column_type(field: models.Field) -> str | None:
    """The PostgreSQL type ``field``'s values are cast to from text (its column type without modifiers;
    the column's own type then applies on assignment), or None when the field is not written this way."""
    if field in _COLUMN_TYPES:
        return _COLUMN_TYPES[field]
    if isinstance(field, models.JSONField):
        found = "jsonb"  # the value is its JSON text (as Django dumps it), a string in the document
    else:
        db_type = field.db_type(connection)
        base = None if db_type is None else re.sub(r"\(.*\)", "", db_type).strip()
        found = "text" if base is not None and base.startswith("varchar") else base
    _COLUMN_TYPES[field] = found
    return found


def _rows_json(columns: Sequence[models.Field], rows: Sequence[Sequence]) -> str | None:
    """``rows`` as the JSON document of the statement (JSON fields' values as their JSON text), or None
    when a value is of a type not sent this way (the caller then sends the portable statement)."""
    by_column = list(zip(*rows, strict=True))
    if len(by_column) != len(columns):
        return None  # the portable statement says what is wrong
    for position, column in enumerate(columns):
        if isinstance(column, models.JSONField):
            by_column[position] = [
                None if v is None else json.dumps(v, cls=column.encoder) for v in by_column[position]
            ]
            continue
        # The types of a column's values, not each value: a set built at C speed.
        kinds = set(map(type, by_column[position]))
        if not kinds <= _JSON_SAFE_EXACT and not all(issubclass(kind, _JSON_SAFE) for kind in kinds):
            return None
    try:
        # Transposed back into plain tuples. ``default``: orjson calls it for the checked types it does not
        # write itself, Decimals (and subclasses of datetime or date), whose ``str`` PostgreSQL reads.
        return orjson.dumps(list(zip(*by_column, strict=True)), default=str).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a string that is not valid Unicode
        return None


def _json_source(columns: Sequence[models.Field], names: Sequence[str]) -> str | None:
    """``(SELECT (e->>0)::type AS name, … FROM …(%s::jsonb) AS e) AS u``: the rows of the JSON parameter
    as typed columns, or None when a column has no type to cast to.

    The rows go through ``unnest(ARRAY(…))`` rather than straight from ``jsonb_array_elements``: the
    planner takes a set-returning function's rows at its declared estimate, 100 for
    ``jsonb_array_elements`` and 10 for ``unnest``, and the once-per-connection (generic) plan of an
    ``UPDATE … FROM`` joined 100 estimated rows to a table of a thousand wallets by a hash over a
    sequential scan of it; at 10 it looks each row up by its primary key."""
    types = [_column_type(column) for column in columns]
    if any(t is None for t in types):
        return None
    select = ", ".join(f"(e->>{i})::{t} AS {name}" for i, (t, name) in enumerate(zip(types, names, strict=True)))
    return f"(SELECT {select} FROM unnest(ARRAY(SELECT jsonb_array_elements(%s::jsonb))) AS e) AS u"


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
        latest = {obj.pk: obj for obj in objects}.values()  # a row named twice: the last one wins
        row_of = attrgetter(pk.attname, *(column.attname for column in columns))
        names = [f"c{i}" for i in range(len(columns) + 1)]
        source = _json_source([pk, *columns], names)
        document = _rows_json([pk, *columns], [row_of(obj) for obj in latest]) if source is not None else None
        if document is not None:
            table = quote(model._meta.db_table)
            sets = ", ".join(
                f"{quote(column.column)} = u.{name}" for column, name in zip(columns, names[1:], strict=True)
            )
            sql = f"UPDATE {table} SET {sets} FROM {source} WHERE {table}.{quote(pk.column)} = u.c0"
            _write(_Write(sql, [document], rows_json=True), batch)
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
        names = [f"c{i}" for i in range(len(columns))]
        source = _json_source(columns, names)
        document = _rows_json(columns, rows) if source is not None else None
        if document is not None:
            sql = head.removesuffix(" VALUES ") + f" SELECT {', '.join(names)} FROM {source}" + tail
            _write(_Write(sql, [document], rows_json=True), batch)
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

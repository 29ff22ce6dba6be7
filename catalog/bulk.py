"""Row updates for the hot paths: one ``UPDATE … WHERE pk = %s`` per object, sent with ``executemany``.

Django's ``bulk_update`` builds a ``CASE WHEN pk = … THEN …`` expression per row and field; for the 20
wallets of a spread real-time batch that cost ~15 ms of Python per request, more than the database work.
``executemany`` costs one statement per row, which psycopg 3 sends in one pipeline (one round trip) and
SQLite runs in-process. Values go through each field's ``get_db_prep_save``, as ``save()`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, models


def rows_update(model: type[models.Model], objects: Iterable[models.Model], fields: Sequence[str]) -> int:
    """Write ``fields`` of each of ``objects`` (saved rows of ``model``); returns the number of objects."""
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
    params = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for column in columns]
        + [pk.get_db_prep_save(obj.pk, connection)]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(objects)

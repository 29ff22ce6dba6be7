"""Database expressions Django lacks, written once for PostgreSQL and SQLite."""

from __future__ import annotations

from django.db.models import DateTimeField, Func


class PlusDays(Func):
    """``datetime + n days`` with ``n`` a column, on PostgreSQL and SQLite (Django's duration arithmetic cannot
    multiply an interval by a column on SQLite)."""

    arity = 2
    output_field = DateTimeField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="(%(expressions)s * INTERVAL '1 day'))", arg_joiner=" + (", **extra
        )

    def as_sqlite(self, compiler, connection, **extra):
        # SQLite stores "YYYY-MM-DD HH:MM:SS[.ffffff]" text: whole days move the date and time, and the
        # fraction is the stored one's (strftime's %f would keep milliseconds only). NULL stays NULL.
        (moment, moment_params), (days, days_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        sql = f"(strftime('%%Y-%%m-%%d %%H:%%M:%%S', {moment}, '+' || {days} || ' days') || substr({moment}, 20))"
        return sql, (*moment_params, *days_params, *moment_params)

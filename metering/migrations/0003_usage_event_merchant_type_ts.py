"""Index (merchant_id, event_type, "timestamp"): one metric, all customers, one time range.

Serves the all-customers aggregation (closing a period, the meter API without ``subject``) and the
billing home's usage per day: an exact index range over the metric's events of the period, where the
BRIN index on ``timestamp`` reads every event type's rows of those blocks. A COUNT per day is an
index-only scan. ~60 B/row (see metering/README.md, "Storage design").

On PostgreSQL the index is built with ``CREATE INDEX CONCURRENTLY`` (hence ``atomic = False``): a deploy
does not lock the events table against ingestion while the index builds (minutes at 100M rows). If a
concurrent build fails it leaves an INVALID index; drop it (``DROP INDEX CONCURRENTLY
usage_event_merchant_type_ts``) and migrate again. Other databases get a plain ``CREATE INDEX``.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, a plain ``AddIndex`` elsewhere (SQLite in development/tests)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("metering", "0002_usage_event_timestamp_brin")]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="usageevent",
            index=models.Index(fields=["merchant", "event_type", "timestamp"], name="usage_event_merchant_type_ts"),
        ),
    ]

"""A BRIN index on the event time, PostgreSQL only.

Events arrive roughly in time order, so a BRIN index (a few pages for 100M rows) lets the
all-customers aggregation of one month skip the table blocks outside the month.
"""

from django.db import migrations

CREATE = "CREATE INDEX IF NOT EXISTS usage_event_timestamp_brin ON metering_usageevent USING brin (\"timestamp\")"
DROP = "DROP INDEX IF EXISTS usage_event_timestamp_brin"


def create_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_usage_event")]

    operations = [migrations.RunPython(create_brin, drop_brin)]

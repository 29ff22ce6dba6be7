"""The events table keeps its two foreign keys in the ORM (PROTECT) but not in the database: the deferred
constraint triggers cost a third of PostgreSQL's CPU per inserted row, and what they protected is kept by
the ingestion statements (they join the merchant's customers and lock them FOR KEY SHARE) and by
customer deletion (it locks the customer before the PROTECT check). metering/README.md, "Foreign keys".
Dropping a constraint is a catalog change (a brief ACCESS EXCLUSIVE lock), not a table rewrite."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0010_subscription_past_due_since'),
        ('metering', '0003_usage_event_merchant_type_ts'),
    ]

    operations = [
        migrations.AlterField(
            model_name='usageevent',
            name='customer',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.customer'),
        ),
        migrations.AlterField(
            model_name='usageevent',
            name='merchant',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='catalog.merchant'),
        ),
    ]

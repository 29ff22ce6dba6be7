"""Create the "Billing admin" and "Billing viewer" staff groups.

Permissions are normally created after the last migration (post_migrate), so
``billing_roles_sync`` creates the permissions of the billing apps' current models first. It uses
the live models rather than historical ones on purpose: it only touches auth and contenttypes
rows, whose schema this migration depends on, and it is the same code the command and the
post_migrate hook run, so the roles never differ by how they were made.
"""

from django.db import migrations


def create_billing_roles(apps, schema_editor):
    from catalog.roles import billing_roles_sync

    billing_roles_sync(using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_billing_roles, migrations.RunPython.noop)]

"""The two staff roles that ship with Meterline, as Django groups.

"Billing admin" may view, add, change and delete every model of the billing apps; "Billing viewer"
may only view them. Give a person a role by making them staff (``is_staff``) and adding them to
the group. ``billing_roles_sync`` is run by a catalog data migration, after every ``migrate``
(post_migrate), and by ``manage.py sync_billing_roles``; it is idempotent.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, transaction

BILLING_ADMIN = "Billing admin"
BILLING_VIEWER = "Billing viewer"
# Every model of these apps, including django-celery-beat's periodic tasks and the schedules a
# task points at (a task cannot be re-timed without editing its crontab or interval row), and the
# prepaid credit, entitlements and grants of wallets, payments and costs (named by label: catalog imports none).
BILLING_APP_LABELS = ("catalog", "metering", "invoicing", "wallets", "payments", "costs", "django_celery_beat")
VIEW_ACTIONS = ("view",)
ALL_ACTIONS = ("view", "add", "change", "delete")


def billing_roles_sync(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create or update both groups so they hold exactly their permissions on the billing apps.

    Permissions on other apps that someone added to a group by hand are left alone. Permissions of
    models that exist at call time are created first: in a fresh database they are otherwise only
    made after the last migration (post_migrate).
    """
    installed = [label for label in BILLING_APP_LABELS if _is_installed(label)]
    for label in installed:
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using)
    with transaction.atomic(using=using):
        billing_permissions = Permission.objects.using(using).filter(content_type__app_label__in=installed)
        for group_name, actions in ((BILLING_ADMIN, ALL_ACTIONS), (BILLING_VIEWER, VIEW_ACTIONS)):
            group, _ = Group.objects.using(using).get_or_create(name=group_name)
            wanted = [p for p in billing_permissions if p.codename.split("_", 1)[0] in actions]
            unwanted = billing_permissions.exclude(pk__in=[p.pk for p in wanted])
            group.permissions.remove(*unwanted)
            group.permissions.add(*wanted)


def billing_roles_sync_after_migrate(sender, *, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """post_migrate receiver: keeps the roles current as apps add models in later migrations."""
    billing_roles_sync(using=using)


def _is_installed(app_label: str) -> bool:
    try:
        global_apps.get_app_config(app_label)
    except LookupError:
        return False
    return True

"""Create or update the "Billing admin" and "Billing viewer" staff groups (idempotent)."""

from django.core.management.base import BaseCommand

from catalog.roles import BILLING_ADMIN, BILLING_VIEWER, billing_roles_sync


class Command(BaseCommand):
    help = "Create or update the Billing admin and Billing viewer groups with permissions on every billing model."

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default", help="Database alias (default: default).")

    def handle(self, *args, **options):
        from django.contrib.auth.models import Group

        billing_roles_sync(using=options["database"])
        for group in Group.objects.using(options["database"]).filter(name__in=[BILLING_ADMIN, BILLING_VIEWER]):
            self.stdout.write(f"{group.name}: {group.permissions.count()} permissions")

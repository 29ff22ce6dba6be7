"""Create (once) the demo superuser used by `make run`, and print its login."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "admin"
DEMO_PASSWORD_DEFAULT = "meterline-demo"


class Command(BaseCommand):
    help = "Create the demo admin login (admin / meterline-demo unless DEMO_ADMIN_PASSWORD is set) and print it."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_ADMIN_PASSWORD", DEMO_PASSWORD_DEFAULT)
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(self.style.SUCCESS(f"Demo admin login: {DEMO_USERNAME} / {password}"))
        else:
            self.stdout.write(
                f"Demo admin login: {DEMO_USERNAME} (password unchanged; default {DEMO_PASSWORD_DEFAULT})"
            )

"""Create an API key for a merchant and print it once (only its digest is stored)."""

from django.core.management.base import BaseCommand, CommandError

from catalog.models import Merchant
from catalog.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key: create_api_key --merchant org_… --name 'ingest'. The key is shown once."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", required=True, help="The merchant's id (org_…).")
        parser.add_argument("--name", required=True, help="What the key is for, e.g. 'ingest service'.")

    def handle(self, *args, merchant: str, name: str, **options):
        found = Merchant.objects.filter(pk=merchant).first()
        if found is None:
            raise CommandError(f"No merchant {merchant}.")
        api_key, raw_key = api_key_create(merchant=found, name=name)
        self.stderr.write(f"Created {api_key.id} for {found.name}. Store the key now: it cannot be shown again.")
        self.stdout.write(raw_key)

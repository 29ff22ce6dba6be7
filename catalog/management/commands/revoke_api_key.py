"""Revoke an API key by its id (key_…); requests with it are refused from then on."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from catalog.models import ApiKey
from catalog.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key: revoke_api_key key_…"

    def add_arguments(self, parser):
        parser.add_argument("key_id", help="The key's id (key_…), as shown in the admin.")

    def handle(self, *args, key_id: str, **options):
        api_key = ApiKey.objects.filter(pk=key_id).first()
        if api_key is None:
            raise CommandError(f"No API key {key_id}.")
        api_key = api_key_revoke(api_key=api_key, now=timezone.now())
        self.stdout.write(f"Revoked {api_key.id} ({api_key.name}) at {api_key.revoked_at:%Y-%m-%d %H:%M:%S} UTC.")

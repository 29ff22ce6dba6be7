"""Build the two worked examples (LLM provider and data platform) and print what is there."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from catalog.demo import demo_catalog_build, first_of_previous_month


class Command(BaseCommand):
    help = (
        "Create the demo catalog (Neural Labs and Cloud Analytics Inc) if missing; running it again changes nothing. "
        "Prints the catalog, and a new demo API key per merchant the first time only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-api-keys", action="store_true", help="Do not create demo API keys.")

    def handle(self, *args, **options):
        # Subscriptions start on the first of LAST month, so the demo has a closed month to invoice
        # (invoicing's demo_activity command, run next by `make run`, adds usage and bills it).
        summary = demo_catalog_build(
            now=first_of_previous_month(timezone.now()), with_api_keys=not options["no_api_keys"]
        )
        for line in summary.lines():
            self.stdout.write(line)

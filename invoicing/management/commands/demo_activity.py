"""Add usage to the demo catalog and invoice last month (invoicing.demo); running it again adds nothing."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from invoicing.demo import DemoCatalogMissing, demo_activity_build


class Command(BaseCommand):
    help = (
        "Give the demo customers usage events from the first of last month up to --now, close the billing periods "
        "ended by --now and issue every other new draft. Run after demo_catalog; running it again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", help="Aware ISO 8601 moment, e.g. 2026-02-15T12:00:00Z (default: now).")

    def handle(self, *args, now=None, **options):
        moment = timezone.now()
        if now:
            moment = parse_datetime(now.replace("Z", "+00:00"))
            if moment is None or timezone.is_naive(moment):
                raise CommandError(f"--now {now!r} is not an aware ISO 8601 datetime (add Z or an offset).")
        try:
            summary = demo_activity_build(now=moment)
        except DemoCatalogMissing as error:
            raise CommandError(str(error))
        for line in summary.lines():
            self.stdout.write(line)

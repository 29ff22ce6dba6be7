"""Close every billing period ended by --at (default now), synchronously, and print the run's counts."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from invoicing.services import DEFAULT_CHUNK_SIZE, billing_run_execute, invoices_finalize_due


class Command(BaseCommand):
    help = "Invoice every subscription period that ended by --at (same code as the beat task, in this process)."

    def add_arguments(self, parser):
        parser.add_argument("--at", help="Aware ISO 8601 moment, e.g. 2026-02-01T00:00:00Z (default: now).")
        parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
        parser.add_argument(
            "--finalize", action="store_true", help="Also issue the drafts whose grace period ended by --at."
        )

    def handle(self, *args, at=None, chunk_size=DEFAULT_CHUNK_SIZE, finalize=False, **options):
        as_of = timezone.now()
        if at:
            as_of = parse_datetime(at.replace("Z", "+00:00"))
            if as_of is None or timezone.is_naive(as_of):
                raise CommandError(f"--at {at!r} is not an aware ISO 8601 datetime (add Z or an offset).")
        run = billing_run_execute(as_of=as_of, trigger="command", chunk_size=chunk_size)
        self.stdout.write(
            f"Billing run {run.pk} as of {as_of.isoformat()}: {run.status}; {run.subscriptions_total} subscriptions, "
            f"{run.invoices_created} invoices created, {run.invoices_skipped} skipped, {run.invoices_failed} failed."
        )
        for error in run.errors.all():
            self.stderr.write(f"  {error.subscription_id} {error.period_start}: {error.message}")
        if finalize:
            counts = invoices_finalize_due(now=as_of)
            self.stdout.write(f"Issued {counts['issued']} drafts ({counts['failed']} failed).")

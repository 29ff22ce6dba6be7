"""Health probes on django-health-check: ``/health/live`` (the process answers; no I/O) and
``/health/ready`` (database, cache, Celery broker, and beat has run recently).

Both answer JSON whatever the ``Accept`` header (``?format=text`` etc. still work), 200 when healthy and
503 when a check fails, with one ``"<check>": "OK" | "<error>"`` entry per check and nothing secret in
them. They need no API key and no login.
"""

from __future__ import annotations

import dataclasses
import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.checks import Cache, Database
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

# The beat entry that must keep running (billing_site/settings/base.py, CELERY_BEAT_SCHEDULE).
CLOSE_BILLING_PERIODS = "invoicing-close-billing-periods"


def beat_last_run() -> datetime.datetime | None:
    """When beat last sent the close-billing-periods task: django-celery-beat's ``last_run_at`` of its
    entry, or the start of the latest beat-triggered billing run, whichever is later."""
    from django_celery_beat.models import PeriodicTask

    from invoicing.models import BillingRun

    moments = [
        PeriodicTask.objects.filter(name=CLOSE_BILLING_PERIODS).aggregate(last=Max("last_run_at"))["last"],
        BillingRun.objects.filter(trigger="beat").aggregate(last=Max("started_at"))["last"],
    ]
    moments = [moment for moment in moments if moment is not None]
    return max(moments) if moments else None


@dataclasses.dataclass
class BeatRecent(HealthCheck):
    """Beat sent the close-billing-periods task within ``max_age`` (it runs every 15 minutes).

    ``max_age`` comes from ``HEALTH_BEAT_MAX_AGE`` (seconds, default 2,100: two runs missed plus a margin;
    0 turns the check off).
    """

    max_age: datetime.timedelta = dataclasses.field(
        default_factory=lambda: datetime.timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE)
    )

    async def run(self) -> None:
        if self.max_age <= datetime.timedelta(0):
            return  # HEALTH_BEAT_MAX_AGE=0: not checked (beat is watched some other way)
        # In the request's thread (sync_to_async keeps thread-sensitive code there): its connection,
        # managed like any request's, not one left open in an executor thread.
        last = await sync_to_async(beat_last_run)()
        if last is None:
            raise ServiceUnavailable("Beat has never run the close-billing-periods task")
        age = timezone.now() - last
        if age > self.max_age:
            raise ServiceUnavailable(
                f"Beat last ran the close-billing-periods task {int(age.total_seconds())} s ago "
                f"(more than {int(self.max_age.total_seconds())} s)"
            )


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (no worker needs to answer)."""

    timeout: datetime.timedelta = dataclasses.field(default=datetime.timedelta(seconds=3), repr=False)

    def run(self) -> None:
        from billing_site.celery import app

        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self.timeout.total_seconds())
        except Exception as exc:  # kombu raises the transport's own errors
            raise ServiceUnavailable(f"Broker connection failed ({type(exc).__name__})") from exc


class JsonHealthCheckView(HealthCheckView):
    """The library's view answering JSON by default and 503 (Service Unavailable) on a failed check."""

    async def get(self, request, *args, **kwargs):
        if "format" not in request.GET:
            request.GET = request.GET.copy()
            request.GET["format"] = "json"
        return await super().get(request, *args, **kwargs)

    def render_to_response_json(self, status):
        return super().render_to_response_json(503 if status >= 500 else status)

    def render_to_response_text(self, status):
        return super().render_to_response_text(503 if status >= 500 else status)


# Check classes are instantiated per request: settings are read at call time.
live = JsonHealthCheckView.as_view(checks=())
ready = JsonHealthCheckView.as_view(checks=(Database, Cache, Broker, BeatRecent))

"""``/metrics``: Prometheus exposition of the process (prometheus_client's defaults), the billing domain's
counters (``metering/metrics.py``, ``invoicing/metrics.py``, ``wallets/metrics.py``) and two queue-lag
gauges read from the database at scrape time.

Served only when ``METRICS_ENABLED=1``; when ``METRICS_TOKEN`` is set, only to
``Authorization: Bearer <METRICS_TOKEN>``. With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn workers and
Celery workers on one host sharing that folder), the answer aggregates every process that wrote there
(prometheus_client's multiprocess mode); without it, only the process that answers is shown.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector


class QueueLagCollector:
    """Gauges computed at scrape: two indexed reads (``MIN``), none when the database is unreachable."""

    NAMES = ("meterline_billing_run_oldest_running_age_seconds", "meterline_webhook_oldest_due_age_seconds")

    def describe(self):
        """Registration asks for the names here rather than collecting (no query at import)."""
        return [GaugeMetricFamily(name, "") for name in self.NAMES]

    def collect(self):
        from invoicing.models import BillingRun, BillingRunStatus
        from wallets.models import DeliveryStatus, WebhookDelivery

        now = timezone.now()
        try:
            oldest_run = (
                BillingRun.objects.filter(status=BillingRunStatus.RUNNING)
                .order_by("started_at")
                .values_list("started_at", flat=True)
            ).first()
            oldest_due = (
                WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at")
                .values_list("next_attempt_at", flat=True)
            ).first()
        except Exception:  # a scrape must answer even when the database does not
            return
        yield GaugeMetricFamily(
            "meterline_billing_run_oldest_running_age_seconds",
            "Age of the oldest billing run still running (chunks waiting for or in a worker); 0 when none.",
            value=max((now - oldest_run).total_seconds(), 0.0) if oldest_run else 0.0,
        )
        yield GaugeMetricFamily(
            "meterline_webhook_oldest_due_age_seconds",
            "How long the most overdue pending webhook delivery has been due; 0 when none.",
            value=max((now - oldest_due).total_seconds(), 0.0) if oldest_due else 0.0,
        )


_queue_lag = QueueLagCollector()
REGISTRY.register(_queue_lag)


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(_queue_lag)
        return registry
    return REGISTRY


def _authorized(request) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


@never_cache
def metrics_view(request):
    if not settings.METRICS_ENABLED:
        raise Http404("Metrics are not enabled.")
    if not _authorized(request):
        return HttpResponse(
            "Unauthorized\n", status=401, content_type="text/plain", headers={"WWW-Authenticate": "Bearer"}
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)

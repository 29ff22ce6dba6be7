"""Prometheus metrics of prepaid credit (served at ``/metrics``; README, "Health, metrics and logs")."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOK_DELIVERY_ATTEMPTS = Counter(
    "meterline_webhook_delivery_attempts",
    "Webhook delivery attempts, by result: delivered (2xx), retry (failed, will be retried), "
    "failed (failed for the last time: the delivery gave up).",
    ["result"],
)

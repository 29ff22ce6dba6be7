"""Prometheus metrics of billing (served at ``/metrics``; README, "Health, metrics and logs").

Counted in the services where the thing happens, after its transaction. Chunks of a billing run are
processed by Celery workers: their metrics live in the worker processes, which the web's ``/metrics``
aggregates only in prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` shared by web
and workers on one host).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REALTIME_DEBITS = Counter(
    "meterline_realtime_debits",
    "Prepaid-balance debits written by real-time billing (one per subscription, price and period touched by a request).",
)
BILLING_CHUNK_DURATION = Histogram(
    "meterline_billing_chunk_duration_seconds",
    "Wall time of one chunk of a billing run (a worker invoicing its subscriptions).",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf")),
)
BILLING_RUNS = Counter(
    "meterline_billing_runs",
    "Billing runs closed, by status: succeeded, partial (some subscriptions failed or were abandoned), failed.",
    ["status"],
)
BILLING_INVOICE_FAILURES = Counter(
    "meterline_billing_invoice_failures",
    "Invoices a billing run failed to write (each is recorded as a BillingRunError and retried by the next run).",
)
INVOICES_ISSUED = Counter(
    "meterline_invoices_issued",
    "Invoices numbered and issued (finalized).",
)
DOCUMENT_DELIVERY_ATTEMPTS = Counter(
    "meterline_document_delivery_attempts",
    "Attempts to e-mail an invoice or credit note, by result: sent, retry, failed, skipped.",
    ["result"],
)

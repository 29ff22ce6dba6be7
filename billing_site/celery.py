"""The Celery application: tasks are found in each app's ``tasks`` module."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.dev")

# The task class adds the current request id to each task's headers (billing_site/ops/request_id.py).
app = Celery("meterline", task_cls="billing_site.ops.request_id:RequestIdTask")

# Every task of our apps is either run by beat (settings.CELERY_BEAT_SCHEDULE) or named here, with why it is
# not: queued on demand by a service or a request. tests/test_beat_schedule.py fails on a task in neither
# (a periodic job nobody schedules is money never billed, as issue #22's commitment shortfalls were).
ON_DEMAND_TASKS: dict[str, str] = {
    "invoicing.billing_run_chunk": "queued per chunk by a billing run (invoicing.tasks.billing_run_enqueue)",
    "invoicing.test_clock_catch_up": "queued by a test clock advance for the periods it leaves to the background",
    "invoicing.document_delivery_send": "queued on commit when an invoice or credit note is issued; "
    "the beat sweep invoicing.document_deliveries_send_due retries",
    "invoicing.spend_alert_email_send": "queued on commit per fired spend alert; "
    "the beat sweep invoicing.spend_evaluate_due retries",
    "wallets.tasks.webhook_delivery_send_task": "queued on commit per webhook event; "
    "the beat sweep wallets.tasks.webhook_deliveries_retry_due_task retries",
    "metering.tasks.events_link_external_subjects_task": "superseded by the beat task "
    "invoicing.link_external_subjects, which links the same events and also debits real-time ones",
}
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _django_logging(**kwargs) -> None:
    """Workers and beat log through Django's LOGGING (format, request-id filter) instead of Celery's own."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)

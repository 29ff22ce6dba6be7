"""The Celery application: tasks are found in each app's ``tasks`` module."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings.dev")

# The task class adds the current request id to each task's headers (billing_site/ops/request_id.py).
app = Celery("meterline", task_cls="billing_site.ops.request_id:RequestIdTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _django_logging(**kwargs) -> None:
    """Workers and beat log through Django's LOGGING (format, request-id filter) instead of Celery's own."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)

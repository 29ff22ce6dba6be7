"""Celery tasks of metering: thin wrappers over services.

Beat schedule (add to ``CELERY_BEAT_SCHEDULE`` in billing_site/settings/base.py)::

    "metering-link-external-subjects": {
        # every minute: https://crontab.guru/#*_*_*_*_*
        "task": "metering.tasks.events_link_external_subjects_task",
        "schedule": 60.0,
    },
"""

from __future__ import annotations

from celery import shared_task

from .services import events_link_external_subjects


@shared_task(name="metering.tasks.events_link_external_subjects_task")
def events_link_external_subjects_task() -> int:
    """Link events stored before their customer existed; safe to run any number of times."""
    return events_link_external_subjects()

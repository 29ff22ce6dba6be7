"""Celery tasks: thin wrappers that pass the current time to the services (safe to retry)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import services, webhooks


@shared_task
def credit_expire_due_task() -> int:
    return len(services.credit_expire_due(now=timezone.now()))


@shared_task
def commitment_true_up_due_task() -> int:
    return len(services.commitment_true_up_due(now=timezone.now()))


@shared_task
def webhook_delivery_send_task(delivery_id: str) -> str | None:
    delivery = webhooks.webhook_delivery_attempt(delivery_id=delivery_id, now=timezone.now())
    return delivery.status if delivery is not None else None


@shared_task
def webhook_deliveries_retry_due_task() -> int:
    return len(webhooks.webhook_deliveries_retry_due(now=timezone.now()))

"""Celery tasks of the payments app: thin, pass the time in, safe to re-send (payments/charges.py)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from .charges import invoices_auto_charge_due
from .refunds import provider_refunds_resume_due
from .retries import invoices_payment_retry_due


@shared_task(name="payments.invoices_auto_charge_due")
def invoices_auto_charge_due_task() -> int:
    """Charge the issued invoices of autoCharge subscriptions not charged yet (bounded per run)."""
    return len(invoices_auto_charge_due(now=timezone.now()))


@shared_task(name="payments.invoices_payment_retry_due")
def invoices_payment_retry_due_task() -> int:
    """Charge again the failed invoices whose scheduled retry has come (bounded per run)."""
    return len(invoices_payment_retry_due(now=timezone.now()))


@shared_task(name="payments.provider_refunds_resume_due")
def provider_refunds_resume_due_task() -> int:
    """Send again the refunds left pending (Stripe unreachable, a worker died between the call and the record)."""
    return len(provider_refunds_resume_due(now=timezone.now()))

"""When a failed charge is tried again: the merchant's ``PaymentRetrySettings`` (default 3, 5 and 7 days after
the first failed charge of the invoice, like Stripe's simple retry schedule).

The schedule is fixed to the invoice's first failure: the retries are due at first failure + each day, and
after an attempt failed at ``t`` the next one is the first of those moments later than ``t``. So a retry
requested earlier through the API does not move the schedule, a sweep that ran late does not add retries, and
after the last day there is no next one (the invoice stays PAYMENT_FAILED; dunning goes on)."""

from __future__ import annotations

from datetime import datetime, timedelta

from .models import PaymentAttempt, PaymentAttemptStatus, PaymentRetrySettings, default_retry_days


def retry_days(*, merchant_id: str) -> list[int]:
    row = PaymentRetrySettings.objects.filter(merchant_id=merchant_id).first()
    return list(row.retry_days) if row is not None else default_retry_days()


def retry_next_at(*, days: list[int], first_failed_at: datetime, failed_at: datetime) -> datetime | None:
    """The first scheduled retry after a failure at ``failed_at`` (None after the last)."""
    return next(
        (at for at in (first_failed_at + timedelta(days=day) for day in days) if at > failed_at),
        None,
    )


def attempt_retry_next_at(*, attempt: PaymentAttempt, failed_at: datetime) -> datetime | None:
    """When the invoice of ``attempt`` (failing now, at ``failed_at``) is charged again on its merchant's
    schedule. The first failure is the earliest failed attempt's, else this one."""
    earlier = (
        PaymentAttempt.objects.filter(invoice_id=attempt.invoice_id, status=PaymentAttemptStatus.FAILED)
        .exclude(pk=attempt.pk)
        .order_by("updated_at")
        .values_list("updated_at", flat=True)
        .first()
    )
    first_failed_at = min(earlier, failed_at) if earlier is not None else failed_at
    days = retry_days(merchant_id=attempt.invoice.merchant_id)
    return retry_next_at(days=days, first_failed_at=first_failed_at, failed_at=failed_at)

"""The e-mail of a fired spend alert: sent once, after the firing commits, from the merchant's sender (the
delivery settings of invoicing/README.md, "Delivery") to the alert's recipients, else the customer's billing
e-mails. A temporary error leaves it queued for the sweep (``spend_alert_emails_send_due``) up to
``DELIVERY_MAX_ATTEMPTS``; a refusal fails it at once."""

from __future__ import annotations

from datetime import datetime

from django.core.mail import EmailMessage
from django.db import transaction

from catalog.validators import email_list_split
from core.formatting import decimal_string

from ..delivery import merchant_sender, send_error_is_permanent, send_error_text
from ..models import DeliverySettings, SpendAlertFiring, SpendEmailStatus, SpendThresholdKind
from ..services.delivery import DELIVERY_MAX_ATTEMPTS


def spend_alert_email(firing: SpendAlertFiring) -> EmailMessage:
    """The message of ``firing`` (subject and text body in the alert's terms)."""
    alert = firing.alert
    customer, merchant = alert.customer, alert.merchant
    # A cost alert counts in its currency, a usage alert in its metric's unit.
    unit = alert.metric.unit if alert.metric_id else alert.currency
    measured = f"usage of {alert.metric.name}" if alert.metric_id else "usage cost"
    if alert.threshold_kind == SpendThresholdKind.PERCENT:
        crossed = (
            f"{decimal_string(firing.threshold)} % of the {decimal_string(alert.budget)} {unit} budget "
            f"({decimal_string(firing.threshold_amount)} {unit})"
        )
    else:
        crossed = f"{decimal_string(firing.threshold_amount)} {unit}"
    scope = f"subscription {alert.subscription_id}" if alert.subscription_id else customer.name
    body = (
        f"Hello,\n\nThe {measured} of {scope} for the period {firing.period_start:%Y-%m-%d} to "
        f"{firing.period_end:%Y-%m-%d} has reached {decimal_string(firing.accrued)} {unit}, crossing "
        f"{crossed}.\n\nThis is an automatic notice of the spend alert “{alert.name or alert.pk}”.\n\n{merchant.name}\n"
    )
    settings = DeliverySettings.objects.filter(merchant=merchant).first()
    sender = merchant_sender(merchant, settings)
    recipients = email_list_split(alert.recipients) or customer.billing_recipients
    return EmailMessage(
        subject=f"Spend alert: {scope} reached {crossed}",
        body=body,
        from_email=sender.from_email,
        to=recipients,
        reply_to=sender.reply_to,
        headers={"Auto-Submitted": "auto-generated", "X-Meterline-Spend-Alert": alert.pk},
    )


def spend_alert_email_send(*, firing_id: int, now: datetime) -> SpendAlertFiring:
    """Send a queued firing's e-mail and record the result (sent, queued again, or failed); a firing no
    longer queued is left as it is. The row is locked while sending, so two workers never both send."""
    with transaction.atomic():
        firing = (
            SpendAlertFiring.objects.select_for_update(of=("self",))
            .select_related("alert__customer", "alert__merchant", "alert__metric")
            .get(pk=firing_id)
        )
        if firing.email_status != SpendEmailStatus.QUEUED:
            return firing
        firing.email_attempts += 1
        try:
            spend_alert_email(firing).send()
        except Exception as error:  # noqa: BLE001 — any send error is recorded for finance, then retried or failed
            firing.email_error = send_error_text(error)
            if send_error_is_permanent(error) or firing.email_attempts >= DELIVERY_MAX_ATTEMPTS:
                firing.email_status = SpendEmailStatus.FAILED
        else:
            firing.email_status, firing.email_sent_at, firing.email_error = SpendEmailStatus.SENT, now, ""
        firing.save(update_fields=["email_status", "email_attempts", "email_sent_at", "email_error"])
        return firing


def spend_alert_emails_send_due(*, now: datetime, limit: int = 50) -> list[SpendAlertFiring]:
    """Send the e-mails still queued (a lost task, a temporary error), oldest first, at most ``limit``."""
    queued = SpendAlertFiring.objects.filter(email_status=SpendEmailStatus.QUEUED).order_by("fired_at", "pk")
    return [spend_alert_email_send(firing_id=pk, now=now) for pk in queued.values_list("pk", flat=True)[:limit]]

"""Retries of failed automatic charges (payments/retries.py) on hand-worked timelines, against the local Stripe
server through the real ``stripe`` library: the merchant's schedule (days after the first failure), the same
claim/charge/record protocol with attempt n + 1, the current default method, what is never retried, and a retry
requested now."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from invoicing.api.serializers import InvoiceStatusField
from invoicing.models import InvoiceStatus, Payment
from invoicing.receivables import invoice_pay_in_full
from invoicing.services import invoice_void
from payments.charges import invoice_auto_charge
from payments.models import PaymentAttempt, PaymentRetrySettings, validate_retry_days
from payments.retries import (
    RetryRefused,
    invoice_payment_retry,
    invoice_payment_retry_now,
    invoices_payment_retry_due,
    payment_retry_due_invoices,
)
from payments.retry_schedule import retry_next_at
from payments.services import payment_method_save, payment_method_set_default

from .test_charges import INTENTS, auto_charged

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def keys(stripe_server) -> list[str]:
    return [call.idempotency_key for call in stripe_server.calls("POST", INTENTS)]


def attempts(invoice) -> list[tuple]:
    """(number, trigger, status, next retry) of the invoice's attempts."""
    return list(
        PaymentAttempt.objects.filter(invoice=invoice)
        .order_by("number")
        .values_list("number", "trigger", "status", "next_retry_at")
    )


def declined(merchant, now):
    """An invoice whose first automatic charge, at ``now``, was declined."""
    invoice = auto_charged(merchant, now, card="pm_card_chargeCustomerFail")
    assert invoice_auto_charge(invoice_id=invoice.pk, now=now).status == "failed"
    return invoice


# -- the schedule ------------------------------------------------------------------------------------------


def test_the_schedule_counts_days_from_the_first_failure_and_ends_after_the_last_day(now):
    days = [3, 5, 7]
    assert retry_next_at(days=days, first_failed_at=now, failed_at=now) == now + 3 * DAY
    assert retry_next_at(days=days, first_failed_at=now, failed_at=now + 3 * DAY) == now + 5 * DAY
    # a retry requested on day 1 does not move the schedule; a sweep that ran late skips a passed day
    assert retry_next_at(days=days, first_failed_at=now, failed_at=now + DAY) == now + 3 * DAY
    assert retry_next_at(days=days, first_failed_at=now, failed_at=now + 6 * DAY) == now + 7 * DAY
    assert retry_next_at(days=days, first_failed_at=now, failed_at=now + 7 * DAY) is None
    assert retry_next_at(days=[], first_failed_at=now, failed_at=now) is None


@pytest.mark.parametrize("days", [[0], [61], [5, 3], [3, 3], list(range(1, 10)), ["3"], [True], "3, 5"])
def test_retry_days_are_bounded(days):
    with pytest.raises(ValidationError):
        validate_retry_days(days)


def test_retry_days_may_be_empty_or_up_to_eight_days_within_sixty():
    validate_retry_days([])
    validate_retry_days([1, 2, 3, 4, 5, 6, 7, 60])


# -- the timeline ------------------------------------------------------------------------------------------


def test_a_declined_card_is_retried_at_3_5_and_7_days_then_left_to_dunning(
    stripe_connected, stripe_server, merchant, now
):
    # given: declined at t0 (the card keeps being declined)
    invoice = declined(merchant, now)
    assert attempts(invoice) == [(1, "automatic", "failed", now + 3 * DAY)]

    # when / then: nothing before day 3
    assert invoices_payment_retry_due(now=now + 3 * DAY - timedelta(minutes=1)) == []
    # day 3: attempt 2, on the schedule's next day (5) from the first failure
    [second] = invoices_payment_retry_due(now=now + 3 * DAY)
    assert (second.number, second.trigger, second.status) == (2, "retry", "failed")
    assert invoices_payment_retry_due(now=now + 3 * DAY + timedelta(minutes=5)) == []  # the same run again
    # day 5 and day 7 (the sweep running an hour late)
    invoices_payment_retry_due(now=now + 5 * DAY)
    [last] = invoices_payment_retry_due(now=now + 7 * DAY + timedelta(hours=1))
    assert last.number == 4 and last.next_retry_at is None
    # and then never again
    assert invoices_payment_retry_due(now=now + 60 * DAY) == []

    assert attempts(invoice) == [
        (1, "automatic", "failed", None),
        (2, "retry", "failed", None),
        (3, "retry", "failed", None),
        (4, "retry", "failed", None),
    ]
    assert keys(stripe_server) == [f"meterline-charge-{invoice.pk}-{n}" for n in (1, 2, 3, 4)]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED and invoice.payment_failed_at == now + 7 * DAY + timedelta(hours=1)
    assert InvoiceStatusField().to_representation(invoice) == "PAYMENT_FAILED"
    assert not Payment.objects.filter(customer=invoice.customer).exists()


def test_the_merchants_own_schedule_is_followed_and_an_empty_one_never_retries(
    stripe_connected, stripe_server, merchant, now
):
    PaymentRetrySettings.objects.create(merchant=merchant, retry_days=[1])
    once = declined(merchant, now)
    invoices_payment_retry_due(now=now + DAY)
    assert [row[:3] for row in attempts(once)] == [(1, "automatic", "failed"), (2, "retry", "failed")]
    assert attempts(once)[-1][3] is None

    PaymentRetrySettings.objects.filter(merchant=merchant).update(retry_days=[])
    never = declined(merchant, now)
    assert attempts(never) == [(1, "automatic", "failed", None)]
    assert payment_retry_due_invoices(now=now + 60 * DAY).count() == 0


def test_a_replaced_card_is_the_one_the_retry_charges_and_the_invoice_is_paid_once(
    stripe_connected, stripe_server, merchant, now
):
    invoice = declined(merchant, now)
    # the customer saves a new card, made the default
    new_card = payment_method_save(customer=invoice.customer, payment_method="pm_card_visa", now=now + DAY)
    payment_method_set_default(payment_method=new_card)

    [retry] = invoices_payment_retry_due(now=now + 3 * DAY)

    assert (retry.number, retry.status, retry.payment_method_id) == (2, "succeeded", new_card.pk)
    assert stripe_server.calls("POST", INTENTS)[-1].params["payment_method"] == new_card.reference
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, 0)
    [payment] = Payment.objects.filter(customer=invoice.customer)
    assert (payment.amount, payment.reference) == (Decimal("123.45"), retry.reference)
    assert invoices_payment_retry_due(now=now + 5 * DAY) == []


@pytest.mark.parametrize("settle", ["paid", "voided"])
def test_a_settled_invoice_is_never_retried(stripe_connected, stripe_server, merchant, now, settle):
    invoice = declined(merchant, now)
    if settle == "paid":
        invoice_pay_in_full(invoice=invoice, at=now + DAY)
    else:
        invoice_void(invoice=invoice, now=now + DAY, reason="goodwill")

    assert payment_retry_due_invoices(now=now + 3 * DAY).count() == 0
    assert invoices_payment_retry_due(now=now + 3 * DAY) == []
    assert invoice_payment_retry(invoice_id=invoice.pk, now=now + 3 * DAY) is None  # re-checked at the claim
    assert len(stripe_server.calls("POST", INTENTS)) == 1


def test_running_a_due_retry_twice_charges_once(stripe_connected, stripe_server, merchant, now):
    invoice = declined(merchant, now)

    first = invoice_payment_retry(invoice_id=invoice.pk, now=now + 3 * DAY)
    second = invoice_payment_retry(invoice_id=invoice.pk, now=now + 3 * DAY)

    assert first.number == 2 and second is None
    assert keys(stripe_server) == [f"meterline-charge-{invoice.pk}-1", f"meterline-charge-{invoice.pk}-2"]


def test_a_customer_without_a_method_at_the_retry_fails_it_without_calling_stripe(
    stripe_connected, stripe_server, merchant, now
):
    invoice = declined(merchant, now)
    invoice.customer.payment_methods.update(detached_at=now + DAY, is_default=False)

    [retry] = invoices_payment_retry_due(now=now + 3 * DAY)

    assert (retry.number, retry.status, retry.failure_code) == (2, "failed", "no_payment_method")
    assert retry.next_retry_at == now + 5 * DAY
    assert len(stripe_server.calls("POST", INTENTS)) == 1


def test_one_retry_due_per_invoice_by_constraint(stripe_connected, stripe_server, merchant, now):
    invoice = declined(merchant, now)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentAttempt.objects.filter(pk=attempt.pk).update(status="succeeded")  # a retry time on a success


# -- a retry requested now -----------------------------------------------------------------------------


def test_a_requested_retry_is_the_next_attempt_and_keeps_the_schedule(stripe_connected, stripe_server, merchant, now):
    invoice = declined(merchant, now)

    attempt = invoice_payment_retry_now(invoice=invoice, now=now + DAY, reason="customer called")

    assert (attempt.number, attempt.trigger, attempt.status) == (2, "requested", "failed")
    assert attempt.requested_reason == "customer called"
    assert attempt.next_retry_at == now + 3 * DAY  # the schedule's day 3 still comes
    assert attempts(invoice)[0][3] is None  # attempt 1's slot was taken by this one
    [scheduled] = invoices_payment_retry_due(now=now + 3 * DAY)
    assert scheduled.number == 3


def test_a_requested_retry_after_the_card_was_replaced_pays_the_invoice(stripe_connected, stripe_server, merchant, now):
    invoice = declined(merchant, now)
    new_card = payment_method_save(customer=invoice.customer, payment_method="pm_card_mastercard", now=now + DAY)
    payment_method_set_default(payment_method=new_card)

    attempt = invoice_payment_retry_now(invoice=invoice, now=now + DAY)

    assert (attempt.number, attempt.status) == (2, "succeeded")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert Payment.objects.filter(customer=invoice.customer).count() == 1
    with pytest.raises(RetryRefused) as paid:
        invoice_payment_retry_now(invoice=invoice, now=now + 2 * DAY)
    assert paid.value.code == "PAYMENT_ALREADY_COMPLETED"


def test_what_refuses_a_requested_retry(stripe_connected, stripe_server, merchant, now):
    invoice = declined(merchant, now)

    def refused(at, target=invoice) -> str:
        with pytest.raises(RetryRefused) as error:
            invoice_payment_retry_now(invoice=target, now=at)
        return error.value.code

    # an attempt in flight (claimed, Stripe not answered yet)
    PaymentAttempt.objects.filter(invoice=invoice).update(status="pending", next_retry_at=None)
    assert refused(now + DAY) == "concurrent_attempt"
    PaymentAttempt.objects.filter(invoice=invoice).update(status="processing")
    assert refused(now + DAY) == "PAYMENT_PROCESSING"
    PaymentAttempt.objects.filter(invoice=invoice).update(status="failed")
    # one a minute
    assert refused(now + timedelta(seconds=30)) == "RATE_LIMITED"
    # no method
    methods = list(invoice.customer.payment_methods.all())
    invoice.customer.payment_methods.update(detached_at=now, is_default=False)
    assert refused(now + DAY) == "no_payment_method"
    # autoCharge off
    off = auto_charged(merchant, now, auto_charge=False)
    assert refused(now + DAY, off) == "AUTO_CHARGE_OFF"
    assert len(methods) == 1 and len(stripe_server.calls("POST", INTENTS)) == 1
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


# -- admin and beat ----------------------------------------------------------------------------------------


def test_finance_sets_the_retry_days_in_the_admin_within_bounds(superuser_client, merchant):
    from django.urls import reverse

    add = reverse("admin:payments_paymentretrysettings_add")
    assert 'value="3, 5, 7"' in superuser_client.get(add).content.decode()  # the default, offered
    too_late = superuser_client.post(add, {"merchant": merchant.pk, "retry_days": "3, 90"})
    assert too_late.status_code == 200 and "from 1 to 60 days" in too_late.content.decode()

    saved = superuser_client.post(add, {"merchant": merchant.pk, "retry_days": "2, 4, 8, 16"})

    assert saved.status_code == 302
    assert PaymentRetrySettings.objects.get(merchant=merchant).retry_days == [2, 4, 8, 16]
    page = superuser_client.get(reverse("admin:payments_paymentretrysettings_change", args=[merchant.pk]))
    assert 'value="2, 4, 8, 16"' in page.content.decode()
    superuser_client.post(reverse("admin:payments_paymentretrysettings_change", args=[merchant.pk]), {"retry_days": ""})
    assert PaymentRetrySettings.objects.get(merchant=merchant).retry_days == []


def test_the_invoice_page_shows_each_attempt_its_trigger_and_the_next_retry(
    stripe_connected, stripe_server, merchant, now, superuser_client
):
    from django.urls import reverse

    invoice = declined(merchant, now)
    retry = invoice_payment_retry(invoice_id=invoice.pk, now=now + 3 * DAY)

    page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()

    assert "Next retry" in page and f"{now + 5 * DAY:%Y-%m-%d %H:%M} UTC" in page
    assert "Automatic charge" in page and "Scheduled retry" in page and retry.reference in page
    assert "Customer e-mail" in page and "Queued" in page


def test_the_beat_retries_due_payments_every_five_minutes(settings):
    from billing_site.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["payments-invoices-payment-retry-due"]
    assert entry["task"] == "payments.invoices_payment_retry_due" and entry["task"] in app.tasks
    assert entry["schedule"].minute == set(range(0, 60, 5))

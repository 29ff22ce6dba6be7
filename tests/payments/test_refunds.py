"""Refunds of card payments back through Stripe (payments/refunds.py), against the local Stripe server through
the real ``stripe`` library: what is sent, exactly once, partial refunds, refunds spanning card payments and
money paid out of band, failures visible to finance and retried, voids refused once the money went back."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from invoicing.models import CreditNote, InvoiceStatus, Payment
from invoicing.receivables import payment_record
from payments import refunds
from payments.charges import invoice_auto_charge
from payments.gateway import integration_provider
from payments.models import PaymentAttempt, ProviderRefund
from payments.services import integration_disconnect, integration_upsert, payment_method_save
from tests.invoicing.receivables import account, issued

from .conftest import SECRET_KEY

pytestmark = pytest.mark.django_db

REFUNDS = "/v1/refunds"


def card_paid(merchant, now, *, amount: str = "123.45", paid_out_of_band: str | None = None):
    """An invoice of ``amount`` USD charged through Stripe (after ``paid_out_of_band`` was paid by transfer)."""
    subscription = account(merchant)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    payment_method_save(customer=subscription.customer, payment_method="pm_card_visa", now=now)
    invoice = issued(subscription, amount, now=now)
    if paid_out_of_band:
        payment_record(
            customer=invoice.customer,
            currency="USD",
            amount=Decimal(paid_out_of_band),
            method="bank_transfer",
            received_at=now,
            now=now,
            invoice_ids=[invoice.pk],
        )
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)
    assert attempt.status == "succeeded"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    return invoice, attempt


def refund(api_client, invoice, body=None, **headers):
    return api_client.post(f"/v2/invoices/{invoice.pk}/refunds", body or {}, format="json", **headers)


def test_a_full_refund_of_a_card_paid_invoice_goes_back_to_the_card(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice, attempt = card_paid(merchant, now)

    response = refund(api_client, invoice, {"reason": "churned"})

    assert response.status_code == 201
    note = CreditNote.objects.get(pk=response.json()["id"])
    [sent] = stripe_server.calls("POST", REFUNDS)
    assert (sent.params["payment_intent"], sent.params["amount"]) == (attempt.reference, "12345")
    assert sent.idempotency_key == f"meterline-refund-{note.pk}"
    [row] = note.provider_refunds.all()
    assert (row.status, row.amount, row.payment_id, row.number) == (
        "succeeded",
        Decimal("123.45"),
        attempt.payment_id,
        1,
    )
    assert row.reference.startswith("re_") and row.reference in stripe_server.state.refunds
    assert response.json()["total"] == "123.45"


def test_a_partial_refund_sends_its_amount_in_minor_units(api_client, stripe_connected, stripe_server, merchant, now):
    invoice, attempt = card_paid(merchant, now)

    first = refund(api_client, invoice, {"amount": "23.45"})
    second = refund(api_client, invoice, {"amount": "100.00"})

    assert (first.status_code, second.status_code) == (201, 201)
    sent = stripe_server.calls("POST", REFUNDS)
    assert [(call.params["payment_intent"], call.params["amount"]) for call in sent] == [
        (attempt.reference, "2345"),
        (attempt.reference, "10000"),
    ]
    assert [call.idempotency_key for call in sent] == [
        f"meterline-refund-{first.json()['id']}",
        f"meterline-refund-{second.json()['id']}",
    ]
    assert set(ProviderRefund.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_repeated_refund_request_refunds_once(api_client, stripe_connected, stripe_server, merchant, now):
    invoice, _ = card_paid(merchant, now)

    first = refund(api_client, invoice, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="refund-1")
    again = refund(api_client, invoice, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="refund-1")
    [row] = ProviderRefund.objects.all()
    resent = refunds.provider_refund_send(refund_id=row.pk, now=now)
    swept = refunds.provider_refunds_resume_due(now=now + timedelta(hours=1))

    assert (first.status_code, again.status_code, first.json()["id"]) == (201, 201, again.json()["id"])
    assert len(stripe_server.calls("POST", REFUNDS)) == 1
    assert (resent.status, swept) == ("succeeded", [])


def test_a_refund_resumed_after_stripe_forgot_its_key_is_found_not_sent_again(
    api_client, settings, stripe_connected, stripe_server, merchant, now
):
    invoice, _ = card_paid(merchant, now)
    base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the first send's answer is lost
    refund(api_client, invoice)
    settings.STRIPE_API_BASE = base
    [row] = ProviderRefund.objects.all()
    # ... although Stripe made the refund (the same key and metadata as the first send), a day ago
    made = integration_provider(stripe_connected).refund(
        charge_reference=row.charge_reference,
        amount=row.amount,
        currency=row.currency,
        idempotency_key=row.idempotency_key,
        metadata={"meterline_refund": row.pk},
    )
    stripe_server.forget_idempotency_keys()

    [resumed] = refunds.provider_refunds_resume_due(now=row.created_at + timedelta(days=2))

    assert (resumed.status, resumed.reference) == ("succeeded", made.reference)
    assert len(stripe_server.calls("POST", REFUNDS)) == 1 and len(stripe_server.state.refunds) == 1
    assert stripe_server.calls("GET", REFUNDS)[0].params["payment_intent"] == row.charge_reference


def test_stripe_unreachable_leaves_the_refund_pending_and_the_sweep_sends_it_once(
    api_client, settings, stripe_connected, stripe_server, merchant, now
):
    invoice, _ = card_paid(merchant, now)
    base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens

    response = refund(api_client, invoice)

    assert response.status_code == 201
    [row] = ProviderRefund.objects.all()
    assert (row.status, row.reference) == ("pending", None)
    settings.STRIPE_API_BASE = base
    claimed = row.updated_at
    assert refunds.provider_refunds_resume_due(now=claimed + timedelta(minutes=5)) == []  # its lease runs
    [resumed] = refunds.provider_refunds_resume_due(now=claimed + timedelta(minutes=11))
    assert refunds.provider_refunds_resume_due(now=claimed + timedelta(minutes=30)) == []
    [sent] = stripe_server.calls("POST", REFUNDS)
    assert (resumed.status, sent.idempotency_key, sent.params["amount"]) == (
        "succeeded",
        f"meterline-refund-{response.json()['id']}",
        "12345",
    )


def test_a_refund_stripe_refuses_is_failed_with_its_reason_and_shown_to_finance(
    api_client, superuser_client, stripe_connected, stripe_server, merchant, now
):
    invoice, attempt = card_paid(merchant, now)
    # refunded from Stripe's dashboard meanwhile: nothing is left of the charge there
    integration_provider(stripe_connected).refund(
        charge_reference=attempt.reference, amount=Decimal("123.45"), currency="USD", idempotency_key="dashboard"
    )

    response = refund(api_client, invoice)

    assert response.status_code == 201  # the credit note is issued in our books
    [row] = ProviderRefund.objects.all()
    assert (row.status, row.failure_code, row.reference) == ("failed", "charge_already_refunded", None)
    assert "exceeds" in row.failure_message
    page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert 'data-status="failed"' in page and "charge_already_refunded" in page
    listed = superuser_client.get(reverse("admin:payments_providerrefund_changelist") + "?status__exact=failed")
    assert row.pk in listed.content.decode()


def test_finance_retries_a_failed_refund_once_stripe_is_connected_again(
    api_client, superuser_client, stripe_connected, stripe_server, merchant, now
):
    invoice, attempt = card_paid(merchant, now)
    integration_disconnect(integration=stripe_connected, now=now)
    response = refund(api_client, invoice, {"amount": "20.00"})
    [failed] = ProviderRefund.objects.all()
    assert (failed.status, failed.failure_code) == ("failed", "provider_not_connected")
    assert stripe_server.calls("POST", REFUNDS) == []
    integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)

    answer = superuser_client.post(
        reverse("admin:payments_providerrefund_changelist"), {"action": "retry", "_selected_action": [failed.pk]}
    )

    assert answer.status_code == 302
    retried = ProviderRefund.objects.get(number=2)
    [sent] = stripe_server.calls("POST", REFUNDS)
    assert sent.idempotency_key == f"meterline-refund-{response.json()['id']}-2"
    assert (sent.params["payment_intent"], sent.params["amount"]) == (attempt.reference, "2000")
    assert (retried.status, retried.payment_id) == ("succeeded", attempt.payment_id)
    with pytest.raises(refunds.ProviderRefundError):  # the failed try was retried: once
        refunds.provider_refund_retry(refund=failed, now=now)


def test_a_viewer_cannot_retry_a_refund(viewer_client, api_client, stripe_connected, stripe_server, merchant, now):
    invoice, _ = card_paid(merchant, now)
    integration_disconnect(integration=stripe_connected, now=now)
    refund(api_client, invoice)
    failed = ProviderRefund.objects.get()

    answer = viewer_client.post(
        reverse("admin:payments_providerrefund_changelist"), {"action": "retry", "_selected_action": [failed.pk]}
    )

    assert answer.status_code in (200, 403)
    assert ProviderRefund.objects.count() == 1


def test_a_refund_goes_to_card_payments_newest_first_and_the_rest_out_of_band(
    api_client, stripe_connected, stripe_server, merchant, now
):
    # 100.00 invoiced: 30.00 paid by transfer, 70.00 charged to the card
    invoice, attempt = card_paid(merchant, now, amount="100.00", paid_out_of_band="30.00")
    assert attempt.amount == Decimal("70.00")

    response = refund(api_client, invoice)

    [sent] = stripe_server.calls("POST", REFUNDS)
    assert sent.params["amount"] == "7000" and sent.idempotency_key == f"meterline-refund-{response.json()['id']}"
    note = CreditNote.objects.get(pk=response.json()["id"])
    assert note.refunded == Decimal("100.00")  # 30.00 of it is paid back by transfer, as before
    assert [row.amount for row in note.provider_refunds.all()] == [Decimal("70.00")]


def test_a_refund_spanning_two_card_payments_keys_each_by_payment(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice, older = card_paid(merchant, now, amount="100.00", paid_out_of_band="60.00")
    # a second card payment of the same invoice, later: replace the transfer by a charge (as a retry would)
    transfer = Payment.objects.get(method="bank_transfer")
    newer = _second_card_payment(invoice, transfer=transfer, amount=Decimal("60.00"), at=now + timedelta(days=1))

    response = refund(api_client, invoice, {"amount": "80.00"})

    note_id = response.json()["id"]
    sent = stripe_server.calls("POST", REFUNDS)
    assert [(call.params["payment_intent"], call.params["amount"], call.idempotency_key) for call in sent] == [
        (newer.reference, "6000", f"meterline-refund-{note_id}-{newer.payment_id}"),
        (older.reference, "2000", f"meterline-refund-{note_id}-{older.payment_id}"),
    ]
    # what is left of each payment to refund is what it paid less what went back on it
    again = refund(api_client, invoice, {"amount": "20.00"})
    [third] = ProviderRefund.objects.filter(credit_note_id=again.json()["id"])
    assert (
        stripe_server.calls("POST", REFUNDS)[-1].params
        == {
            "payment_intent": older.reference,
            "amount": "2000",
            "metadata[meterline_refund]": third.pk,  # how a resend after Stripe forgot its key finds it
        }
        and again.status_code == 201
    )


def _second_card_payment(invoice, *, transfer: Payment, amount: Decimal, at):
    """Swap the invoice's transfer allocation for a second card charge, recorded as ``payments.charges`` does."""
    from invoicing.models import PaymentAllocation

    method = invoice.customer.payment_methods.get()
    result = integration_provider(method.provider_customer.integration).invoice_charge(
        provider_customer=method.provider_customer.reference,
        payment_method=method.reference,
        amount=amount,
        currency="USD",
        idempotency_key="second-charge",
    )
    PaymentAllocation.objects.filter(payment=transfer).delete()
    payment = Payment.objects.create(
        merchant_id=invoice.merchant_id,
        customer=invoice.customer,
        currency="USD",
        amount=amount,
        method="card",
        reference=result.reference,
        received_at=at,
        recorded_at=at,
        idempotency_key=f"charge-{result.reference}",
    )
    PaymentAllocation.objects.create(payment=payment, invoice=invoice, amount=amount, created_at=at)
    return PaymentAttempt.objects.create(
        invoice=invoice,
        number=2,
        amount=amount,
        currency="USD",
        provider="stripe",
        payment_method=method,
        reference=result.reference,
        status="succeeded",
        payment=payment,
        created_at=at,
        updated_at=at,
    )


def test_an_invoice_paid_out_of_band_is_refunded_in_our_books_only(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice = issued(account(merchant), "50.00", now=now)
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal("50.00"),
        method="bank_transfer",
        received_at=now,
        now=now,
    )

    response = refund(api_client, invoice)

    assert response.status_code == 201
    assert stripe_server.calls("POST", REFUNDS) == [] and not ProviderRefund.objects.exists()


def test_a_refund_sent_to_stripe_cannot_be_voided_one_that_failed_can(
    api_client, stripe_connected, stripe_server, merchant, now
):
    invoice, _ = card_paid(merchant, now)
    sent = refund(api_client, invoice, {"amount": "10.00"}).json()
    integration_disconnect(integration=stripe_connected, now=now)
    failed = refund(api_client, invoice, {"amount": "10.00"}).json()

    refused = api_client.post(f"/v2/invoices/{invoice.pk}/refunds/{sent['id']}/void", {}, format="json")
    voided = api_client.post(f"/v2/invoices/{invoice.pk}/refunds/{failed['id']}/void", {}, format="json")

    assert (refused.status_code, refused.json()["code"]) == (400, "INVOICE_REFUND_REFUSED")
    assert "Stripe" in refused.json()["message"]
    assert (voided.status_code, voided.json()["status"]) == (200, "VOIDED")
    with pytest.raises(refunds.ProviderRefundError):  # nothing to retry for a voided refund
        refunds.provider_refund_retry(refund=ProviderRefund.objects.get(credit_note_id=failed["id"]), now=now)


def test_the_admin_credit_note_page_refunds_the_card_too(
    superuser_client, stripe_connected, stripe_server, merchant, now
):
    invoice, attempt = card_paid(merchant, now)
    line = invoice.lines.get()

    answer = superuser_client.post(
        reverse("admin:invoicing_invoice_credit_note", args=[invoice.pk]),
        {"reason": "refund", "scope": "lines", "settlement": "refund", f"amount_{line.pk}": "12.00"},
    )

    assert answer.status_code == 302, answer.content.decode()[:2000]
    [sent] = stripe_server.calls("POST", REFUNDS)
    note = CreditNote.objects.get()
    assert (sent.params["payment_intent"], sent.params["amount"]) == (attempt.reference, "1200")
    assert sent.idempotency_key == f"meterline-refund-{note.pk}"


def test_one_live_try_per_credit_note_and_payment(api_client, stripe_connected, stripe_server, merchant, now):
    invoice, _ = card_paid(merchant, now)
    refund(api_client, invoice, {"amount": "10.00"})
    row = ProviderRefund.objects.get()

    with pytest.raises(IntegrityError), transaction.atomic():
        ProviderRefund.objects.create(
            credit_note=row.credit_note,
            payment=row.payment,
            number=2,
            amount=row.amount,
            currency="USD",
            provider="stripe",
            charge_reference=row.charge_reference,
            idempotency_key="another",
            created_at=now,
            updated_at=now,
        )


def test_the_beat_resumes_pending_refunds_every_five_minutes(settings):
    from billing_site.celery import app

    app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["payments-provider-refunds-resume-due"]
    assert entry["task"] == "payments.provider_refunds_resume_due" and entry["task"] in app.tasks
    assert entry["schedule"].minute == set(range(0, 60, 5))


def test_a_replay_of_a_refund_issued_before_refunds_went_through_stripe_sends_nothing(
    api_client, stripe_connected, stripe_server, merchant, now
):
    from invoicing.services import invoice_refund_create as refunded_in_our_books_only

    invoice, _ = card_paid(merchant, now)
    note = refunded_in_our_books_only(invoice=invoice, now=now, amount=Decimal("5.00"), idempotency_key="old")

    replay = refund(api_client, invoice, {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="old")

    assert (replay.status_code, replay.json()["id"]) == (201, note.pk)
    assert stripe_server.calls("POST", REFUNDS) == [] and not ProviderRefund.objects.exists()

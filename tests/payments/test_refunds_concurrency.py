"""Refunds of one card-paid invoice at the same moment (PostgreSQL: row locks between concurrent transactions;
skipped on SQLite): the claims are allocated under the invoice's lock, so together they never send more back
to the card than it paid, and each refund is sent once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.receivables import payment_record
from payments import refunds
from payments.charges import invoice_auto_charge
from payments.models import ProviderRefund
from payments.services import integration_upsert, payment_method_save
from tests.factories import MerchantFactory
from tests.invoicing.receivables import account, issued
from tests.invoicing.test_receivables_concurrency import at_once

from .conftest import SECRET_KEY

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def test_two_refunds_at_once_send_back_at_most_what_the_card_paid(stripe_server, now):
    stripe_server.latency = 0.2
    merchant = MerchantFactory()
    integration_upsert(merchant=merchant, provider="stripe", now=now, secret_key=SECRET_KEY)
    subscription = account(merchant)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    payment_method_save(customer=subscription.customer, payment_method="pm_card_visa", now=now)
    invoice = issued(subscription, "100.00", now=now)
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal("30.00"),
        method="bank_transfer",
        received_at=now,
        now=now,
        invoice_ids=[invoice.pk],
    )
    attempt = invoice_auto_charge(invoice_id=invoice.pk, now=now)  # 70.00 by card

    results = at_once(
        lambda: refunds.invoice_refund_create(invoice=invoice, now=now, amount=Decimal("60.00")),
        lambda: refunds.invoice_refund_create(invoice=invoice, now=now, amount=Decimal("40.00")),
    )

    assert not any(isinstance(result, Exception) for result in results), results
    sent = stripe_server.calls("POST", "/v1/refunds")
    assert {call.params["payment_intent"] for call in sent} == {attempt.reference}
    assert sum(int(call.params["amount"]) for call in sent) == 7000  # 30.00 left to refund by transfer
    assert len(sent) == len({call.idempotency_key for call in sent}) == ProviderRefund.objects.count()
    assert set(ProviderRefund.objects.values_list("status", flat=True)) == {"succeeded"}

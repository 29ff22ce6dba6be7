"""A threshold invoice (invoicing/THRESHOLDS.md) is an ordinary issued invoice: automatic charge picks it up
like any other, against the local Stripe server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from invoicing.models import InvoiceKind, InvoiceStatus
from invoicing.services import subscription_start, subscription_threshold_evaluate
from payments.charges import auto_charge_due_invoices, invoices_auto_charge_due
from payments.services import payment_method_save
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

pytestmark = pytest.mark.django_db

MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_threshold_invoice_is_charged_automatically(stripe_connected, stripe_server, merchant, now):
    # given an autoCharge subscription with a card, $0.002 a call and a $100 threshold
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, threshold_amount=Decimal("100"))
    calls = metered_price(plan, "0.002", name="API calls", unit="calls").billable_metric
    customer = CustomerFactory(merchant=merchant)
    subscription = subscription_start(customer=customer, plan=plan, started_at=MAR_1, now=MAR_1)
    subscription.auto_charge = True
    subscription.save(update_fields=["auto_charge"])
    payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)
    record_usage(customer, calls, datetime(2026, 3, 1, 13, tzinfo=UTC), 60_000)  # $120

    # when the threshold invoice is issued, then the charge sweep runs
    invoice = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 3, 2, tzinfo=UTC))
    assert list(auto_charge_due_invoices(now=datetime(2026, 3, 2, tzinfo=UTC))) == [invoice]
    [attempt] = invoices_auto_charge_due(now=datetime(2026, 3, 2, tzinfo=UTC))

    # then the card paid its $120
    invoice.refresh_from_db()
    assert (invoice.kind, invoice.status, invoice.amount_due) == (InvoiceKind.THRESHOLD, InvoiceStatus.PAID, 0)
    assert (attempt.status, attempt.amount) == ("succeeded", Decimal("120"))
    [sent] = stripe_server.calls("POST", "/v1/payment_intents")
    assert sent.params["amount"] == "12000"

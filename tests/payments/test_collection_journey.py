"""Issue #21's Done-when, end to end through the unmodified paygentic-sdk 0.6.3 against a live server, Stripe
played by the local server: a customer saves a card on Stripe's hosted page, subscribes with ``autoCharge`` on a
test clock, the clock passes the period's end and what beat runs (the billing run, the charge sweep, the retry
sweep, time passed in) charges the invoice, ``PAID`` with one PaymentIntent; a second customer's card declines,
the invoice goes ``PAYMENT_FAILED``, the retry three days later declines again, the customer replaces the card
on Stripe's hosted page and the next scheduled retry pays it: one payment.

Amounts by hand: the plan is a platform fee of 24.50 a month in advance, nothing else, no tax. Invoice 0 (the
first month, in advance) is 24.50 = 2450 cents at Stripe; the invoice closing the first month bills the second
month's fee in advance, 24.50 again."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone
from paygentic_sdk import Paygentic

from catalog.services import api_key_create
from invoicing.models import Payment
from invoicing.services import billing_run_execute
from payments.charges import invoices_auto_charge_due
from payments.models import PaymentAttempt
from payments.retries import invoices_payment_retry_due
from tests.factories import MerchantFactory

from .conftest import SECRET_KEY
from .stripe_events import WEBHOOK_SECRET, body, event, sign

INTENTS = "/v1/payment_intents"

pytestmark = pytest.mark.django_db(transaction=True)


def _tomorrow() -> datetime:
    """The clocks start at the next midnight UTC: after the Stripe connection (only invoices issued since it
    was connected are charged) and on a whole day, so the hand-worked dates read plainly."""
    now = timezone.now().astimezone(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def _beat(now: datetime) -> None:
    """What beat runs at ``now``: the billing run (clock subscriptions are billed up to their clock), the
    automatic charge of issued invoices, the scheduled retries."""
    billing_run_execute(as_of=now)
    invoices_auto_charge_due(now=now)
    invoices_payment_retry_due(now=now)


def _card_saved_on_stripes_page(sdk, live_server, stripe_server, integration_id: str, customer_id: str, card: str):
    """The client's paymentMethods create (a setup page), the customer saving ``card`` there, and Stripe's signed
    ``checkout.session.completed`` delivered to the webhook endpoint: the card becomes the customer's default."""
    session = sdk.customers.create_customer_payment_method(id=customer_id, success_redirect_url="https://app.example")
    [stripe_session] = [
        s for s in stripe_server.state.sessions.values() if s["metadata"].get("meterline_session") == session.id
    ]
    stripe_server.customer_completes_setup(customer=stripe_session["customer"], card=card, session=stripe_session["id"])
    raw = body(event("checkout.session.completed", copy.deepcopy(stripe_session)))
    delivered = httpx.post(
        f"{live_server.url}/webhooks/stripe/{integration_id}",
        content=raw,
        headers={"Content-Type": "application/json", "Stripe-Signature": sign(raw, WEBHOOK_SECRET)},
    )
    assert delivered.status_code == 200, delivered.text
    return sdk.customers.list_customer_payment_methods(id=customer_id)


def _catalog(sdk, merchant_id: str):
    product = sdk.products.create(merchant_id=merchant_id, name="Inference API", description="LLM inference")
    fee = sdk.fees.create(merchant_id=merchant_id, product_id=product.id, name="Platform fee", description="Monthly")
    price = sdk.prices.create(
        fee_id=fee.id,
        invoice_display_name="Platform fee",
        payment_term="in_advance",
        billing_cadence="P1M",
        properties={"unit_price": "24.50"},
        quantity=1,
    )
    return sdk.plans.create(
        merchant_id=merchant_id,
        product_id=product.id,
        name="Pro",
        currency="USD",
        billing_cadence="P1M",
        prices=[{"price_id": price.id, "key": "platform_fee"}],
    )


def _customer_and_clock(sdk, plan, start: datetime, name: str, email: str):
    customer = sdk.customers.create(
        merchant_id=plan.merchant_id,
        consumer={"name": name, "email": email, "address": {"country": "US", "state": "CA", "zip_code": "94105"}},
    )
    clock = sdk.test_clocks.create(name=name, current_time=start)
    return customer, clock


def test_a_card_customer_is_charged_and_a_declining_one_is_retried_and_paid_after_replacing_the_card(
    live_server, stripe_server
):
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    t0 = _tomorrow()

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        integration = sdk.merchant_integrations.upsert_merchant_integration(
            merchant_id=merchant.pk,
            provider="stripe",
            config={"secretKey": SECRET_KEY, "webhookSecret": WEBHOOK_SECRET},
        )
        plan = _catalog(sdk, merchant.pk)

        # --- customer 1: a card that works ---------------------------------------------------------------
        # given: a customer with a card saved on Stripe's page, subscribed with autoCharge on a clock at t0
        acme, clock = _customer_and_clock(sdk, plan, t0, "Acme Inc", "billing@acme.test")
        methods = _card_saved_on_stripes_page(
            sdk, live_server, stripe_server, integration.id, acme.customer_id, "pm_card_visa"
        )
        assert [(m.type, m.brand, m.last4) for m in methods.data] == [("card", "visa", "4242")]
        sub = sdk.subscriptions.create(
            name="Acme - Pro",
            plan_id=plan.id,
            customer_id=acme.customer_id,
            started_at=t0,
            test_clock_id=clock.id,
            auto_charge=True,
        )
        assert (sub.status, sub.payment.amount) == ("pending_payment", "24.50")

        # when: beat runs at t0: Invoice 0 is charged
        _beat(t0)

        # then: Invoice 0 paid by card, the subscription active
        opening = sdk.invoices_v2.get(id=sub.payment.invoice_id)
        assert (opening.status, opening.grand_total, opening.paid_amount) == ("PAID", "24.50", "24.50")
        assert sdk.subscriptions.get(id=sub.id).status == "active"

        # when: the clock passes the first period's end and its 24-hour grace period; beat runs then
        advanced = sdk.test_clocks.advance(id=clock.id, request_body={"advance_by": "P1M1D"})
        _beat(advanced.current_time)
        _beat(advanced.current_time + timedelta(minutes=1))  # beat again: nothing charged twice

        # then: the invoice closing the first month (the second month's fee in advance, 24.50) is PAID
        listed = sdk.invoices_v2.list(request={"subscription_id": sub.id})
        closing = next(inv for inv in listed.data if inv.sequence_number == 1)
        closing = sdk.invoices_v2.get(id=closing.id)
        assert (closing.status, closing.grand_total, closing.paid_amount, closing.unpaid_amount) == (
            "PAID",
            "24.50",
            "24.50",
            "0.00",
        )
        charges = [
            call
            for call in stripe_server.calls("POST", INTENTS)
            if call.params["metadata[meterline_invoice]"] == closing.id
        ]
        assert len(charges) == 1
        assert (charges[0].params["amount"], charges[0].params["currency"], charges[0].params["off_session"]) == (
            "2450",
            "usd",
            "true",
        )
        assert charges[0].idempotency_key == f"meterline-charge-{closing.id}-1"
        assert Payment.objects.filter(customer_id=acme.customer_id).count() == 2  # Invoice 0 and this one

        # --- customer 2: a card that declines --------------------------------------------------------------
        globex, clock2 = _customer_and_clock(sdk, plan, t0, "Globex", "ap@globex.test")
        _card_saved_on_stripes_page(
            sdk, live_server, stripe_server, integration.id, globex.customer_id, "pm_card_chargeCustomerFail"
        )
        sub2 = sdk.subscriptions.create(
            name="Globex - Pro",
            plan_id=plan.id,
            customer_id=globex.customer_id,
            started_at=t0,
            test_clock_id=clock2.id,
            auto_charge=True,
        )
        invoice_id = sub2.payment.invoice_id

        # when: beat at t0 charges Invoice 0: declined
        _beat(t0)

        # then: PAYMENT_FAILED, the first retry due three days later (the default schedule 3, 5, 7)
        assert sdk.invoices_v2.get(id=invoice_id).status == "PAYMENT_FAILED"
        failed = sdk.invoices_v2.list(request={"subscription_id": sub2.id, "status": "PAYMENT_FAILED"})
        assert [inv.id for inv in failed.data] == [invoice_id]
        first = PaymentAttempt.objects.get(invoice_id=invoice_id, number=1)
        assert (first.status, first.failure_code, first.next_retry_at) == (
            "failed",
            "generic_decline",
            t0 + timedelta(days=3),
        )

        # when: the clock reaches t0 + 3 days; beat's retry sweep runs: the same card declines again
        day3 = sdk.test_clocks.advance(id=clock2.id, request_body={"advance_by": "P3D"}).current_time
        assert day3 == t0 + timedelta(days=3)
        _beat(day3 - timedelta(minutes=5))  # not due yet: nothing charged
        assert not PaymentAttempt.objects.filter(invoice_id=invoice_id, number=2).exists()
        _beat(day3)

        # then: still PAYMENT_FAILED, the next retry on day 5
        second = PaymentAttempt.objects.get(invoice_id=invoice_id, number=2)
        assert (second.trigger, second.status, second.next_retry_at) == (
            "retry",
            "failed",
            t0 + timedelta(days=5),
        )
        assert sdk.invoices_v2.get(id=invoice_id).status == "PAYMENT_FAILED"

        # when: the customer replaces the card on Stripe's page (the card saved there becomes the default),
        # and the clock reaches day 5, when beat retries
        methods = _card_saved_on_stripes_page(
            sdk, live_server, stripe_server, integration.id, globex.customer_id, "pm_card_visa"
        )
        assert sorted(m.last4 for m in methods.data) == ["0341", "4242"]
        day5 = sdk.test_clocks.advance(id=clock2.id, request_body={"advance_by": "P2D"}).current_time
        _beat(day5)
        _beat(day5 + timedelta(minutes=5))

        # then: PAID by the new card, one payment, the subscription active
        paid = sdk.invoices_v2.get(id=invoice_id)
        assert (paid.status, paid.paid_amount, paid.unpaid_amount) == ("PAID", "24.50", "0.00")
        assert sdk.subscriptions.get(id=sub2.id).status == "active"

    attempts = list(PaymentAttempt.objects.filter(invoice_id=invoice_id).order_by("number"))
    assert [(a.number, a.status) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    sent = [c for c in stripe_server.calls("POST", INTENTS) if c.params["metadata[meterline_invoice]"] == invoice_id]
    assert [c.idempotency_key for c in sent] == [f"meterline-charge-{invoice_id}-{n}" for n in (1, 2, 3)]
    assert {c.params["amount"] for c in sent} == {"2450"}
    new_card = attempts[2].payment_method
    assert (new_card.last4, new_card.is_default) == ("4242", True)
    assert sent[2].params["payment_method"] == new_card.reference
    [payment] = Payment.objects.filter(customer_id=globex.customer_id)
    assert (payment.amount, payment.method, payment.reference) == (Decimal("24.50"), "card", attempts[2].reference)

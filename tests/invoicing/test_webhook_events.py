"""Invoicing's events to merchants: recorded by the services inside their transactions, delivered once
per (event, endpoint), signed per Standard Webhooks (verified here with the ``standardwebhooks`` library)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks
from django.db import transaction
from django.utils import timezone

from invoicing.models import Invoice, InvoiceKind, Payment
from invoicing.services import (
    billing_run_execute,
    credit_note_issue,
    invoice_finalize,
    invoice_mark_paid,
    invoice_void,
    subscription_start,
    subscription_terminate,
)
from invoicing.webhook_events import invoice_paid_emit, payment_recorded_emit
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage
from tests.wallets.factories import WebhookEndpointFactory
from wallets.models import WebhookDelivery, WebhookEventType
from wallets.webhooks import webhook_delivery_attempt

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro")
    fee_price(plan, "20.00")
    metered_price(plan, "0.01", name="Calls", unit="calls")
    return plan


@pytest.fixture
def customer(seller):
    return CustomerFactory(merchant=seller)


def events(endpoint) -> list[tuple[str, str]]:
    """(type, subject id) of the endpoint's deliveries, in the order they were recorded."""
    subject = ("creditNoteId", "invoiceId", "paymentId", "subscriptionId")
    rows = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("created_at", "pk")
    return [(d.event_type, next(d.payload["data"][k] for k in subject if k in d.payload["data"])) for d in rows]


def test_the_order_to_cash_events_reach_a_subscribed_endpoint_once_each(seller, plan, customer):
    # given one endpoint for every event and one for payments only
    everything = WebhookEndpointFactory(merchant=seller)
    paid_only = WebhookEndpointFactory(merchant=seller, event_types=["invoice.paid"])

    # when a subscription starts (opening invoice for the in-advance fee), January closes and is issued,
    # paid and credited, February's draft is voided, and the subscription ends
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)
    record_usage(customer, plan.prices.get(billable_metric__isnull=False).billable_metric, JAN_1, 100)
    billing_run_execute(as_of=FEB_1)
    billing_run_execute(as_of=FEB_1)  # a rerun writes nothing and records nothing
    january = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    january = invoice_finalize(invoice=january, now=FEB_1)
    january = invoice_mark_paid(invoice=january, now=FEB_1)
    note = credit_note_issue(invoice=january, now=FEB_1, reason="outage")
    billing_run_execute(as_of=MAR_1)
    february = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=FEB_1)
    invoice_void(invoice=february, now=MAR_1, reason="duplicate")
    subscription_terminate(subscription=subscription, now=MAR_1)
    invoice_paid_emit(invoice=january, now=MAR_1)  # an emitter that runs twice delivers once

    # then
    final = Invoice.objects.filter(subscription=subscription).exclude(pk__in=[opening.pk, january.pk, february.pk])
    assert events(everything) == [
        ("subscription.created.v0", subscription.pk),
        ("invoice.created.v0", opening.pk),
        ("invoice.issued.v0", opening.pk),
        ("invoice.created.v0", january.pk),
        ("invoice.issued.v0", january.pk),
        ("invoice.paid.v0", january.pk),
        ("payment.recorded.v0", Payment.objects.get(allocations__invoice=january).pk),
        ("credit_note.issued.v0", note.pk),
        ("invoice.created.v0", february.pk),
        ("invoice.voided.v0", february.pk),
        *[("invoice.created.v0", invoice.pk) for invoice in final],
        ("subscription.terminated.v0", subscription.pk),
    ]
    assert events(paid_only) == [("invoice.paid.v0", january.pk)]
    paid = WebhookDelivery.objects.get(endpoint=paid_only)
    assert paid.payload["data"] == {
        "invoiceId": january.pk,
        "number": january.number,
        "status": "paid",
        "kind": "recurring",
        "customerId": customer.pk,
        "subscriptionId": subscription.pk,
        "currency": "USD",
        "subtotal": str(january.subtotal.normalize()),
        "tax": "0",
        "total": str(january.total.normalize()),
        "amountDue": str(january.amount_due.normalize()),
        "periodStart": "2026-01-01T00:00:00Z",
        "periodEnd": "2026-02-01T00:00:00Z",
        "issuedAt": "2026-02-01T00:00:00Z",
        "paidAt": "2026-02-01T00:00:00Z",
        "voidedAt": None,
        "grantId": None,
    }
    assert paid.event_id == WebhookDelivery.objects.get(endpoint=everything, event_type="invoice.paid.v0").event_id


def test_a_change_that_rolls_back_records_no_event(seller, plan, customer):
    endpoint = WebhookEndpointFactory(merchant=seller)

    with pytest.raises(RuntimeError), transaction.atomic():
        subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
        raise RuntimeError("rolled back")

    assert not WebhookDelivery.objects.filter(endpoint=endpoint).exists()


class Receiver:
    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_a_paid_invoice_arrives_signed_and_verifies_with_the_standardwebhooks_library(
    seller, plan, customer, receiver, django_capture_on_commit_callbacks
):
    # given an endpoint for invoice.paid.v0 and an issued invoice
    endpoint = WebhookEndpointFactory(merchant=seller, url=receiver.url, event_types=["invoice.paid.v0"])
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)

    # when it is paid: the delivery is sent once the payment commits (the send task reads the wall clock)
    with django_capture_on_commit_callbacks(execute=True):
        invoice_mark_paid(invoice=opening, now=timezone.now())

    # then the merchant's receiver verifies it with the library and reads the invoice id
    [(headers, body)] = receiver.requests
    event = standardwebhooks.Webhook(endpoint.secret).verify(body, headers)
    assert (event["type"], event["data"]["invoiceId"], event["data"]["status"]) == (
        "invoice.paid.v0",
        opening.pk,
        "paid",
    )
    assert event["id"] == {k.lower(): v for k, v in headers.items()}["webhook-id"]
    assert WebhookDelivery.objects.get().status == "succeeded"


def test_payment_recorded_carries_its_allocations(seller):
    endpoint = WebhookEndpointFactory(merchant=seller, event_types=[WebhookEventType.PAYMENT_RECORDED])

    payment_recorded_emit(
        merchant_id=seller.pk,
        payment_id="pay_1",
        customer_id="cus_1",
        amount=Decimal("150.00"),
        currency="USD",
        method="bank_transfer",
        reference="WIRE-778",
        received_at=FEB_1,
        allocations=[("inv_a", Decimal("100.00")), ("inv_b", Decimal("50"))],
        now=FEB_1,
    )

    [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert delivery.payload["data"]["allocations"] == [
        {"invoiceId": "inv_a", "amount": "100"},
        {"invoiceId": "inv_b", "amount": "50"},
    ]
    assert webhook_delivery_attempt(delivery_id="whd_missing", now=FEB_1) is None

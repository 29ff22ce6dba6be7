"""The client's invoice status enum has no partially paid or overdue: the wire says ISSUED, the extension
``receivableStatus`` says which, and out_of_band pays what is left."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk.models import Invoice as ClientInvoice

from invoicing.models import Invoice, InvoiceKind, PaymentMethod
from invoicing.receivables import invoices_mark_overdue, payment_record

from .factories import record_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def january(api_client, subscribe, plan, customer, clock):
    sub = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M1D"}, format="json")
    return Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)


def test_a_partly_paid_then_overdue_invoice_reads_issued_with_our_status(api_client, january):
    total = january.amount_due
    payment_record(
        customer=january.customer,
        currency=january.currency,
        amount=Decimal("10.00"),
        method=PaymentMethod.BANK_TRANSFER,
        received_at=datetime(2025, 2, 2, tzinfo=UTC),
        now=datetime(2025, 2, 2, tzinfo=UTC),
        invoice_ids=[january.pk],
    )
    partly = api_client.get(f"/v2/invoices/{january.id}").json()
    listed = api_client.get("/v2/invoices", {"status": "ISSUED"}).json()
    invoices_mark_overdue(now=datetime(2025, 12, 1, tzinfo=UTC))  # the clock's subscription: by its time
    still = api_client.get(f"/v2/invoices/{january.id}").json()
    january.subscription.test_clock.current_time = datetime(2025, 12, 1, tzinfo=UTC)
    january.subscription.test_clock.save()
    invoices_mark_overdue(now=datetime(2025, 12, 1, tzinfo=UTC))
    overdue = api_client.get(f"/v2/invoices/{january.id}").json()

    ClientInvoice.model_validate(partly)
    ClientInvoice.model_validate(overdue)
    assert (partly["status"], partly["receivableStatus"]) == ("ISSUED", "partially_paid")
    assert (partly["paidAmount"], partly["amountDue"]) == ("10.00", f"{total - Decimal('10.00'):.2f}")
    assert [row["id"] for row in listed["data"]] == [january.id]
    assert still["receivableStatus"] == "partially_paid"
    assert (overdue["status"], overdue["receivableStatus"]) == ("ISSUED", "overdue")


def test_out_of_band_pays_what_is_left_of_an_overdue_invoice(api_client, january):
    payment_record(
        customer=january.customer,
        currency=january.currency,
        amount=Decimal("10.00"),
        method=PaymentMethod.CASH,
        received_at=datetime(2025, 2, 2, tzinfo=UTC),
        now=datetime(2025, 2, 2, tzinfo=UTC),
        invoice_ids=[january.pk],
    )
    total = january.amount_due
    january.subscription.test_clock.current_time = datetime(2025, 12, 1, tzinfo=UTC)
    january.subscription.test_clock.save()
    invoices_mark_overdue(now=datetime(2025, 12, 1, tzinfo=UTC))

    response = api_client.post(f"/v2/invoices/{january.id}/payment", {"method": "out_of_band"}, format="json")

    assert response.status_code == 200
    body = response.json()["invoice"]
    assert (body["status"], body["receivableStatus"], body["amountDue"]) == ("PAID", "paid", "0.00")
    assert body["paidAmount"] == f"{total:.2f}"

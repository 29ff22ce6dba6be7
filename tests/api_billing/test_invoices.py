"""/v2/invoices: list, get with line items, cursor paging, PDF, recorded payments, ledger lines."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone
from paygentic_sdk.models import Invoice as ClientInvoice
from paygentic_sdk.models import InvoiceLineItemsResponse, LineItemsResponse

from invoicing import documents, selectors
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.services import invoice_void

from .factories import record_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def billed(api_client, subscribe, plan, customer, clock):
    """Invoice 0 paid, 3,000,000 tokens in January, the clock past January's grace period."""
    sub = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M1D"}, format="json")
    return sub, Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)


def test_list_wraps_invoices_and_maps_statuses(api_client, billed):
    sub, january = billed

    body = api_client.get("/v2/invoices", {"subscriptionId": sub["id"], "limit": 10, "offset": 0}).json()
    issued = api_client.get("/v2/invoices", {"status": "ISSUED"}).json()
    paid = api_client.get("/v2/invoices", {"status": "PAID"}).json()
    closing = api_client.get("/v2/invoices", {"status": "CLOSING"}).json()

    assert body["object"] == "list"
    assert body["pagination"] == {"limit": 10, "offset": 0, "total": 2}
    for row in body["data"]:
        ClientInvoice.model_validate(row)
    assert [row["id"] for row in issued["data"]] == [january.id]
    assert [row["kind"] for row in paid["data"]] == ["opening"]
    assert closing["data"] == []


def test_void_invoice_reads_cancelled(api_client, billed):
    _, january = billed
    invoice_void(invoice=january, now=timezone.now(), reason="duplicate")

    body = api_client.get("/v2/invoices", {"status": "CANCELLED"}).json()

    assert [row["id"] for row in body["data"]] == [january.id]
    assert body["data"][0]["metadata"]["voidReason"] == "duplicate"


@pytest.mark.parametrize(
    ("query", "field"), [({"status": "PROJECTED"}, "status"), ({"status": "issued"}, "status"), ({"limit": 0}, "limit")]
)
def test_list_refuses_bad_query(api_client, query, field):
    response = api_client.get("/v2/invoices", query)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_get_invoice_with_line_items(api_client, billed, merchant):
    sub, january = billed

    body = api_client.get(f"/v2/invoices/{january.id}", {"expand": "lineItems", "lineItemsLimit": 100}).json()

    ClientInvoice.model_validate(body)
    # 3,000,000 × 0.000002 = 6.00 for January's tokens, 49.00 for February's fee in advance
    assert (body["status"], body["subtotal"], body["totalTax"], body["grandTotal"]) == (
        "ISSUED",
        "55.00",
        "0.00",
        "55.00",
    )
    assert (body["paidAmount"], body["unpaidAmount"], body["itemCount"], body["sequenceNumber"]) == (
        "0.00",
        "55.00",
        2,
        1,
    )
    assert body["invoiceNumber"] == f"{merchant.invoice_number_prefix or 'INV'}-2025-000002"
    assert (body["issuedAt"], body["dueAt"], body["gracePeriodEnd"]) == (
        "2025-02-02T00:00:00Z",
        "2025-02-02T00:00:00Z",
        "2025-02-02T00:00:00Z",
    )
    assert body["pdfUrl"] == f"http://testserver/v2/invoices/{january.id}/pdf"
    usage, fee = body["lineItems"]["lineItems"]
    assert body["lineItems"]["totalCount"] == 2
    assert body["lineItems"]["nextPageToken"] is None
    assert (usage["eventType"], usage["quantity"], usage["unitPrice"], usage["totalAmount"]) == (
        "usage",
        3000000,
        "0.000002",
        "6.00",
    )
    assert (usage["metricUnit"], usage["paymentTerm"], usage["periodEnd"]) == (
        "tokens",
        "in_arrears",
        "2025-02-01T00:00:00Z",
    )
    assert "3000000" in usage["explanation"].replace(",", "")
    assert (fee["eventType"], fee["quantity"], fee["totalPrice"], fee["paymentTerm"]) == (
        "fee",
        1,
        "49.00",
        "in_advance",
    )
    assert fee["periodStart"] == "2025-02-01T00:00:00Z"


def test_a_line_explained_by_its_text_alone_sends_the_text_once(api_client, subscribe, plan, customer, clock):
    # given: a 10% plan discount, whose line is explained by a text without steps
    plan.discount_percent = Decimal("10")
    plan.save(update_fields=["discount_percent"])
    sub = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 3_000_000)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M1D"}, format="json")
    january = Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING)

    # when
    body = api_client.get(f"/v2/invoices/{january.id}/lineItems").json()

    # then: the API sends the text once, as `explanation`; the admin and document sentences show it as the breakdown
    discount = next(item for item in body["lineItems"] if item["kind"] == "discount")
    assert (discount["explanation"], discount["breakdown"]) == ("10% of $55.00", [])
    stored = january.lines.get(kind=LineKind.DISCOUNT)
    assert documents.breakdown_of(stored.explanation) == ["10% of $55.00"]


def test_line_items_add_up_with_tax(api_client, subscribe, arrears_plan, customer, clock):
    # given: 8.25% tax on 3 lines that do not split evenly
    customer.tax_rate = Decimal("8.25")
    customer.save()
    sub = subscribe(arrears_plan).json()
    record_usage(customer, arrears_plan, datetime(2025, 1, 9, tzinfo=UTC), 1_234_567)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M"}, format="json")
    invoice = Invoice.objects.get(subscription_id=sub["id"])

    body = api_client.get(f"/v2/invoices/{invoice.id}", {"expand": "lineItems"}).json()

    # 1,234,567 × 0.000002 = 2.469134 → 2.47; tax 8.25% → 0.203775 → 0.20
    (line,) = body["lineItems"]["lineItems"]
    assert (body["subtotal"], body["totalTax"], body["grandTotal"]) == ("2.47", "0.20", "2.67")
    assert (line["totalPrice"], line["totalTax"], line["totalAmount"], line["taxRate"]) == (
        "2.47",
        "0.20",
        "2.67",
        0.0825,
    )


def test_line_items_cursor(api_client, billed):
    _, january = billed

    first = api_client.get(f"/v2/invoices/{january.id}/lineItems", {"limit": 1}).json()
    second = api_client.get(f"/v2/invoices/{january.id}/lineItems", {"limit": 1, "pageToken": first["nextPageToken"]})
    embedded = api_client.get(
        f"/v2/invoices/{january.id}",
        {"expand": "lineItems", "lineItemsLimit": 1, "lineItemsPageToken": first["nextPageToken"]},
    ).json()

    InvoiceLineItemsResponse.model_validate(first)
    assert first["totalCount"] == 2
    assert [item["eventType"] for item in first["lineItems"]] == ["usage"]
    assert [item["eventType"] for item in second.json()["lineItems"]] == ["fee"]
    assert second.json()["nextPageToken"] is None
    assert embedded["lineItems"]["lineItems"] == second.json()["lineItems"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"pageToken": "nonsense!"}, "pageToken"),
        ({"limit": 0}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"expand": "x"}, "expand"),
    ],
)
def test_line_items_refuse_bad_query(api_client, billed, query, field):
    _, january = billed

    response = api_client.get(f"/v2/invoices/{january.id}/lineItems", query)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_pdf_download(api_client, billed):
    _, january = billed

    response = api_client.get(f"/v2/invoices/{january.id}/pdf", HTTP_ACCEPT="application/pdf")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    missing = api_client.get("/v2/invoices/inv_nope/pdf", HTTP_ACCEPT="application/pdf")
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"
    assert missing.json()["message"]


def test_out_of_band_payment(api_client, billed):
    _, january = billed

    response = api_client.post(
        f"/v2/invoices/{january.id}/payment", {"method": "out_of_band", "reason": "wire"}, format="json"
    )
    again = api_client.post(f"/v2/invoices/{january.id}/payment", {"method": "out_of_band"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["method"] == "out_of_band"
    assert (body["invoice"]["status"], body["invoice"]["paidAt"]) == ("PAID", "2025-02-02T00:00:00Z")
    january.refresh_from_db()
    assert january.status == InvoiceStatus.PAID
    assert again.status_code == 409
    assert again.json()["code"] == "INVOICE_ALREADY_PAID"


def test_payment_on_a_draft_or_void_invoice_is_unprocessable(api_client, subscribe, arrears_plan, clock):
    sub = subscribe(arrears_plan).json()
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M"}, format="json")
    draft = Invoice.objects.get(subscription_id=sub["id"])

    on_draft = api_client.post(f"/v2/invoices/{draft.id}/payment", {"method": "out_of_band"}, format="json")
    invoice_void(invoice=draft, now=timezone.now())
    on_void = api_client.post(f"/v2/invoices/{draft.id}/payment", {"method": "out_of_band"}, format="json")

    assert (on_draft.status_code, on_draft.json()["code"]) == (422, "INVOICE_NOT_LINKABLE_STATUS")
    assert (on_void.status_code, on_void.json()["code"]) == (422, "INVOICE_NOT_LINKABLE_STATUS")


def test_hosted_link_needs_a_payment_provider(api_client, billed):
    _, january = billed

    response = api_client.post(f"/v2/invoices/{january.id}/payment", {"method": "hosted_link"}, format="json")
    bad = api_client.post(f"/v2/invoices/{january.id}/payment", {"method": "cheque"}, format="json")

    assert (response.status_code, response.json()["code"]) == (422, "MERCHANT_NO_PAYMENT_ACCOUNT")
    january.refresh_from_db()
    assert january.status == InvoiceStatus.ISSUED
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (400, "method")


def test_a_payment_link_for_a_paid_or_draft_invoice_is_refused_as_a_payment_is(
    api_client, billed, subscribe, arrears_plan
):
    # given: the opening invoice paid (by the fixture), and a draft of another subscription
    sub, _ = billed
    opening = sub["payment"]["invoiceId"]
    draft = Invoice.objects.get(subscription_id=subscribe(arrears_plan).json()["id"])
    assert draft.status == InvoiceStatus.DRAFT

    # when
    on_paid = api_client.post(f"/v2/invoices/{opening}/payment", {"method": "hosted_link"}, format="json")
    on_draft = api_client.post(f"/v2/invoices/{draft.id}/payment", {"method": "hosted_link"}, format="json")

    # then: the invoice's own refusal comes before the missing payment provider
    assert (on_paid.status_code, on_paid.json()["code"]) == (409, "INVOICE_ALREADY_PAID")
    assert on_paid.json()["message"].endswith("is already paid.")
    assert (on_draft.status_code, on_draft.json()["code"]) == (422, "INVOICE_NOT_LINKABLE_STATUS")


def test_ledger_lines_pending_and_invoiced(api_client, billed, plan, customer):
    sub, january = billed
    record_usage(customer, plan, datetime(2025, 2, 10, tzinfo=UTC), 500_000)

    body = api_client.get("/v2/invoices/lineItems", {"subscriptionId": sub["id"]}).json()
    pending = api_client.get("/v2/invoices/lineItems", {"subscriptionId": sub["id"], "status": "pending"}).json()
    one_invoice = api_client.get("/v2/invoices/lineItems", {"invoiceId": january.id}).json()

    LineItemsResponse.model_validate(body)
    assert body["totalCount"] == 5  # Invoice 0's fee, January's 2 lines, February's estimate (tokens, next fee)
    assert {(row["status"], row["type"]) for row in one_invoice["data"]} == {
        ("invoiced", "metered"),
        ("invoiced", "fee"),
    }
    (tokens,) = [row for row in pending["data"] if row["type"] == "metered"]
    assert (tokens["quantity"], tokens["estimatedMeteredQuantity"], tokens["estimatedSubtotal"]) == (
        None,
        "500000",
        "1",
    )
    assert pending["summary"] == {"feeSubtotal": "49", "meteredEstimatedSubtotal": "1", "currency": "USD"}


def test_ledger_lines_need_a_subscription_or_invoice(api_client):
    response = api_client.get("/v2/invoices/lineItems")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "subscriptionId"


def test_line_pages_spread_the_tax_as_one_page_does(api_client, subscribe, plan, customer, clock):
    # given: a taxed invoice of two lines (January's tokens, February's fee)
    customer.tax_rate = Decimal("8.25")
    customer.save()
    sub = subscribe(plan).json()
    api_client.post(f"/v2/invoices/{sub['payment']['invoiceId']}/payment", {"method": "out_of_band"}, format="json")
    record_usage(customer, plan, datetime(2025, 1, 9, tzinfo=UTC), 1_234_567)
    api_client.patch(f"/v0/testClocks/{clock.id}", {"advanceBy": "P1M"}, format="json")
    invoice = selectors.invoice_get(
        merchant=customer.merchant,
        invoice_id=Invoice.objects.get(subscription_id=sub["id"], kind=InvoiceKind.RECURRING).pk,
    )

    # when it is read whole, then a line per page
    whole = selectors.invoice_line_page(invoice=invoice, limit=100)
    first = selectors.invoice_line_page(invoice=invoice, limit=1)
    second = selectors.invoice_line_page(invoice=invoice, limit=1, after=first.next_after)

    # then the pages hold the same lines with the same shares, adding up to the invoice's tax
    paged = [(item.line.pk, item.tax) for item in first.lines + second.lines]
    assert paged == [(item.line.pk, item.tax) for item in whole.lines]
    assert sum(tax for _, tax in paged) == invoice.tax != 0
    assert (first.total, second.total, second.next_after, whole.next_after) == (2, 2, None, None)


def test_ledger_pages_follow_the_invoiced_lines_with_the_pending_ones(api_client, billed, plan, customer):
    sub, _ = billed
    record_usage(customer, plan, datetime(2025, 2, 10, tzinfo=UTC), 500_000)
    subscription = selectors.subscription_get(merchant=customer.merchant, subscription_id=sub["id"])

    def page(limit, offset):
        return selectors.subscription_ledger_page(
            merchant=customer.merchant, subscription=subscription, limit=limit, offset=offset, now=timezone.now()
        )

    whole = page(100, 0)
    one_by_one = [page(1, offset) for offset in range(whole.total + 1)]

    # Invoice 0's fee, January's 2 lines, then February's estimate (tokens, next fee); past the end: nothing
    assert [entry.status for entry in whole.lines] == ["invoiced"] * 3 + ["pending"] * 2
    assert [(p.lines[0].status, p.lines[0].line.description) for p in one_by_one[:-1]] == [
        (entry.status, entry.line.description) for entry in whole.lines
    ]
    assert (one_by_one[-1].lines, {p.total for p in one_by_one}) == ([], {5})

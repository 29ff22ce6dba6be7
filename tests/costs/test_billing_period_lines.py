"""``periodBasis=billingPeriod`` places revenue per invoice line (the period each line bills), and credit notes
per line they credit, in ``/v0/revenue`` and in the margins; hand-worked figures and fixed statement counts.

The books: an invoice issued 2026-02-01 with a $50.00 platform fee in advance for February (line 1) and $30.00
of January usage in arrears (line 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from costs import margin, placement
from invoicing.calculation import LineDraft, finish_lines
from invoicing.models import CreditNote, CreditNoteLine, Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.services import credit_note_issue, invoice_insert, invoice_issue
from tests.factories import SubscriptionFactory

from .conftest import FEB_1, JAN_1

MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)
JANUARY = {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-02-01T00:00:00Z"}
FEBRUARY = {"startTime": "2026-02-01T00:00:00Z", "endTime": "2026-03-01T00:00:00Z"}
BY_LINE = {"periodBasis": "billingPeriod"}
QUERIES = 7  # the API key, then six grouped: invoices, credit notes, payments, and their three trends
# (on billingPeriod the invoice and credit-note ones each read lines and line-less documents: UNION ALL)


def _invoice(subscription, *, tax_behavior="exclusive", tax_rate="0") -> Invoice:
    """Issued 2026-02-01: the February fee in advance (line 1) and January's usage in arrears (line 2)."""
    lines = [
        LineDraft(
            kind=LineKind.FEE,
            description="Platform fee",
            amount=Decimal("50.00"),
            service_start=FEB_1,
            service_end=MAR_1,
        ),
        LineDraft(
            kind=LineKind.USAGE,
            description="API calls",
            amount=Decimal("30.00"),
            service_start=JAN_1,
            service_end=FEB_1,
        ),
    ]
    composed = finish_lines(
        kind=InvoiceKind.RECURRING,
        lines=lines,
        currency="USD",
        rounding=subscription.merchant.rounding_mode,
        tax_rate=Decimal(tax_rate),
        tax_behavior=tax_behavior,
        discount_percent=None,
        minimum=None,
        period_start=JAN_1,
        period_end=FEB_1,
    )
    invoice = invoice_insert(composed, subscription=subscription, plan=subscription.plan)
    invoice = Invoice.objects.select_related("merchant", "subscription").get(pk=invoice.pk)
    invoice_issue(invoice, now=FEB_1)
    return Invoice.objects.get(pk=invoice.pk)


@pytest.fixture
def subscription(merchant):
    return SubscriptionFactory(
        merchant=merchant, customer__merchant=merchant, customer__name="Acme", plan__name="Pro", started_at=JAN_1
    )


def _revenue(api, window: dict, queries: int = QUERIES, **query) -> dict:
    with CaptureQueriesContext(connection) as captured:
        status, body = api.get("/v0/revenue", **window, **query)
    count = len(captured)  # read right after the call
    assert status == 200, body
    assert count == queries
    return body


@pytest.mark.django_db
def test_each_line_counts_in_the_period_it_bills_and_the_whole_invoice_when_issued(api, subscription):
    _invoice(subscription)

    january, february = (_revenue(api, window, **BY_LINE) for window in (JANUARY, FEBRUARY))
    issued_january = _revenue(api, JANUARY, queries=QUERIES + 1)  # nothing in it: one more for revenueRange
    issued_february = _revenue(api, FEBRUARY)

    # January's usage in January, February's fee in February; the invoice is outstanding ($80.00 due, split
    # like its lines) and counts once in each period it bills
    assert (january["netRevenue"], january["invoices"]["issued"], january["invoices"]["outstanding"]) == (
        "30.00",
        {"amount": "30.00", "count": 1},
        {"amount": "30.00", "count": 1},
    )
    assert (february["netRevenue"], february["invoices"]["issued"], february["invoices"]["outstanding"]) == (
        "50.00",
        {"amount": "50.00", "count": 1},
        {"amount": "50.00", "count": 1},
    )
    # on the issue basis the whole invoice counts on 2026-02-01
    assert (issued_january["netRevenue"], issued_february["netRevenue"]) == ("0.00", "80.00")


@pytest.mark.django_db
def test_the_trend_and_groups_place_each_line_in_its_bucket(api, subscription):
    _invoice(subscription)

    body = _revenue(
        api,
        {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-03-01T00:00:00Z"},
        bucketWidth="day",
        groupBy="customer",
        **BY_LINE,
    )

    placed = {row["timestamp"][:10]: row for row in body["trend"] if row["revenue"] != "0.00"}
    assert {day: (row["revenue"], row["issuedInvoices"]) for day, row in placed.items()} == {
        "2026-01-01": ("30.00", "30.00"),
        "2026-02-01": ("50.00", "50.00"),
    }
    customer = subscription.customer_id
    assert [entry["groupKey"] for entry in placed["2026-01-01"]["groupBreakdown"]] == [customer]
    assert [(e["revenue"], e["issuedInvoices"]) for e in placed["2026-02-01"]["groupBreakdown"]] == [("50.00", "50.00")]
    [group] = body["groupBreakdown"]
    # one invoice, counted once though two of its lines lie in the window
    assert (group["groupKey"], group["outstanding"]) == (customer, {"amount": "80.00", "count": 1})
    assert body["netRevenue"] == "80.00"


@pytest.mark.django_db
def test_a_credit_note_on_the_usage_line_only_moves_january(api, subscription):
    invoice = _invoice(subscription, tax_rate="10")
    usage = invoice.lines.get(kind=LineKind.USAGE)
    credit_note_issue(invoice=invoice, now=FEB_1 + timedelta(days=3), amounts={usage.pk: Decimal("10.00")})

    january, february = (_revenue(api, window, **BY_LINE) for window in (JANUARY, FEBRUARY))
    issued_february = _revenue(api, FEBRUARY)

    # $10.00 + 10 % tax credited on January's usage: 30.00 − 10.00 net of tax, the refund with its tax
    assert (january["netRevenue"], january["totalRefunds"], january["refundCount"]) == ("20.00", "11.00", 1)
    assert (february["netRevenue"], february["totalRefunds"], february["refundCount"]) == ("50.00", "0.00", 0)
    # owed: $88.00 less the $11.00 credit note, split 50 : 30 over the lines → 48.13 and 28.87 (the running
    # share of the 77.00 due after the fee is 48.125, rounded half up; the usage line takes the rest)
    assert (january["invoices"]["outstanding"], february["invoices"]["outstanding"]) == (
        {"amount": "28.87", "count": 1},
        {"amount": "48.13", "count": 1},
    )
    assert (issued_february["netRevenue"], issued_february["totalRefunds"]) == ("70.00", "11.00")


@pytest.mark.django_db
def test_a_whole_invoice_credit_note_splits_pro_rata_across_the_lines_to_the_cent(api, subscription):
    # given: tax included at 10 %: $80.00 carries round(80 × 10 / 110) = 7.27 of tax, subtotal 72.73
    invoice = _invoice(subscription, tax_behavior="inclusive", tax_rate="10")
    note = credit_note_issue(invoice=invoice, now=FEB_1 + timedelta(days=3))  # everything, tax included

    # when
    january = _revenue(api, JANUARY, **BY_LINE)
    credited = dict(
        placement.credit_note_lines_placed(CreditNoteLine.objects.filter(credit_note=note)).values_list(
            "invoice_line__kind", F("credited")
        )
    )

    # then: the 7.27 of tax splits 50 : 30 by running share: the fee takes round(7.27 × 50 / 80) =
    # round(4.54375) = 4.54, the usage line the rest, 2.73 (its exact share 2.72625: the freed cent lands
    # there), so the note's 72.73 net of tax is 45.46 for February and 27.27 for January, summing exactly
    assert note.subtotal == Decimal("72.73")
    assert {kind: Decimal(str(amount)).quantize(Decimal("0.01")) for kind, amount in credited.items()} == {
        LineKind.FEE: Decimal("45.46"),
        LineKind.USAGE: Decimal("27.27"),
    }
    # the invoice's lines carry the same split, so January nets to zero; the refund counts tax included
    assert (january["invoices"]["issued"]["amount"], january["netRevenue"]) == ("27.27", "0.00")
    assert (january["totalRefunds"], january["refundCount"]) == ("30.00", 1)


@pytest.mark.django_db
def test_margins_place_revenue_per_line_in_one_query(subscription, django_assert_num_queries):
    invoice = _invoice(subscription)
    usage = invoice.lines.get(kind=LineKind.USAGE)
    credit_note_issue(invoice=invoice, now=FEB_1 + timedelta(days=3), amounts={usage.pk: Decimal("10.00")})
    merchants = [subscription.merchant_id]

    with django_assert_num_queries(1):
        january = margin.revenue_by_customer_product(
            currency="USD", start=JAN_1, end=FEB_1, merchant_ids=merchants, basis=margin.BILLING_PERIOD_BASIS
        )
    february = margin.margins(
        currency="USD", start=FEB_1, end=MAR_1, merchant_ids=merchants, basis=margin.BILLING_PERIOD_BASIS
    )
    issued = margin.margins(currency="USD", start=FEB_1, end=MAR_1, merchant_ids=merchants)

    key = (subscription.customer_id, subscription.plan.product_id)
    assert january == {key: Decimal("20.00")}
    assert [(row.key, row.revenue) for row in february.by_customer] == [(subscription.customer_id, Decimal("50.00"))]
    assert issued.revenue == Decimal("70.00")


@pytest.mark.django_db
def test_the_statement_count_does_not_grow_with_invoices_lines_or_credit_notes(api, subscription, merchant):
    for _ in range(3):
        invoice = _invoice(
            SubscriptionFactory(merchant=merchant, customer__merchant=merchant, started_at=JAN_1), tax_rate="10"
        )
        credit_note_issue(invoice=invoice, now=FEB_1 + timedelta(days=3))

    body = _revenue(api, JANUARY, groupBy="plan", bucketWidth="week", **BY_LINE)

    assert (body["netRevenue"], body["totalRefunds"], body["refundCount"]) == ("0.00", "99.00", 3)


@pytest.mark.django_db
def test_documents_without_lines_count_whole_at_their_billing_period(api, subscription):
    # written outside the invoice writer (an import): no line says which period they bill, the invoice does
    imported = Invoice.objects.create(
        merchant=subscription.merchant,
        customer=subscription.customer,
        subscription=subscription,
        plan=subscription.plan,
        kind=InvoiceKind.ADJUSTMENT,
        status=InvoiceStatus.ISSUED,
        currency="USD",
        period_start=JAN_1,
        period_end=FEB_1,
        issued_at=FEB_1,
        subtotal=Decimal("12.34"),
        total=Decimal("12.34"),
        amount_due=Decimal("12.34"),
    )
    CreditNote.objects.create(
        merchant=subscription.merchant,
        customer=subscription.customer,
        invoice=imported,
        number="CN-IMPORTED-1",
        currency="USD",
        issued_at=FEB_1 + timedelta(days=5),
        subtotal=Decimal("2.00"),
        tax=Decimal("0"),
        total=Decimal("2.00"),
        applied_to_due=Decimal("2.00"),
    )
    _invoice(subscription)

    january = _revenue(api, JANUARY, groupBy="customer", **BY_LINE)

    # the lines' 30.00 and the imported 12.34, less its 2.00 credit note, in one group and one bucket
    assert (january["netRevenue"], january["invoices"]["issued"], january["refundCount"]) == (
        "40.34",
        {"amount": "42.34", "count": 2},
        1,
    )
    [group] = january["groupBreakdown"]
    assert (group["groupKey"], group["outstanding"]) == (subscription.customer_id, {"amount": "42.34", "count": 2})
    [bucket] = [row for row in january["trend"] if row["revenue"] != "0.00"]
    assert (bucket["timestamp"][:10], bucket["revenue"], bucket["issuedInvoices"]) == ("2026-01-01", "40.34", "42.34")
    assert [entry["revenue"] for entry in bucket["groupBreakdown"]] == ["40.34"]

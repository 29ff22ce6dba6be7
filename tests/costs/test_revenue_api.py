"""/v0/revenue and /v0/revenue/accounts through DRF's APIClient and the Paygentic client, hand-worked figures."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, reset_queries
from django.test.utils import CaptureQueriesContext
from paygentic_sdk import Paygentic

from catalog.services import api_key_create
from invoicing.receivables import payment_record
from invoicing.services import credit_note_issue
from tests.factories import FeePriceFactory, MerchantFactory, PlanFactory, SubscriptionFactory
from tests.invoicing.receivables import account, issued

from .conftest import FEB_1, JAN_1

WINDOW = {"startTime": "2026-01-01T00:00:00Z", "endTime": "2026-02-01T00:00:00Z"}
QUERIES = 7  # the API key, then six grouped: invoices, credit notes, payments, and their three trends


def _books(merchant):
    """January: Acme invoiced $2.00 on the 5th and pays it on the 6th; Brio invoiced $1.00 on the 10th,
    credited $0.40 on the 12th, still owing $0.60. A December invoice stays outside the window."""
    acme, brio = (
        SubscriptionFactory(merchant=merchant, customer__merchant=merchant, customer__name=name, plan__name=plan)
        for name, plan in (("Acme", "Pro"), ("Brio", "Starter"))
    )
    issued(acme, "9.00", now=JAN_1 - timedelta(days=3))
    paid = issued(acme, "2.00", now=JAN_1 + timedelta(days=4))
    payment_record(
        customer=acme.customer,
        currency="USD",
        amount=Decimal("2.00"),
        method="bank_transfer",
        received_at=JAN_1 + timedelta(days=5),
        now=JAN_1 + timedelta(days=5),
        invoice_ids=[paid.pk],
    )
    owed = issued(brio, "1.00", now=JAN_1 + timedelta(days=9))
    line = owed.lines.get(description="Line 1")
    credit_note_issue(invoice=owed, now=JAN_1 + timedelta(days=11), amounts={line.pk: Decimal("0.40")})
    return acme, brio


@pytest.mark.django_db
def test_revenue_is_billed_net_of_credit_notes_with_a_trend_and_groups(api, merchant):
    _books(merchant)

    status, body = api.get("/v0/revenue", bucketWidth="week", groupBy="customer", **WINDOW)

    assert status == 200, body
    assert (body["netRevenue"], body["totalRefunds"], body["refundCount"], body["currency"]) == (
        "2.60",
        "0.40",
        1,
        "USD",
    )
    assert body["invoices"] == {
        "issued": {"amount": "3.00", "count": 2},
        "outstanding": {"amount": "0.60", "count": 1},
        "paid": {"amount": "2.00", "count": 1},
        "writtenOff": {"amount": "0.00", "count": 0},
    }
    assert (body["payments"]["completedAmount"], body["payments"]["completedCount"]) == ("2.00", 1)
    # ISO weeks from Monday 2025-12-29: $2.00 + $1.00 invoiced and $2.00 paid in the week of Monday
    # 5 January, the $0.40 credited in the next
    trend = [(b["timestamp"][:10], b["revenue"], b["issuedInvoices"], b["completedPayments"]) for b in body["trend"]]
    assert trend[:3] == [
        ("2025-12-29", "0.00", "0.00", "0.00"),
        ("2026-01-05", "3.00", "3.00", "2.00"),
        ("2026-01-12", "-0.40", "0.00", "0.00"),
    ]
    assert len(trend) == 5
    assert [(g["groupLabel"], g["outstanding"]["amount"], g["paid"]["amount"]) for g in body["groupBreakdown"]] == [
        ("Acme", "0.00", "2.00"),
        ("Brio", "0.60", "0.00"),
    ]


@pytest.mark.django_db
def test_revenue_bounds_and_scoping(api, merchant, other_merchant):
    assert api.get("/v0/revenue", startTime="2026-01-01T00:00:00Z", endTime="2027-06-01T00:00:00Z")[0] == 400
    status, body = api.get("/v0/revenue", bucketWidth="hour", **WINDOW)  # 744 hours: within 1,500
    assert status == 200
    status, body = api.get(
        "/v0/revenue", bucketWidth="hour", startTime="2026-01-01T00:00:00Z", endTime="2026-04-01T00:00:00Z"
    )
    assert (status, body["errors"][0]["code"]) == (400, "parameter_combination")
    assert api.get("/v0/revenue", merchantId=other_merchant.id, **WINDOW)[0] == 403
    assert api.get("/v0/revenue", customerId="cus_nope", **WINDOW)[0] == 404
    assert api.get("/v0/revenue", currency="dollars", **WINDOW)[0] == 400


@pytest.mark.django_db
def test_accounts_show_what_each_customer_owes_today(api, merchant, other_merchant):
    acme, brio = _books(merchant)

    status, body = api.get("/v0/revenue/accounts", merchantId=merchant.id)

    assert status == 200, body
    assert [
        (r["customerName"], r["currency"], r["outstanding"]["amount"], r["outstanding"]["count"]) for r in body["data"]
    ] == [
        ("Acme", "USD", "9.00", 1),
        ("Brio", "USD", "0.60", 1),
    ]
    assert body["data"][1]["outstanding"]["awaitingPayment"] == {"amount": "0.60", "count": 1}
    assert body["totals"] == [
        {
            "currency": "USD",
            "outstanding": {
                "amount": "9.60",
                "count": 2,
                "awaitingPayment": {"amount": "9.60", "count": 2},
                "paymentFailed": {"amount": "0.00", "count": 0},
            },
        }
    ]
    assert body["pagination"] == {"limit": 50, "offset": 0, "total": 2}
    only = api.client.get(f"/v0/revenue/accounts?merchantId={merchant.id}&customerIds={brio.customer_id}").json()
    assert [r["customerName"] for r in only["data"]] == ["Brio"]
    assert api.get("/v0/revenue/accounts", merchantId=merchant.id, customerIds="cus_nope")[0] == 404
    assert api.get("/v0/revenue/accounts", merchantId=merchant.id, limit="101")[0] == 400
    assert api.get("/v0/revenue/accounts", merchantId=other_merchant.id)[0] == 403


@pytest.mark.django_db(transaction=True)
def test_the_client_reads_revenue_and_accounts(live_server):
    merchant = MerchantFactory(name="GPU Labs")
    _books(merchant)
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        summary = sdk.revenue.get(start_time=JAN_1, end_time=FEB_1, bucket_width="day", group_by="plan")
        by_currency = sdk.revenue.get(start_time=JAN_1, end_time=FEB_1, group_by="currency")
        accounts = sdk.revenue.get_revenue_accounts(merchant_id=merchant.id, limit=1)

    assert (summary.net_revenue, summary.invoices.outstanding.amount, len(summary.trend)) == ("2.60", "0.60", 31)
    assert sorted(g.group_label for g in summary.group_breakdown) == ["Pro", "Starter"]
    # the per-group trend, read by the client's GroupTrendEntry: a day without invoices or credit notes has none
    assert {
        b.timestamp.day: [(e.group_label, e.revenue, e.issued_invoices) for e in b.group_breakdown]
        for b in summary.trend
        if b.group_breakdown
    } == {5: [("Pro", "2.00", "2.00")], 10: [("Starter", "1.00", "1.00")], 12: [("Starter", "-0.40", "0.00")]}
    assert summary.total_refunds == "0.40"
    assert [(c.currency, c.net_revenue) for c in by_currency.currency_breakdown] == [("USD", "2.60")]
    assert [(r.customer_name, r.outstanding.amount) for r in accounts.data] == [("Acme", "9.00")]
    assert accounts.pagination.total == 2


@pytest.mark.django_db
def test_an_empty_window_says_where_the_revenue_lies(api, merchant):
    # given: invoices issued on Dec 29 and on Jan 5 and 10 (the credit note is not an invoice)
    _books(merchant)
    march = {"startTime": "2026-03-01T00:00:00Z", "endTime": "2026-04-01T00:00:00Z"}

    # when
    empty = api.get("/v0/revenue", **march)[1]
    in_euros = api.get("/v0/revenue", currency="EUR", **march)[1]
    january = api.get("/v0/revenue", **WINDOW)[1]

    # then: the first and last issue instants under the same filters; null when there is none; absent
    # when the window held revenue
    assert (empty["netRevenue"], empty["revenueRange"]) == (
        "0.00",
        {"from": "2025-12-29T00:00:00Z", "to": "2026-01-10T00:00:00Z"},
    )
    assert in_euros["revenueRange"] is None
    assert "revenueRange" not in january


def _subscribed(merchant, *, currency: str, cadence: str, amount: str):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, currency=currency, billing_cadence=cadence)
    FeePriceFactory(plan=plan, billing_cadence=cadence, unit_price=Decimal(amount))
    return SubscriptionFactory(merchant=merchant, customer__merchant=merchant, plan=plan, started_at=JAN_1)


@pytest.mark.django_db
def test_recurring_revenue_brings_monthly_and_annual_fees_to_a_month(api, merchant):
    # given: $49 a month and $1,200 a year in USD; €10 a month in EUR
    _subscribed(merchant, currency="USD", cadence="P1M", amount="49.00")
    _subscribed(merchant, currency="USD", cadence="P1Y", amount="1200.00")
    _subscribed(merchant, currency="EUR", cadence="P1M", amount="10.00")

    # when
    status, usd = api.get("/v0/revenue/recurring", asOf="2026-02-01T00:00:00Z")
    euros = api.get("/v0/revenue/recurring", currency="eur", asOf="2026-02-01T00:00:00Z")[1]
    before = api.get("/v0/revenue/recurring", asOf="2025-12-31T00:00:00Z")[1]

    # then: 49 + 1,200 / 12 = 149.00 a month, 1,788.00 a year; currencies kept apart; nothing before January
    assert status == 200, usd
    assert usd == {
        "object": "recurring_revenue",
        "currency": "USD",
        "asOf": "2026-02-01T00:00:00Z",
        "mrr": "149.00",
        "arr": "1788.00",
        "subscriptionCount": 2,
    }
    assert (euros["currency"], euros["mrr"], euros["arr"], euros["subscriptionCount"]) == ("EUR", "10.00", "120.00", 1)
    assert (before["mrr"], before["subscriptionCount"]) == ("0.00", 0)


@pytest.mark.django_db
def test_recurring_revenue_is_the_merchants_own(api, merchant, other_merchant):
    _subscribed(other_merchant, currency="USD", cadence="P1M", amount="49.00")

    assert api.get("/v0/revenue/recurring", asOf="2026-02-01T00:00:00Z")[1]["mrr"] == "0.00"
    assert api.get("/v0/revenue/recurring", merchantId=other_merchant.id)[0] == 403
    status, body = api.get("/v0/revenue/recurring", currency="DOLLARS")
    assert (status, body["errors"][0]["field"]) == (400, "currency")


@pytest.mark.django_db
def test_refunds_include_tax_while_net_revenue_subtracts_them_without(api, merchant):
    # given: $300.00 + 10 % tax ($330.00) invoiced on 5 January, $200.00 of it credited on the 12th with its
    # $20.00 tax
    subscription = account(merchant, tax_rate="10")
    invoice = issued(subscription, "300.00", tax_rate="10", now=JAN_1 + timedelta(days=4))
    line = invoice.lines.get(description="Line 1")
    note = credit_note_issue(invoice=invoice, now=JAN_1 + timedelta(days=11), amounts={line.pk: Decimal("200.00")})
    assert (note.subtotal, note.tax, note.total) == (Decimal("200.00"), Decimal("20.00"), Decimal("220.00"))

    # when
    status, body = api.get("/v0/revenue", bucketWidth="week", **WINDOW)

    # then: totalRefunds is the credit note with its tax (220.00); netRevenue is billed less refunds, both net
    # of tax: 300.00 − 200.00 = 100.00, and the trend's buckets sum to it
    assert status == 200, body
    assert (body["totalRefunds"], body["refundCount"], body["netRevenue"]) == ("220.00", 1, "100.00")
    assert [(b["timestamp"][:10], b["revenue"]) for b in body["trend"][1:3]] == [
        ("2026-01-05", "300.00"),
        ("2026-01-12", "-200.00"),
    ]
    assert sum(Decimal(b["revenue"]) for b in body["trend"]) == Decimal("100.00")


def _cato_credited_in_january(merchant):
    """Cato, on plan Basic, invoiced $5.00 on 20 December and credited $1.00 of it on 14 January: only a
    credit note in January."""
    cato = SubscriptionFactory(
        merchant=merchant, customer__merchant=merchant, customer__name="Cato", plan__name="Basic"
    )
    invoice = issued(cato, "5.00", now=JAN_1 - timedelta(days=12))
    line = invoice.lines.get(description="Line 1")
    credit_note_issue(invoice=invoice, now=JAN_1 + timedelta(days=13), amounts={line.pk: Decimal("1.00")})
    return cato


def _queries(api, **query) -> tuple[dict, int]:
    reset_queries()  # the request empties the log as it starts: capture from an empty one
    with CaptureQueriesContext(connection) as queries:
        body = api.get("/v0/revenue", **query)[1]
    return body, len(queries.captured_queries)


@pytest.mark.django_db
def test_the_trend_breaks_each_bucket_down_by_group_and_a_refund_only_group_counts_under_other(api, merchant):
    # given: the books above (Acme $2.00 and Brio $1.00 invoiced the week of 5 January, Brio credited $0.40
    # the week of the 12th) and Cato, only credited $1.00 in January (the week of the 12th)
    _books(merchant)
    _cato_credited_in_january(merchant)

    # when
    body, grouped_queries = _queries(api, bucketWidth="week", groupBy="customer", **WINDOW)
    plain, plain_queries = _queries(api, bucketWidth="week", **WINDOW)

    # then: netRevenue 3.00 − 0.40 − 1.00 = 1.60; Cato, never invoiced in the window, is not ranked: its
    # refund counts under other, in the breakdown (nothing outstanding or paid) and in the trend
    assert body["netRevenue"] == "1.60", body
    assert [(g["groupLabel"], g["outstanding"]["amount"], g["paid"]["amount"]) for g in body["groupBreakdown"]] == [
        ("Acme", "0.00", "2.00"),
        ("Brio", "0.60", "0.00"),
        ("Other", "0.00", "0.00"),
    ]
    assert body["groupBreakdown"][2]["groupKey"] == "other"
    trend = [[(e["groupLabel"], e["revenue"], e["issuedInvoices"]) for e in b["groupBreakdown"]] for b in body["trend"]]
    assert trend[:3] == [
        [],
        [("Acme", "2.00", "2.00"), ("Brio", "1.00", "1.00")],
        [("Brio", "-0.40", "0.00"), ("Other", "-1.00", "0.00")],
    ]
    # each bucket's groups sum to its revenue, and the buckets to netRevenue
    for bucket in body["trend"]:
        assert sum(Decimal(e["revenue"]) for e in bucket["groupBreakdown"]) == Decimal(bucket["revenue"])
    # ungrouped buckets carry no breakdown; grouping costs no query more (no query per group or bucket)
    assert all("groupBreakdown" not in b for b in plain["trend"])
    assert (grouped_queries, plain_queries) == (QUERIES, QUERIES)


@pytest.mark.django_db
def test_the_trend_by_plan_folds_the_groups_beyond_the_top_four_into_other(api, merchant):
    # given: six plans, each invoiced once on 5 January: $6.00, $5.00, … $1.00
    for amount in range(6, 0, -1):
        subscription = SubscriptionFactory(
            merchant=merchant, customer__merchant=merchant, customer__name=f"C{amount}", plan__name=f"P{amount}"
        )
        issued(subscription, f"{amount}.00", now=JAN_1 + timedelta(days=4))

    # when
    body = api.get("/v0/revenue", bucketWidth="week", groupBy="plan", **WINDOW)[1]

    # then: P6…P3 shown, P2 + P1 = $3.00 under other, in the breakdown and in the week's trend
    assert [g["groupLabel"] for g in body["groupBreakdown"]] == ["P6", "P5", "P4", "P3", "Other"]
    assert [(e["groupLabel"], e["revenue"]) for e in body["trend"][1]["groupBreakdown"]] == [
        ("P6", "6.00"),
        ("P5", "5.00"),
        ("P4", "4.00"),
        ("P3", "3.00"),
        ("Other", "3.00"),
    ]

"""The home page's figures: revenue per month, usage per day, top customers, lists that need action."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from invoicing.models import BillingRunStatus, InvoiceStatus
from invoicing.services import credit_note_issue, credit_note_void
from reporting import selectors
from tests.factories import BillableMetricFactory, MetricFilterFactory, ProductFactory, SubscriptionFactory
from tests.invoicing.factories import record_usage
from tests.invoicing.receivables import account, issued

from .factories import BillingRunFactory, InvoiceFactory, WalletFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def test_revenue_is_issued_and_paid_subtotals_per_issue_month_in_one_currency():
    # given
    InvoiceFactory(issued_at=datetime(2026, 3, 2, tzinfo=UTC), subtotal=Decimal("100.00"), tax=Decimal("20.00"))
    InvoiceFactory(issued_at=datetime(2026, 3, 31, tzinfo=UTC), status=InvoiceStatus.PAID, subtotal=Decimal("5.50"))
    InvoiceFactory(issued_at=datetime(2026, 1, 10, tzinfo=UTC), subtotal=Decimal("40.00"))
    InvoiceFactory(issued_at=datetime(2025, 4, 1, tzinfo=UTC), subtotal=Decimal("7.00"))  # 12th month back
    InvoiceFactory(issued_at=datetime(2025, 3, 31, tzinfo=UTC), subtotal=Decimal("999"))  # 13 months back
    InvoiceFactory(issued_at=datetime(2026, 3, 3, tzinfo=UTC), status=InvoiceStatus.VOID, subtotal=Decimal("999"))
    InvoiceFactory(issued_at=None, status=InvoiceStatus.DRAFT, subtotal=Decimal("999"))
    InvoiceFactory(issued_at=datetime(2026, 3, 3, tzinfo=UTC), currency="EUR", subtotal=Decimal("999"))

    # when
    months = selectors.revenue_by_month(currency="USD", now=NOW)

    # then
    assert [m.month for m in months] == [date(2025, 4, 1)] + [date(2025, m, 1) for m in range(5, 13)] + [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    amounts = {m.month: m.amount for m in months}
    assert amounts[date(2026, 3, 1)] == Decimal("105.50")
    assert amounts[date(2026, 2, 1)] == Decimal("0")
    assert amounts[date(2026, 1, 1)] == Decimal("40.00")
    assert amounts[date(2025, 4, 1)] == Decimal("7.00")
    assert sum(amounts.values()) == Decimal("152.50")


def test_invoice_currencies_lists_each_currency_once_without_voided_only_ones():
    InvoiceFactory(currency="USD")
    InvoiceFactory(currency="EUR")
    InvoiceFactory(currency="USD")
    InvoiceFactory(currency="GBP", status=InvoiceStatus.VOID)

    assert selectors.invoice_currencies() == ["EUR", "USD"]


def test_usage_by_day_aggregates_each_metric_per_utc_day_as_billing_does():
    # given: a SUM metric with a filter and a COUNT metric on one product
    product = ProductFactory()
    tokens = BillableMetricFactory(
        product=product, merchant=product.merchant, name="Tokens", aggregation="SUM", value_property="$.tokens"
    )
    MetricFilterFactory(metric=tokens, property_path="$.model", operator="eq", values=["large"])
    calls = BillableMetricFactory(
        product=product, merchant=product.merchant, name="Calls", aggregation="COUNT", event_type="api.call"
    )
    customer = SubscriptionFactory(plan__product=product, plan__merchant=product.merchant).customer
    record_usage(customer, tokens, datetime(2026, 3, 15, 0, 0, tzinfo=UTC), 10, model="large")
    record_usage(customer, tokens, datetime(2026, 3, 15, 11, 59, tzinfo=UTC), 5, model="large")
    record_usage(customer, tokens, datetime(2026, 3, 15, 11, 0, tzinfo=UTC), 1000, model="small")  # filtered out
    record_usage(customer, tokens, datetime(2026, 2, 14, 23, 59, tzinfo=UTC), 7, model="large")  # first day
    record_usage(customer, tokens, datetime(2026, 2, 13, 23, 59, tzinfo=UTC), 999, model="large")  # before
    record_usage(customer, calls, datetime(2026, 3, 1, 8, 0, tzinfo=UTC), 1)
    record_usage(customer, calls, datetime(2026, 3, 1, 9, 0, tzinfo=UTC), 1)

    # when
    usage = selectors.usage_by_day(product_id=product.pk, now=NOW)

    # then
    assert len(usage.days) == 30
    assert (usage.days[0], usage.days[-1]) == (date(2026, 2, 14), date(2026, 3, 15))
    by_name = {item.metric.name: dict(zip(usage.days, item.values, strict=True)) for item in usage.metrics}
    assert [item.metric.name for item in usage.metrics] == ["Calls", "Tokens"]
    assert by_name["Tokens"][date(2026, 3, 15)] == Decimal("15")
    assert by_name["Tokens"][date(2026, 2, 14)] == Decimal("7")
    assert sum(by_name["Tokens"].values()) == Decimal("22")
    assert by_name["Calls"][date(2026, 3, 1)] == Decimal("2")
    assert sum(by_name["Calls"].values()) == Decimal("2")
    assert usage.more_metrics is False


def test_usage_by_day_charts_at_most_the_first_metrics_by_name(django_assert_num_queries):
    product = ProductFactory()
    for index in range(selectors.MAX_USAGE_METRICS + 2):
        BillableMetricFactory(product=product, merchant=product.merchant, name=f"Metric {index}")

    # metrics, their filters, one aggregation per charted metric
    with django_assert_num_queries(2 + selectors.MAX_USAGE_METRICS):
        usage = selectors.usage_by_day(product_id=product.pk, now=NOW)

    assert [item.metric.name for item in usage.metrics] == [f"Metric {i}" for i in range(selectors.MAX_USAGE_METRICS)]
    assert usage.more_metrics is True


def test_top_customers_rank_open_draft_totals_per_customer():
    big = SubscriptionFactory(customer__name="Big")
    small = SubscriptionFactory(customer__name="Small")
    InvoiceFactory(subscription=big, status=InvoiceStatus.DRAFT, subtotal=Decimal("300"))
    InvoiceFactory(subscription=big, status=InvoiceStatus.DRAFT, subtotal=Decimal("20.25"))
    InvoiceFactory(subscription=small, status=InvoiceStatus.DRAFT, subtotal=Decimal("100"))
    InvoiceFactory(subscription=small, status=InvoiceStatus.ISSUED, subtotal=Decimal("9999"))  # not open
    InvoiceFactory(subscription=small, status=InvoiceStatus.DRAFT, currency="EUR", subtotal=Decimal("9999"))
    for index in range(11):
        InvoiceFactory(
            subscription__customer__name=f"Tiny {index:02d}", status=InvoiceStatus.DRAFT, subtotal=Decimal("1")
        )

    top = selectors.top_customers_by_open_drafts(currency="USD")

    assert len(top) == 10
    assert [(row.customer_name, row.amount, row.invoices) for row in top[:3]] == [
        ("Big", Decimal("320.25"), 2),
        ("Small", Decimal("100"), 1),
        ("Tiny 00", Decimal("1"), 1),
    ]


def test_past_due_means_issued_unpaid_and_the_payment_term_has_passed():
    # given: due date = issue date + the subscription's payment term (as the invoice document prints it)
    due_yesterday = InvoiceFactory(
        issued_at=NOW - timedelta(days=31), subscription__payment_term_days=30, subtotal=Decimal("1")
    )
    due_in_an_hour = InvoiceFactory(
        issued_at=NOW - timedelta(days=30) + timedelta(hours=1), subscription__payment_term_days=30
    )
    due_on_issue = InvoiceFactory(issued_at=NOW - timedelta(minutes=1), subscription__payment_term_days=0)
    InvoiceFactory(issued_at=NOW - timedelta(days=90), status=InvoiceStatus.PAID)
    InvoiceFactory(issued_at=NOW - timedelta(days=90), status=InvoiceStatus.VOID)

    # when
    past_due = list(selectors.invoices_past_due(now=NOW))

    # then
    assert past_due == [due_yesterday, due_on_issue]
    assert past_due[0].due_at == NOW - timedelta(days=1)
    assert due_in_an_hour not in past_due


def test_needs_action_lists_first_rows_and_says_when_there_are_more():
    drafts = [
        InvoiceFactory(status=InvoiceStatus.DRAFT, issued_at=None, grace_ends_at=NOW + timedelta(hours=h))
        for h in (5, 1, 3)
    ]
    BillingRunFactory(status=BillingRunStatus.FAILED, invoices_failed=2)
    BillingRunFactory(status=BillingRunStatus.SUCCEEDED)
    low = WalletFactory(balance=Decimal("5"), low_balance_threshold=Decimal("10"))
    WalletFactory(balance=Decimal("10"), low_balance_threshold=Decimal("10"))  # at the threshold: fine
    WalletFactory(balance=Decimal("-5"), low_balance_threshold=None)  # no threshold

    found = selectors.needs_action(now=NOW, limit=2)

    assert found["drafts"].rows == [drafts[1], drafts[2]]
    assert found["drafts"].has_more is True
    assert [run.invoices_failed for run in found["failed_runs"].rows] == [2]
    assert found["failed_runs"].has_more is False
    assert [wallet.pk for wallet in found["low_balances"].rows] == [low.pk]
    assert found["past_due"].rows == []


def test_usage_by_day_reads_today_live_and_closed_days_from_the_cache(django_assert_num_queries):
    # given: a first load has cached the closed days
    product = ProductFactory()
    calls = BillableMetricFactory(product=product, merchant=product.merchant, name="Calls", aggregation="COUNT")
    customer = SubscriptionFactory(plan__product=product, plan__merchant=product.merchant).customer
    record_usage(customer, calls, datetime(2026, 3, 10, 8, 0, tzinfo=UTC), 1)
    selectors.usage_by_day(product_id=product.pk, now=NOW)

    # when: a late event for a closed day and a new one for today arrive
    record_usage(customer, calls, datetime(2026, 3, 10, 9, 0, tzinfo=UTC), 1)
    record_usage(customer, calls, datetime(2026, 3, 15, 9, 0, tzinfo=UTC), 1)
    with django_assert_num_queries(3):  # metrics, filters, today's aggregation
        usage = selectors.usage_by_day(product_id=product.pk, now=NOW)

    # then: today is live; the closed day shows the late event once its cache entry expires
    values = dict(zip(usage.days, usage.metrics[0].values, strict=True))
    assert values[date(2026, 3, 15)] == Decimal("1")
    assert values[date(2026, 3, 10)] == Decimal("1")
    from django.core.cache import cache

    cache.clear()
    values = dict(
        zip(usage.days, selectors.usage_by_day(product_id=product.pk, now=NOW).metrics[0].values, strict=True)
    )
    assert values[date(2026, 3, 10)] == Decimal("2")


def test_revenue_is_net_of_issued_credit_notes_by_their_issue_month():
    # given: invoices in January and March, credit notes in March (one voided) and one in EUR
    subscription = account(SubscriptionFactory().merchant)
    january = issued(subscription, "100.00", now=datetime(2026, 1, 10, tzinfo=UTC))
    issued(subscription, "50.00", now=datetime(2026, 3, 2, tzinfo=UTC))
    line = january.lines.get(description="Line 1")
    credit_note_issue(invoice=january, now=datetime(2026, 3, 5, tzinfo=UTC), amounts={line.pk: Decimal("30.00")})
    voided = credit_note_issue(
        invoice=january, now=datetime(2026, 3, 6, tzinfo=UTC), amounts={line.pk: Decimal("20.00")}
    )
    credit_note_void(credit_note=voided, now=datetime(2026, 3, 7, tzinfo=UTC))

    # when
    amounts = {m.month: m.amount for m in selectors.revenue_by_month(currency="USD", now=NOW)}

    # then
    assert amounts[date(2026, 1, 1)] == Decimal("100.00")
    assert amounts[date(2026, 3, 1)] == Decimal("20.00")  # 50 invoiced − 30 credited
    assert sum(amounts.values()) == Decimal("120.00")

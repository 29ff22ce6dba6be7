"""A price with rates per model bills one invoice line per model, each explained and rounded once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from invoicing import documents
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_9 = datetime(2026, 1, 9, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)

RATES = {
    "dimensions": ["model"],
    "unmatched": "default",
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001", "freeUnits": "1000"},
        {
            "values": {"model": "nle-large"},
            "model": "graduated",
            "tiers": [{"upTo": "1000000", "unitPrice": "0.000004"}, {"upTo": None, "unitPrice": "0.000003"}],
        },
    ],
}


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", currency="USD")
    metered_price(plan, "0.000002", name="Input tokens", dimensional_rates=RATES)
    return plan


def _subscribe(plan, name):
    customer = CustomerFactory(merchant=plan.merchant, name=name)
    subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    return customer


def test_each_model_is_its_own_line_and_the_lines_add_up(plan):
    # given 3,000 small (1,000 free), 1,000,000 + 500,000 large and 5,000 of a model without its own rate
    customer = _subscribe(plan, "Acme Corp")
    metric = plan.prices.get().billable_metric
    record_usage(customer, metric, JAN_9, 3000, model="nle-small")
    record_usage(customer, metric, JAN_9, 1_000_000, model="nle-large")
    record_usage(customer, metric, JAN_9, 500_000, model="nle-large")
    record_usage(customer, metric, JAN_9, 5000, model="nle-xl")
    # when
    billing_run_execute(as_of=FEB_1)
    # then 0.002 → $0.00; 4 + 1.5 → $5.50; 5,000 × 0.000002 = 0.01 → $0.01
    invoice = Invoice.objects.get(customer=customer, kind=InvoiceKind.RECURRING)
    lines = list(invoice.lines.filter(kind=LineKind.USAGE).order_by("position", "pk"))
    assert [(line.description.split(":")[0], line.amount) for line in lines] == [
        ("Input tokens — model=nle-small", Decimal("0.00")),
        ("Input tokens — model=nle-large", Decimal("5.50")),
        ("Input tokens — other values", Decimal("0.01")),
    ]
    assert lines[1].explanation["dimensions"] == {"model": "nle-large"}
    assert lines[1].explanation["text"] == (
        "0–1,000,000 tokens × $0.000004 = $4.00; 1,000,000–1,500,000 tokens × $0.000003 = $1.50"
    )
    assert lines[2].explanation["unmatchedValues"] == [{"model": "nle-xl"}]
    assert invoice.subtotal == Decimal("5.51")
    html = documents.invoice_html(invoice)
    assert "Input tokens — model=nle-large" in html
    assert "1,000,000–1,500,000 tokens × $0.000003 = $1.50" in html


def test_a_customer_without_usage_gets_one_zero_line(plan):
    customer = _subscribe(plan, "Quiet Ltd")
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(customer=customer, kind=InvoiceKind.RECURRING)
    (line,) = invoice.lines.filter(kind=LineKind.USAGE)
    assert line.amount == 0 and line.description.startswith("Input tokens: 0 tokens")


def test_the_run_reads_dimensional_usage_in_one_query_for_all_customers(plan):
    metric = plan.prices.get().billable_metric
    for n in range(3):
        customer = _subscribe(plan, f"Customer {n}")
        record_usage(customer, metric, JAN_9, 1_000_000 * (n + 1), model="nle-large")
    with CaptureQueriesContext(connection) as queries:
        billing_run_execute(as_of=FEB_1)
    grouped = [q["sql"] for q in queries.captured_queries if "usage" in q["sql"].lower() and "GROUP BY" in q["sql"]]
    assert len(grouped) == 1, grouped
    amounts = sorted(i.subtotal for i in Invoice.objects.filter(kind=InvoiceKind.RECURRING))
    assert amounts == [Decimal("4.00"), Decimal("7.00"), Decimal("10.00")]  # 1M at 4e-6, then 3e-6

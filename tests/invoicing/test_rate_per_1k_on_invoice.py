"""A price shown per 1K units reads the same on the invoice page, its HTML and its stored explanation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import RatePer
from invoicing import documents
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def invoice(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", currency="USD")
    price = metered_price(plan, "0.000006", name="Output tokens", rate_per=RatePer.THOUSAND)
    customer = CustomerFactory(merchant=seller, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, price.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_500_000)
    billing_run_execute(as_of=FEB_1)
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)


def test_usage_line_explains_the_rate_per_1k_and_keeps_the_per_unit_rate(invoice):
    line = invoice.lines.get(kind=LineKind.USAGE)

    assert line.amount == Decimal("9.00")
    assert line.unit_price == Decimal("0.000006")
    assert line.explanation["lines"][0]["description"] == "1,500,000 tokens × $0.006 per 1K = $9.00"
    assert line.explanation["lines"][0]["unit_price"] == "0.000006"


def test_invoice_html_prints_the_rate_per_1k(invoice):
    html = documents.invoice_html(invoice)

    assert "1,500,000 tokens × $0.006 per 1K = $9.00" in html

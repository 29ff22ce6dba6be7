"""Fee lines explain themselves like usage lines: quantity × rate, then the days billed (proration)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import PaymentTerm
from invoicing import documents
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_10 = datetime(2026, 1, 10, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro", currency="USD", billing_anchor=JAN_1)
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee")
    return plan


def _fee_line(invoice: Invoice) -> dict:
    return next(
        line for line in documents.invoice_context(invoice)["lines"] if line["description"].startswith("Platform")
    )


def test_a_full_period_fee_shows_quantity_rate_and_days(seller, plan):
    customer = CustomerFactory(merchant=seller, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)

    line = _fee_line(invoice)

    assert line["quantity"] == Decimal("1")
    assert line["breakdown"] == ["1 unit × $49.00 = $49.00", "28 of 28 days = $49.00"]
    html = documents.invoice_html(invoice)
    assert "1 unit × $49.00 = $49.00<br>28 of 28 days = $49.00<br>" in html
    assert "Usage and fee lines show how each amount was computed" in html


def test_a_prorated_fee_shows_the_fraction_of_days_and_its_amount(seller, plan):
    customer = CustomerFactory(merchant=seller, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_10, now=JAN_10)
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)

    stored = opening.lines.get(kind=LineKind.FEE)
    line = _fee_line(opening)

    assert stored.amount == Decimal("34.77")  # 49 × 22/31 = 34.774…
    assert stored.explanation["proration"] == {
        "covered_days": 22,
        "period_days": 31,
        "amount": "34.77",
        "description": "Prorated 22 of 31 days: $49.00 × 22/31 = $34.77",
    }
    assert line["breakdown"] == ["1 unit × $49.00 = $49.00", "Prorated 22 of 31 days: $49.00 × 22/31 = $34.77"]


def test_an_older_fee_line_without_the_text_still_shows_its_days():
    assert documents.breakdown_of({"lines": [], "proration": {"covered_days": 31, "period_days": 31}}) == [
        "Prorated 31 of 31 days"
    ]

"""A real-time subscription's debits use the customer's negotiated rate in the periods its window covers and the
plan price after it: March at $0.002 per token (the rate, until April 1), April at the plan's $0.003."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import BillingMode
from catalog.services import price_create
from tests.factories import MeteredPriceFactory, PlanFactory, SubscriptionFactory
from wallets.models import EntryKind, LedgerEntry

from .conftest import APRIL, MARCH, balance, fund, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def windowed(product, tokens, customer):
    plan = PlanFactory(product=product, merchant=product.merchant, name="Prepaid", billing_mode=BillingMode.REAL_TIME)
    plan_price = MeteredPriceFactory(plan=plan, billable_metric=tokens, unit_price=Decimal("0.003"))
    price_create(
        merchant=product.merchant,
        fields={
            "plan": plan,
            "billable_metric": tokens,
            "invoice_display_name": "Tokens",
            "unit_price": Decimal("0.002"),
            "customer": customer,
            "overrides": plan_price,
            "effective_from": MARCH,
            "effective_until": APRIL,
        },
    )
    return SubscriptionFactory(
        plan=plan, merchant=customer.merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH
    )


def test_debits_use_the_windowed_rate_then_the_plan_price(customer, windowed):
    fund(customer, "100")

    send(customer, 1000)  # March 10: 1,000 × 0.002 = 2.00
    april = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
    send(customer, 1000, now=april, at=april)  # April 10: 1,000 × 0.003 = 3.00

    entries = LedgerEntry.objects.filter(wallet__customer=customer, kind=EntryKind.USAGE_DEBIT).order_by("sequence")
    assert [(-e.amount, e.period_start) for e in entries] == [(Decimal("2"), MARCH), (Decimal("3"), APRIL)]
    assert balance(customer) == Decimal("95")

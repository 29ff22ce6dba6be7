"""Real-time debits of a price with rates per model: each request debits the increment of every
combination it touches, exactly as the invoice rates them, so the debits add up to the invoice lines."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest

from catalog.models import BillingMode
from invoicing.models import Invoice, InvoiceKind, LineKind, RealtimeUsageCounter
from invoicing.realtime import events_ingest_and_debit
from invoicing.services import billing_run_execute
from metering.selectors import usage_aggregate_by_customer_and_values
from tests.factories import CustomerFactory, MeteredPriceFactory, PlanFactory, SubscriptionFactory
from wallets.models import EntryKind, LedgerEntry

from .conftest import APRIL, MARCH, event, fund

pytestmark = pytest.mark.django_db

CLOSE = APRIL + timedelta(hours=1)
RATES = {
    "dimensions": ["model"],
    "unmatched": "default",
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.0013", "freeUnits": "100"},
        {
            "values": {"model": "nle-large"},
            "model": "graduated",
            "tiers": [{"upTo": "1000", "unitPrice": "0.0107"}, {"upTo": None, "unitPrice": "0.0051", "flatFee": "0.5"}],
        },
    ],
}


@pytest.fixture
def dimensional_subscription(customer, product, tokens):
    return subscribe_per_model(customer, product, tokens)


def subscribe_per_model(customer, product, tokens):
    """A real-time subscription since March 1 to a plan whose token price has the rates per model above."""
    plan = PlanFactory(product=product, merchant=product.merchant, name="Per model", billing_mode=BillingMode.REAL_TIME)
    MeteredPriceFactory(
        plan=plan,
        billable_metric=tokens,
        unit_price=Decimal("0.003"),
        invoice_display_name="Tokens",
        dimensional_rates=RATES,
    )
    return SubscriptionFactory(
        plan=plan, merchant=customer.merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH
    )


def _send(customer, items, at):
    raw = []
    for model, tokens_used in items:
        item = event(customer, tokens_used, at=at)
        if model is not None:
            item["data"]["model"] = model
        raw.append(item)
    return events_ingest_and_debit(merchant=customer.merchant, raw_events=raw, now=at + timedelta(minutes=1))


def _counted(customer) -> dict:
    row = RealtimeUsageCounter.objects.get(customer=customer, window_start=MARCH, window_end=APRIL)
    return {tuple(values): Decimal(quantity) for values, quantity in row.combinations["usage"]}


def _debited(subscription) -> Decimal:
    entries = LedgerEntry.objects.filter(kind=EntryKind.USAGE_DEBIT, subscription=subscription)
    return -sum((entry.amount for entry in entries), Decimal(0))


def test_a_request_debits_each_models_increment(customer, dimensional_subscription):
    fund(customer, "100")
    at = MARCH + timedelta(days=3)
    # 300 small (100 free) = 0.26; 1,200 large = 1,000 × 0.0107 + 200 × 0.0051 + 0.5 = 12.22; 10 other × 0.003
    outcome = _send(customer, [("nle-small", 300), ("nle-large", 1200), ("nle-xl", 10)], at)
    assert [d.amount for d in outcome.debits] == [Decimal("12.51")]
    assert outcome.debits[0].usage_after == Decimal(1510)


@pytest.mark.parametrize("tier_scope", ["combination", "metric"])
@pytest.mark.parametrize("seed", range(6))
def test_random_requests_telescope_to_the_invoice_lines(customer, dimensional_subscription, tokens, seed, tier_scope):
    # given either tier scope, and a random sequence of requests over three models (one unmatched, one
    # missing the property) and values the running counter takes (a boolean, an integer) or leaves to the
    # aggregate (a float)
    price = dimensional_subscription.plan.prices.get()
    price.dimensional_rates = {**RATES, "tierScope": tier_scope}
    price.save(update_fields=["dimensional_rates"])
    fund(customer, "1000")
    rng = random.Random(seed)
    at = MARCH + timedelta(days=2)
    models = ["nle-small", "nle-large", "nle-xl", None, True, 7, 2.5]
    for number in range(rng.randint(3, 12)):
        items = [(rng.choice(models), rng.randint(0, 900)) for _ in range(rng.randint(1, 4))]
        _send(customer, items, at + timedelta(hours=number))
        # the counter kept for the next request is the grouped aggregate of the stored events
        assert (
            _counted(customer)
            == usage_aggregate_by_customer_and_values(
                metric=tokens, start=MARCH, end=APRIL, customers=[customer], paths=("$.model",)
            )[customer.pk]
        )
    # when March is closed
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    invoice = Invoice.objects.get(subscription=dimensional_subscription, kind=InvoiceKind.RECURRING, period_start=MARCH)
    usage = list(invoice.lines.filter(kind=LineKind.USAGE))
    # then the debits add up to the exact (unrounded) amounts of the per-model lines
    exact = sum((Decimal(line.explanation["amount"]) for line in usage if "amount" in line.explanation), Decimal(0))
    assert _debited(dimensional_subscription) == exact
    assert all(line.explanation.get("dimensions") or "unmatchedValues" in line.explanation for line in usage)
    assert invoice.lines.filter(kind=LineKind.PREPAID).exists()


def test_another_plans_refusing_price_refuses_only_its_own_customers(
    customer, product, tokens, dimensional_subscription
):
    # given a second real-time plan whose price refuses models it has no rate for, and a customer on it
    strict_plan = PlanFactory(
        product=product, merchant=product.merchant, name="Strict", billing_mode=BillingMode.REAL_TIME
    )
    MeteredPriceFactory(
        plan=strict_plan,
        billable_metric=tokens,
        unit_price=Decimal("0.003"),
        invoice_display_name="Strict tokens",
        dimensional_rates={**RATES, "unmatched": "refuse"},
    )
    strict = CustomerFactory(merchant=customer.merchant, name="Strict Co", time_zone="UTC")
    strict_subscription = SubscriptionFactory(
        plan=strict_plan, merchant=customer.merchant, customer=strict, started_at=MARCH, billing_anchor=MARCH
    )
    fund(customer, "100")
    fund(strict, "100")
    # when both send 10 tokens of a model neither plan names, in one request
    outcome = _send_many([(customer, "nle-xl", 10), (strict, "nle-xl", 10)], MARCH + timedelta(days=3))
    # then the per-model plan's customer is debited at its own rate (10 × 0.003 = 0.03); the strict one refused
    assert [result.status for result in outcome.results] == ["accepted", "rejected"]
    assert [error["field"] for error in outcome.results[1].errors] == ["data.model"]
    assert "has no rate on the price “Strict tokens”" in outcome.results[1].errors[0]["message"]
    assert _debited(dimensional_subscription) == Decimal("0.03")
    assert _debited(strict_subscription) == Decimal(0)


def _send_many(items, at):
    raw = []
    for who, model, tokens_used in items:
        item = event(who, tokens_used, at=at)
        item["data"]["model"] = model
        raw.append(item)
    return events_ingest_and_debit(merchant=items[0][0].merchant, raw_events=raw, now=at + timedelta(minutes=1))

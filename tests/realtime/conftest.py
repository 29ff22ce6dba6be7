"""Fixtures for real-time billing: a fixed clock in March 2026, a real-time plan priced by tokens
(graduated: 1,000 at 0.01, then 0.005), a customer subscribed since March 1 and helpers that send events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import BillingMode, PriceModel
from invoicing.realtime import events_ingest_and_debit
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    MeteredPriceFactory,
    PlanFactory,
    PriceTierFactory,
    ProductFactory,
    SubscriptionFactory,
)
from wallets.models import Wallet
from wallets.services import credit_grant, wallet_policy_update

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
EVENT_TYPE = "tokens.used"
_keys = itertools.count(1)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def product(merchant):
    return ProductFactory(merchant=merchant, name="Inference API")


@pytest.fixture
def tokens(product):
    return BillableMetricFactory(
        product=product, merchant=product.merchant, name="Tokens", event_type=EVENT_TYPE, value_property="$.tokens"
    )


def graduated_price(plan, metric):
    price = MeteredPriceFactory(
        plan=plan, billable_metric=metric, model=PriceModel.GRADUATED, unit_price=None, invoice_display_name="Tokens"
    )
    PriceTierFactory(price=price, up_to=Decimal(1000), unit_price=Decimal("0.01"))
    PriceTierFactory(price=price, up_to=None, unit_price=Decimal("0.005"))
    return price


@pytest.fixture
def real_time_plan(product, tokens):
    plan = PlanFactory(product=product, merchant=product.merchant, name="Prepaid", billing_mode=BillingMode.REAL_TIME)
    graduated_price(plan, tokens)
    return plan


@pytest.fixture
def customer(merchant):
    return CustomerFactory(merchant=merchant, name="Acme AI", currency="USD", time_zone="UTC")


@pytest.fixture
def subscription(customer, real_time_plan):
    return SubscriptionFactory(
        plan=real_time_plan, merchant=customer.merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH
    )


def event(customer, tokens_used, *, key: str | None = None, at: datetime = NOW) -> dict:
    return {
        "type": EVENT_TYPE,
        "source": "https://api.example/test",
        "subject": customer.pk,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "idempotencyKey": key or f"rt-test-{next(_keys)}",
        "data": {"tokens": tokens_used},
    }


def send(customer, *tokens_used, now: datetime = NOW, at: datetime | None = None, keys=None):
    """Send one request with an event per value, stamped ``at`` (default: March 10, before ``now``)."""
    keys = keys or [None] * len(tokens_used)
    at = at or min(now, NOW)
    return events_ingest_and_debit(
        merchant=customer.merchant,
        raw_events=[event(customer, value, key=key, at=at) for value, key in zip(tokens_used, keys, strict=True)],
        now=now,
    )


def fund(customer, amount: str, *, policy: str = "allow_overage", now: datetime = NOW, **thresholds) -> Wallet:
    wallet_policy_update(customer=customer, currency="USD", policy=policy, now=now, **thresholds)
    credit_grant(
        customer=customer, currency="USD", amount=Decimal(amount), idempotency_key=f"fund-{next(_keys)}", now=now
    )
    return Wallet.objects.get(customer=customer, currency="USD")


def balance(customer) -> Decimal:
    return Wallet.objects.get(customer=customer, currency="USD").balance


@pytest.fixture(autouse=True)
def _period_debit_totals_match_the_ledger(request):
    """After every real-time test: each running total (``PeriodDebitTotal``, what usageCost reads) is
    exactly the sum of its ledger entries, and no debited period segment lacks one."""
    yield
    uses_database = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(
        request.fixturenames
    )
    if not uses_database:
        return
    from wallets.models import EntryKind, LedgerEntry, PeriodDebitTotal

    expected: dict[tuple, list] = {}
    for sub, start, end, amount, overage in LedgerEntry.objects.filter(
        kind=EntryKind.USAGE_DEBIT, subscription__isnull=False, period_start__isnull=False
    ).values_list("subscription_id", "period_start", "period_end", "amount", "overage_amount"):
        total = expected.setdefault((sub, start, end), [Decimal(0), Decimal(0), 0])
        total[0] -= amount
        total[1] += overage
        total[2] += 1
    stored = {
        (t.subscription_id, t.period_start, t.period_end): [t.debited, t.overage, t.entries]
        for t in PeriodDebitTotal.objects.all()
    }
    assert stored == expected

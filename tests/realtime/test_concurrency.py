"""Many threads debiting one balance on PostgreSQL end at the exact price of the total usage."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from catalog.models import BillingMode
from catalog.pricing import rate
from catalog.pricing_adapter import price_spec_from_price
from invoicing.realtime import events_ingest_and_debit
from metering.models import UsageEvent
from tests.factories import CustomerFactory, MerchantFactory, PlanFactory, ProductFactory, SubscriptionFactory
from tests.wallets.conftest import assert_ledger_consistent
from wallets.models import Wallet

from .conftest import MARCH, NOW, event, fund, graduated_price

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def run_threads(count: int, target) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrapped(n):
        try:
            target(n)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _setup(policy: str, credit: str):
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    from tests.factories import BillableMetricFactory

    metric = BillableMetricFactory(product=product, merchant=merchant, event_type="tokens.used")
    plan = PlanFactory(product=product, merchant=merchant, billing_mode=BillingMode.REAL_TIME)
    price = graduated_price(plan, metric)
    customer = CustomerFactory(merchant=merchant, time_zone="UTC")
    SubscriptionFactory(plan=plan, merchant=merchant, customer=customer, started_at=MARCH)
    fund(customer, credit, policy=policy)
    return merchant, customer, price


def test_concurrent_events_on_one_balance_end_at_the_exact_price():
    merchant, customer, price = _setup("allow_overage", "100")

    # 16 threads × 5 requests (single events and batches of 3) of 37 tokens each cross the tier boundary
    def post(n):
        for round_ in range(5):
            values = [37] if round_ % 2 else [37, 37, 37]
            events_ingest_and_debit(merchant=merchant, raw_events=[event(customer, v) for v in values], now=NOW)

    assert run_threads(16, post) == []

    usage = Decimal(37) * UsageEvent.objects.filter(customer=customer).count()
    assert usage == Decimal(37 * 16 * (3 + 1 + 3 + 1 + 3))
    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer))
    assert Decimal(100) - wallet.balance == rate(price_spec_from_price(price), usage).amount


def test_concurrent_events_under_block_never_go_negative():
    merchant, customer, price = _setup("block", "5")

    # 12 threads each send 10 events of 10 tokens ($0.10): only 50 can be paid
    def post(n):
        for _ in range(10):
            events_ingest_and_debit(merchant=merchant, raw_events=[event(customer, 10)], now=NOW)

    assert run_threads(12, post) == []

    wallet = assert_ledger_consistent(Wallet.objects.get(customer=customer))
    assert wallet.balance == Decimal(0)
    assert UsageEvent.objects.filter(customer=customer).count() == 50

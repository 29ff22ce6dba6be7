"""Real-time debits of percentage and dynamic prices: each request debits rate(events after) − rate(events
before) of the period's events, so a period's debits add up to the invoice line's exact amount (per-event
fees, minimums and maximums, unit price clamps, free units and rate changes included)."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from catalog.models import BillingMode, DynamicMode, PriceModel
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.realtime import events_ingest_and_debit
from invoicing.services import billing_run_execute
from tests.factories import (
    BillableMetricFactory,
    DynamicRateFactory,
    MeteredPriceFactory,
    PlanFactory,
    SubscriptionFactory,
)
from wallets.models import EntryKind, LedgerEntry

from .conftest import APRIL, MARCH, balance, fund
from .test_hot_path import STATEMENTS

pytestmark = pytest.mark.django_db

CLOSE = APRIL + timedelta(hours=1)
PAYMENT = "payment.succeeded"
_keys = iter(range(1, 10**9))


@pytest.fixture
def payments(product):
    return BillableMetricFactory(
        product=product, merchant=product.merchant, name="Payments", event_type=PAYMENT, value_property="$.amount"
    )


def _plan(product):
    return PlanFactory(product=product, merchant=product.merchant, name="Usage", billing_mode=BillingMode.REAL_TIME)


def percentage_price(plan, metric, **terms):
    return MeteredPriceFactory(
        plan=plan,
        billable_metric=metric,
        model=PriceModel.PERCENTAGE,
        unit_price=None,
        percentage_rate=Decimal("0.029"),
        fixed_fee_per_event=Decimal("0.30"),
        invoice_display_name="Card fees",
        **terms,
    )


def schedule_price(plan, metric, **terms):
    price = MeteredPriceFactory(
        plan=plan,
        billable_metric=metric,
        model=PriceModel.DYNAMIC,
        dynamic_mode=DynamicMode.SCHEDULE,
        unit_price=None,
        invoice_display_name="Compute",
        **terms,
    )
    DynamicRateFactory(price=price, effective_from=MARCH, unit_price=Decimal("0.02"))
    DynamicRateFactory(price=price, effective_from=MARCH + timedelta(days=15), unit_price=Decimal("0.035"))
    return price


def event_price(plan, metric, **terms):
    return MeteredPriceFactory(
        plan=plan,
        billable_metric=metric,
        model=PriceModel.DYNAMIC,
        dynamic_mode=DynamicMode.EVENT_PRICE,
        event_price_property="$.unit_price",
        unit_price=None,
        min_unit_price=Decimal("0.01"),
        max_unit_price=Decimal("0.05"),
        invoice_display_name="Spot compute",
        **terms,
    )


def _subscribe(customer, plan):
    return SubscriptionFactory(
        plan=plan, merchant=customer.merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH
    )


def _event(customer, data, at):
    return {
        "type": PAYMENT,
        "source": "https://shop.example/test",
        "subject": customer.pk,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "idempotencyKey": f"pay-{next(_keys)}",
        "data": data,
    }


def _send(customer, items, at):
    raw = [_event(customer, data, at) for data in items]
    return events_ingest_and_debit(merchant=customer.merchant, raw_events=raw, now=at + timedelta(minutes=1))


def _debited(subscription) -> Decimal:
    entries = LedgerEntry.objects.filter(kind=EntryKind.USAGE_DEBIT, subscription=subscription)
    return -sum((entry.amount for entry in entries), Decimal(0))


def _invoice_line(subscription):
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=MARCH)
    return invoice, invoice.lines.get(kind=LineKind.USAGE)


def test_card_fees_are_debited_per_payment_and_add_up_to_the_invoice(customer, product, payments):
    # given 2.9 % + $0.30 per payment, debited in real time
    plan = _plan(product)
    percentage_price(plan, payments)
    subscription = _subscribe(customer, plan)
    fund(customer, "100")
    at = MARCH + timedelta(days=3)

    # when a $100 payment, then a $50 one arrive
    first = _send(customer, [{"amount": 100}], at)
    second = _send(customer, [{"amount": "50"}], at + timedelta(hours=1))

    # then each is debited its fee: 2.90 + 0.30, then 1.45 + 0.30
    assert [d.amount for d in first.debits] == [Decimal("3.2")]
    assert [d.amount for d in second.debits] == [Decimal("1.75")]
    assert second.debits[0].usage_before == Decimal(100) and second.debits[0].usage_after == Decimal(150)
    assert balance(customer) == Decimal("95.05")
    # and March's invoice bills $4.95 for them, all paid from the prepaid balance
    invoice, line = _invoice_line(subscription)
    assert line.amount == Decimal("4.95")
    assert invoice.lines.get(kind=LineKind.PREPAID).amount == Decimal("-4.95")
    assert invoice.amount_due == Decimal(0)


def test_per_payment_minimum_and_maximum_are_debited_with_the_payment(customer, product, payments):
    # given 2.9 % + $0.30, at least $0.50 and at most $2 a payment
    plan = _plan(product)
    percentage_price(plan, payments, min_charge_per_event=Decimal("0.50"), max_charge_per_event=Decimal("2"))
    subscription = _subscribe(customer, plan)
    fund(customer, "100")
    at = MARCH + timedelta(days=3)

    # when payments of $5 (0.445 → 0.50), $10 (0.59) and $200 (6.10 → 2) arrive in two requests
    first = _send(customer, [{"amount": 5}, {"amount": 10}], at)
    second = _send(customer, [{"amount": 200}], at + timedelta(hours=1))

    # then the bounds apply per payment, in the request that brings it
    assert [d.amount for d in first.debits] == [Decimal("1.09")]
    assert [d.amount for d in second.debits] == [Decimal("2")]
    _, line = _invoice_line(subscription)
    assert line.amount == Decimal("3.09")


def test_a_scheduled_rate_prices_each_event_at_its_time_after_the_free_units(customer, product, payments):
    # given compute at 0.02 until March 16, then 0.035, with the first 100 units free each period
    plan = _plan(product)
    schedule_price(plan, payments, free_units=Decimal(100))
    subscription = _subscribe(customer, plan)
    fund(customer, "100")

    # when 150 units are used on March 4 and 200 on March 20, sent in that order, then 50 more on March 5
    # sent late (they take free units from the earliest usage: none left, the March 4 ones took them)
    first = _send(customer, [{"amount": 150}], MARCH + timedelta(days=3))
    second = _send(customer, [{"amount": 200}], MARCH + timedelta(days=19))
    third = _send(customer, [{"amount": 50}], MARCH + timedelta(days=4))

    # then 50 × 0.02 = 1; 200 × 0.035 = 7; 50 × 0.02 = 1
    assert [d.amount for d in first.debits + second.debits + third.debits] == [Decimal(1), Decimal(7), Decimal(1)]
    _, line = _invoice_line(subscription)
    assert line.amount == Decimal(9)


def test_a_price_carried_on_each_event_is_clamped_and_debited(customer, product, payments):
    # given unit prices read from each event, kept between 0.01 and 0.05
    plan = _plan(product)
    event_price(plan, payments)
    subscription = _subscribe(customer, plan)
    fund(customer, "100")
    at = MARCH + timedelta(days=3)

    # when 100 units at 0.03, 100 at 0.2 (capped at 0.05) and 100 at "0.001" (raised to 0.01) arrive
    first = _send(customer, [{"amount": 100, "unit_price": 0.03}], at)
    second = _send(customer, [{"amount": 100, "unit_price": "0.2"}, {"amount": 100, "unit_price": "0.001"}], at)

    # then 3, then 5 + 1
    assert [d.amount for d in first.debits + second.debits] == [Decimal(3), Decimal(6)]
    _, line = _invoice_line(subscription)
    assert line.amount == Decimal(9)


def test_a_period_minimum_stays_on_the_invoice(customer, product, payments):
    # given card fees with a $10 minimum per period: rate(no payment) = 10 is not a usage debit
    plan = _plan(product)
    percentage_price(plan, payments, min_charge_per_period=Decimal(10))
    subscription = _subscribe(customer, plan)
    fund(customer, "100")
    at = MARCH + timedelta(days=3)

    # when $100 (3.20) then $300 (9.00) of payments arrive
    first = _send(customer, [{"amount": 100}], at)
    second = _send(customer, [{"amount": 300}], at)

    # then nothing is debited below the minimum, then what the payments add above it
    assert [d.amount for d in first.debits + second.debits] == [Decimal(0), Decimal("2.2")]
    invoice, line = _invoice_line(subscription)
    assert line.amount == Decimal("12.2")
    assert invoice.lines.get(kind=LineKind.PREPAID).amount == Decimal("-2.2")


PRICES = {"percentage": percentage_price, "schedule": schedule_price, "event_price": event_price}


def _random_item(rng: random.Random, kind: str) -> dict:
    amount = rng.choice([rng.randint(0, 500), f"{rng.randint(0, 9999)}.{rng.randint(0, 99):02d}"])
    data: dict = {"amount": amount}
    if rng.random() < 0.1:
        data = {"other": 1}  # no amount: not one of the price's events
    if kind == "event_price":
        data["unit_price"] = rng.choice([rng.randint(0, 1), f"0.0{rng.randint(0, 9)}{rng.randint(0, 9)}", 0.04])
    return data


@pytest.mark.parametrize("kind", sorted(PRICES))
@pytest.mark.parametrize("seed", range(4))
def test_random_requests_telescope_to_the_invoice_line(customer, product, payments, kind, seed):
    # given a random sequence of requests, out of time order, with per-event bounds and free units
    plan = _plan(product)
    terms = (
        {"min_charge_per_event": Decimal("0.5"), "max_charge_per_event": Decimal("20")}
        if kind == "percentage"
        else {"free_units": Decimal(300)}
    )
    subscription = _subscribe(customer, plan)
    PRICES[kind](plan, payments, **terms)
    fund(customer, "100000")
    rng = random.Random(seed)
    for _ in range(rng.randint(3, 10)):
        at = MARCH + timedelta(days=rng.randint(0, 29), minutes=rng.randint(0, 1000))
        _send(customer, [_random_item(rng, kind) for _ in range(rng.randint(1, 4))], at)
    # when March is closed
    _, line = _invoice_line(subscription)
    # then the debits add up to the line's exact (unrounded) amount
    assert _debited(subscription) == Decimal(line.explanation["amount"]) > 0


def test_a_payment_costs_no_more_statements_than_a_counted_price(
    customer, product, payments, django_assert_num_queries
):
    # given card fees, one payment already debited
    plan = _plan(product)
    percentage_price(plan, payments)
    _subscribe(customer, plan)
    fund(customer, "100")
    at = MARCH + timedelta(days=3)
    _send(customer, [{"amount": 100}], at)

    # when the next payment arrives: the period's payments are read where a running counter would be (one
    # statement, whose rows grow with the period's payments), the new one is added from its data (no
    # second read), and there is no counter to write (on SQLite one statement less)
    with django_assert_num_queries(STATEMENTS if connection.vendor == "postgresql" else STATEMENTS - 1):
        outcome = _send(customer, [{"amount": 50}], at)

    # then it is debited its fee
    assert [d.amount for d in outcome.debits] == [Decimal("1.75")]


def test_under_the_block_policy_the_payments_that_fit_are_kept(customer, product, payments):
    # given card fees and $4 of credit that may not be overdrawn
    plan = _plan(product)
    percentage_price(plan, payments)
    subscription = _subscribe(customer, plan)
    fund(customer, "4", policy="block")
    at = MARCH + timedelta(days=3)

    # when $100 (3.20), $50 (1.75) and $10 (0.59) arrive in one request
    outcome = _send(customer, [{"amount": 100}, {"amount": 50}, {"amount": 10}], at)

    # then the first and the third fit, one at a time, and the second is refused and not stored
    assert [result.status for result in outcome.results] == ["accepted", "rejected", "accepted"]
    assert [d.amount for d in outcome.debits] == [Decimal("3.2"), Decimal("0.59")]
    assert balance(customer) == Decimal("0.21")
    _, line = _invoice_line(subscription)
    assert line.amount == Decimal("3.79")


def test_payments_linked_later_are_caught_up_at_their_price(customer, product, payments):
    from invoicing.realtime import events_link_and_debit

    # given a $100 payment sent for an external id no customer had yet, then the customer gets it
    plan = _plan(product)
    percentage_price(plan, payments)
    at = MARCH + timedelta(days=3)
    early = _event(customer, {"amount": 100}, at)
    del early["subject"]
    early["externalSubject"] = "shop-42"
    events_ingest_and_debit(merchant=customer.merchant, raw_events=[early], now=at)
    customer.external_id = "shop-42"
    customer.save(update_fields=["external_id"])
    subscription = _subscribe(customer, plan)
    fund(customer, "100")

    # when a $50 payment is debited on top of it (1.75), then the early one is linked
    assert [d.amount for d in _send(customer, [{"amount": 50}], at).debits] == [Decimal("1.75")]
    linked = events_link_and_debit(now=at + timedelta(hours=1), merchant=customer.merchant)

    # then the catch-up is the rest of the price of both payments: 4.95 − 1.75
    assert [d.amount for d in linked.debits] == [Decimal("3.2")]
    _, line = _invoice_line(subscription)
    assert line.amount == Decimal("4.95") == _debited(subscription)


def test_a_price_the_database_may_read_differently_is_read_back(customer, product, payments):
    # given unit prices carried on events, one a float with 17 significant digits (SQLite keeps 15)
    plan = _plan(product)
    event_price(plan, payments)
    subscription = _subscribe(customer, plan)
    fund(customer, "100")
    at = MARCH + timedelta(days=3)

    # when it arrives between two plain ones
    _send(customer, [{"amount": 100, "unit_price": "0.02"}], at)
    _send(customer, [{"amount": 100, "unit_price": 0.012345678901234567}], at)
    _send(customer, [{"amount": 100, "unit_price": 3}], at)

    # then its request read the rows again as the database stores them: the debits still add up to the line
    # (at the ledger's 12 places: 100 × 0.0123456789012346 has 14)
    _, line = _invoice_line(subscription)
    assert _debited(subscription) == Decimal(line.explanation["amount"]).quantize(Decimal("1E-12"))
    assert Decimal("8.23") < _debited(subscription) < Decimal("8.24")

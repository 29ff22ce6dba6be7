"""Revenue, cost and margin per customer and per product, with figures worked by hand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from costs import margin, selectors
from invoicing.services import credit_note_issue
from tests.factories import FeePriceFactory, PlanFactory, SubscriptionFactory
from tests.invoicing.factories import record_usage
from tests.invoicing.receivables import issued

from .conftest import FEB_1, JAN_1, gpu_cost

pytestmark = pytest.mark.django_db


def _subscription(product, name):
    return SubscriptionFactory(
        merchant=product.merchant,
        customer__merchant=product.merchant,
        customer__name=name,
        plan__merchant=product.merchant,
        plan__product=product,
        started_at=JAN_1,
    )


def test_cost_is_quantity_times_unit_cost_over_a_half_open_period(gpu_product):
    # given: 600 + 400 GPU-seconds in January, one event at February's first instant (outside)
    cost = gpu_cost(gpu_product)
    customer = _subscription(gpu_product, "Acme").customer
    record_usage(customer, cost, JAN_1, 600, gpu="a100")
    record_usage(customer, cost, FEB_1 - timedelta(microseconds=1), 400, gpu="h100")
    record_usage(customer, cost, FEB_1, 10_000, gpu="a100")

    # when
    usage = selectors.cost_usage(cost=cost, start=JAN_1, end=FEB_1, group_by="gpu", window="DAY")

    # then: 1,000 s × $0.0005 = $0.50
    assert usage.total_quantity == Decimal("1000")
    assert usage.total_cost == Decimal("0.5")
    assert {tuple(g.dimensions.items()): (g.quantity, g.cost) for g in usage.groups} == {
        (("gpu", "a100"),): (Decimal("600"), Decimal("0.3")),
        (("gpu", "h100"),): (Decimal("400"), Decimal("0.2")),
    }
    assert [(w.window_start.day, w.cost) for w in usage.time_series] == [(1, Decimal("0.3")), (31, Decimal("0.2"))]


def test_margin_per_customer_and_product_is_revenue_net_of_credit_notes_less_cost(gpu_product):
    # given: Acme used 1,000 GPU-seconds ($0.50) and was invoiced $2.00 for January;
    # Brio used 200 GPU-seconds ($0.10), was invoiced $1.00 and credited $0.40.
    cost = gpu_cost(gpu_product)
    acme = _subscription(gpu_product, "Acme")
    brio = _subscription(gpu_product, "Brio")
    record_usage(acme.customer, cost, JAN_1 + timedelta(days=3), 1000, gpu="a100")
    record_usage(brio.customer, cost, JAN_1 + timedelta(days=4), 200, gpu="a100")
    issued(acme, "2.00", now=FEB_1)
    brio_invoice = issued(brio, "1.00", now=FEB_1)
    line = brio_invoice.lines.get(description="Line 1")
    credit_note_issue(invoice=brio_invoice, now=FEB_1 + timedelta(days=2), amounts={line.pk: Decimal("0.40")})

    # when: January's billing periods against January's usage
    result = margin.margins(
        currency="USD",
        start=JAN_1,
        end=FEB_1,
        merchant_ids=[gpu_product.merchant_id],
        basis=margin.BILLING_PERIOD_BASIS,
    )
    issued_in_february = margin.margins(currency="USD", start=FEB_1, end=FEB_1 + timedelta(days=28))

    # then
    rows = {r.name: (r.revenue, r.cost, r.profit, r.margin_pct) for r in result.by_customer}
    assert rows == {
        "Acme": (Decimal("2.00"), Decimal("0.50"), Decimal("1.50"), Decimal("75.00")),
        "Brio": (Decimal("0.60"), Decimal("0.10"), Decimal("0.50"), Decimal("83.33")),
    }
    assert [(r.name, r.revenue, r.cost, r.profit) for r in result.by_product] == [
        ("GPU cloud", Decimal("2.60"), Decimal("0.60"), Decimal("2.00"))
    ]
    assert (result.revenue, result.cost) == (Decimal("2.60"), Decimal("0.60"))
    # on the issue basis the invoices (and the credit note) count in February, when no GPU ran
    assert (issued_in_february.revenue, issued_in_february.cost) == (Decimal("2.60"), Decimal("0"))


def test_a_customer_with_cost_and_no_revenue_has_no_margin_percent(gpu_product):
    cost = gpu_cost(gpu_product)
    customer = _subscription(gpu_product, "Trial").customer
    record_usage(customer, cost, JAN_1, 3000, gpu="a100")

    [row] = margin.margins(currency="USD", start=JAN_1, end=FEB_1).by_customer

    assert (row.revenue, row.cost, row.profit, row.margin_pct) == (
        Decimal("0"),
        Decimal("1.50"),
        Decimal("-1.50"),
        None,
    )


def test_deleted_costs_and_costs_in_another_currency_do_not_count(gpu_product):
    customer = _subscription(gpu_product, "Acme").customer
    for cost in (gpu_cost(gpu_product, currency="EUR"), gpu_cost(gpu_product, deleted_at=JAN_1)):
        record_usage(customer, cost, JAN_1, 1000, gpu="a100")

    result = margin.margins(currency="USD", start=JAN_1, end=FEB_1)

    assert (result.by_customer, result.cost_count) == ([], 0)


def test_a_period_longer_than_a_year_is_refused(gpu_product):
    with pytest.raises(selectors.PeriodError):
        margin.margins(currency="USD", start=JAN_1, end=JAN_1 + timedelta(days=367))


@pytest.mark.parametrize("costs", [1, 3])
def test_margins_make_one_query_per_cost_whatever_the_data_size(gpu_product, costs, django_assert_num_queries):
    # given: many customers, invoices and events
    defined = [gpu_cost(gpu_product, name=f"GPU {n}") for n in range(costs)]
    for index in range(6):
        subscription = _subscription(gpu_product, f"Customer {index}")
        issued(subscription, "1.00", now=JAN_1 + timedelta(days=index))
        for cost in defined:
            record_usage(subscription.customer, cost, JAN_1, index + 1, gpu="a100")

    # then: revenue, costs, one per cost, customer names, product names
    with django_assert_num_queries(4 + costs):
        margin.margins(currency="USD", start=JAN_1, end=FEB_1)


def test_mrr_brings_each_recurring_fee_of_active_subscriptions_to_a_month(merchant):
    # given: $49 a month, $30 a quarter ($10 a month), $120 a year ($10 a month), and a $500 one-off fee
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, currency="USD", billing_cadence="P1M")
    for cadence, amount in (("P1M", "49.00"), ("P3M", "30.00"), ("P1Y", "120.00"), ("P0D", "500.00")):
        FeePriceFactory(plan=plan, billing_cadence=cadence, unit_price=Decimal(amount))
    now = FEB_1
    for _ in range(2):
        SubscriptionFactory(merchant=merchant, customer__merchant=merchant, plan=plan, started_at=JAN_1)
    # not counted: terminated, in trial, not started yet, another currency
    SubscriptionFactory(
        merchant=merchant, customer__merchant=merchant, plan=plan, started_at=JAN_1, terminated_at=JAN_1
    )
    SubscriptionFactory(
        merchant=merchant,
        customer__merchant=merchant,
        plan=plan,
        started_at=JAN_1,
        trial_ends_at=now + timedelta(days=1),
    )
    SubscriptionFactory(merchant=merchant, customer__merchant=merchant, plan=plan, started_at=now + timedelta(days=1))
    euro = PlanFactory(merchant=merchant, product__merchant=merchant, currency="EUR")
    FeePriceFactory(plan=euro, unit_price=Decimal("1000"))
    SubscriptionFactory(merchant=merchant, customer__merchant=merchant, plan=euro, started_at=JAN_1)

    # when
    recurring = margin.recurring_revenue(currency="USD", now=now, merchant_ids=[merchant.pk])

    # then: 2 × (49 + 10 + 10) = 138 a month, 1,656 a year
    assert (recurring.mrr, recurring.arr, recurring.subscriptions) == (Decimal("138.00"), Decimal("1656.00"), 2)

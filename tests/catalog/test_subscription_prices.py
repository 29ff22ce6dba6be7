"""Which prices bill a subscription: the plan's, with the customer's negotiated rates substituted."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from catalog.models import Price
from catalog.selectors import metric_filters_prefetch, prices_for_subscriptions, subscription_prices
from tests.factories import (
    CustomerFactory,
    DynamicPriceFactory,
    DynamicRateFactory,
    FeePriceFactory,
    MeteredPriceFactory,
    MetricFilterFactory,
    PlanFactory,
    PriceTierFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db


def test_negotiated_rate_replaces_the_plan_price_for_its_customer_only():
    # given an Enterprise plan with a token price and a platform fee
    plan = PlanFactory(name="Enterprise")
    tokens = MeteredPriceFactory(plan=plan, invoice_display_name="Input tokens", unit_price=Decimal("0.000002"))
    platform = FeePriceFactory(plan=plan, invoice_display_name="Platform fee")
    negotiating = SubscriptionFactory(plan=plan)
    other = SubscriptionFactory(plan=plan, customer=CustomerFactory(merchant=plan.merchant))
    # and a negotiated token rate for one customer
    negotiated = Price.objects.create(
        merchant=plan.merchant,
        plan=plan,
        billable_metric=tokens.billable_metric,
        customer=negotiating.customer,
        overrides=tokens,
        invoice_display_name="Input tokens (negotiated)",
        unit_price=Decimal("0.0000015"),
    )

    # when
    prices = prices_for_subscriptions([negotiating, other])

    # then
    assert {p.pk for p in prices[negotiating.pk]} == {negotiated.pk, platform.pk}
    assert {p.pk for p in prices[other.pk]} == {tokens.pk, platform.pk}
    assert [p.pk for p in subscription_prices(other)] == [p.pk for p in prices[other.pk]]


def test_many_subscriptions_cost_a_fixed_number_of_queries(django_assert_num_queries):
    plan = PlanFactory()
    MeteredPriceFactory(plan=plan)
    subscriptions = [SubscriptionFactory(plan=plan, customer=CustomerFactory(merchant=plan.merchant)) for _ in range(5)]

    # prices, tiers, dynamic rates; on PostgreSQL the prices' query brings the others (and metric filters)
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 3):
        prices = prices_for_subscriptions(subscriptions)

    assert all(len(rows) == 1 for rows in prices.values())


def _orm_view(price):
    """What the ORM reads of a price's schedule and of its metric's filters."""
    fresh = Price.objects.prefetch_related("tiers", "dynamic_rates", "billable_metric__filters").get(pk=price.pk)
    return _view(fresh)


def _view(price):
    return (
        [(t.pk, t.price_id, t.up_to, t.unit_price, t.flat_fee) for t in price.tiers.all()],
        [(r.pk, r.price_id, r.effective_from, r.unit_price) for r in price.dynamic_rates.all()],
        [(f.pk, f.metric_id, f.property_path, f.operator, f.values) for f in price.billable_metric.filters.all()],
    )


def _priced_subscription():
    """A graduated price (12-place tiers, a flat fee, an open last tier), a dynamic price with two
    rates, and metric filters holding a float, a nested object and a boolean; a subscription to them."""
    plan = PlanFactory()
    graduated = MeteredPriceFactory(plan=plan, model="graduated", unit_price=None, invoice_display_name="A")
    PriceTierFactory(price=graduated, up_to=None, unit_price=Decimal("0.000000000001"))
    PriceTierFactory(price=graduated, up_to=Decimal(1000), unit_price=Decimal("0.01"), flat_fee=Decimal("2.5"))
    dynamic = DynamicPriceFactory(plan=plan, invoice_display_name="B")
    DynamicRateFactory(price=dynamic, effective_from=datetime(2026, 2, 1, 6, 30, tzinfo=UTC))
    DynamicRateFactory(price=dynamic, effective_from=datetime(2026, 1, 1, tzinfo=UTC), unit_price=Decimal("1E-7"))
    MetricFilterFactory(metric=graduated.billable_metric, values=[1.5, 1e-07, "x"])
    MetricFilterFactory(metric=graduated.billable_metric, operator="not_in", values=[{"a": [True]}, False])
    return SubscriptionFactory(plan=plan), graduated, dynamic


def test_schedules_and_filters_read_by_hand_equal_the_orm_reads():
    # given a graduated price, a dynamic price and metric filters (``_priced_subscription``)
    subscription, graduated, dynamic = _priced_subscription()

    # when the subscription's prices are read (and the filters of their metrics)
    prices = prices_for_subscriptions([subscription])[subscription.pk]
    metric_filters_prefetch([price.billable_metric for price in prices])

    # then the tiers, rates and filters are the ORM's, value for value, in the ORM's order
    assert [price.pk for price in prices] == [graduated.pk, dynamic.pk]
    for price in prices:
        assert _view(price) == _orm_view(price)
    assert [t.up_to for t in prices[0].tiers.all()] == [Decimal(1000), None]
    assert [f.values for f in prices[0].billable_metric.filters.all()] == [[1.5, 1e-07, "x"], [{"a": [True]}, False]]


def _columns(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in type(row)._meta.concrete_fields}


def test_the_hand_written_reads_load_every_column_of_their_models():
    # A column the hand-written statements do not select (on PostgreSQL tiers, rates and filters come
    # as JSON arrays of named columns) would come back deferred and be read again, one query per row:
    # a column added to one of these models must be added to the statement too.
    # given a graduated price, a dynamic price and metric filters
    subscription, _, _ = _priced_subscription()

    # when the subscription's prices are read (and the filters of their metrics)
    prices = prices_for_subscriptions([subscription])[subscription.pk]
    metric_filters_prefetch([price.billable_metric for price in prices])

    # then every row is complete, and equal column for column to the ORM's
    for price in prices:
        metric = price.billable_metric
        rows = [price, metric, *price.tiers.all(), *price.dynamic_rates.all(), *metric.filters.all()]
        assert {type(row).__name__: row.get_deferred_fields() for row in rows if row.get_deferred_fields()} == {}
        fresh = Price.objects.select_related("billable_metric").prefetch_related(
            "tiers", "dynamic_rates", "billable_metric__filters"
        )
        orm = fresh.get(pk=price.pk)
        orm_rows = [
            orm,
            orm.billable_metric,
            *orm.tiers.all(),
            *orm.dynamic_rates.all(),
            *orm.billable_metric.filters.all(),
        ]
        assert [_columns(row) for row in rows] == [_columns(row) for row in orm_rows]
    assert {len(price.tiers.all()) + len(price.dynamic_rates.all()) for price in prices} == {2}
    assert len(prices[0].billable_metric.filters.all()) == 2

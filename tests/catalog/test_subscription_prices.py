"""Which prices bill a subscription: the plan's, with the customer's negotiated rates substituted."""

from decimal import Decimal

import pytest

from catalog.models import Price
from catalog.selectors import prices_for_subscriptions, subscription_prices
from tests.factories import CustomerFactory, FeePriceFactory, MeteredPriceFactory, PlanFactory, SubscriptionFactory

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

    with django_assert_num_queries(3):  # prices, tiers, dynamic rates
        prices = prices_for_subscriptions(subscriptions)

    assert all(len(rows) == 1 for rows in prices.values())

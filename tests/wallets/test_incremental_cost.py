"""Real-time debits are increments of the period's price; they add up to the period-end price."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.pricing import PriceSpec, PricingModel, Tier, rate
from tests.factories import PlanFactory, SubscriptionFactory
from wallets.costing import incremental_cost
from wallets.models import Wallet
from wallets.selectors import debits_for_subscription_period, overage_for_period, period_debits
from wallets.services import credit_top_up, usage_debit

from .conftest import assert_ledger_consistent

GRADUATED = PriceSpec(
    price_id="price_grad",
    name="API calls",
    model=PricingModel.GRADUATED,
    currency="USD",
    tiers=(
        Tier(up_to=Decimal("100"), unit_price=Decimal("5")),
        Tier(up_to=Decimal("1000"), unit_price=Decimal("3")),
        Tier(up_to=None, unit_price=Decimal("1")),
    ),
    free_units=Decimal("10"),
    unit_name="calls",
)
VOLUME = PriceSpec(
    price_id="price_vol",
    name="Seats",
    model=PricingModel.VOLUME,
    currency="USD",
    tiers=(Tier(up_to=Decimal("100"), unit_price=Decimal("5")), Tier(up_to=None, unit_price=Decimal("3"))),
)
TOKENS = PriceSpec(
    price_id="price_tok",
    name="Input tokens",
    model=PricingModel.STANDARD,
    currency="USD",
    unit_price=Decimal("0.002"),
    package_size=Decimal("1000"),
    free_units=Decimal("10000"),
    unit_name="tokens",
)


def _increments(spec, cumulative):
    points = [Decimal(0), *cumulative]
    return [
        incremental_cost(spec=spec, usage_before=a, usage_after=b) for a, b in zip(points, points[1:], strict=False)
    ]


def test_an_increment_across_a_tier_boundary_is_priced_at_both_tiers():
    # the allowance takes the first 10 calls; billable 90 → 110 crosses the 100 bound
    assert _increments(GRADUATED, [Decimal(100), Decimal(120), Decimal(1510)]) == [
        Decimal("450"),  # 90 billable × $5
        Decimal("80"),  # 10 × $5 + 10 × $3
        Decimal("3170"),  # 890 × $3 + 500 × $1
    ]
    assert (
        sum(_increments(GRADUATED, [Decimal(100), Decimal(120), Decimal(1510)]))
        == rate(GRADUATED, Decimal(1510)).amount
    )


def test_the_free_allowance_is_consumed_first():
    assert _increments(TOKENS, [Decimal(8000), Decimal(10000), Decimal(12500)]) == [
        Decimal("0"),
        Decimal("0"),
        Decimal("0.005"),
    ]


def test_a_volume_tier_can_credit_usage_back():
    assert _increments(VOLUME, [Decimal(100), Decimal(101)]) == [Decimal("500"), Decimal("-197")]


@settings(max_examples=200, deadline=None)
@given(
    spec=st.sampled_from([GRADUATED, VOLUME, TOKENS]),
    steps=st.lists(st.decimals(min_value=0, max_value=5000, places=3), min_size=1, max_size=25),
)
def test_any_split_of_usage_sums_to_the_price_of_the_total(spec, steps):
    cumulative, total = [], Decimal(0)
    for step in steps:
        total += step
        cumulative.append(total)

    increments = _increments(spec, cumulative)

    assert sum(increments, Decimal(0)) == rate(spec, total).amount - rate(spec, Decimal(0)).amount


@pytest.mark.django_db
def test_debits_of_a_period_add_up_to_its_period_end_price(customer, now):
    # given a subscription with $100 of credit and usage arriving in five events
    subscription = SubscriptionFactory(
        customer=customer,
        merchant=customer.merchant,
        plan=PlanFactory(merchant=customer.merchant, product__merchant=customer.merchant),
    )
    period = {"period_start": now.replace(day=1), "period_end": now.replace(month=4, day=1)}
    credit_top_up(customer=customer, currency="USD", amount=Decimal("100"), idempotency_key="t", now=now)
    usage = [Decimal(50), Decimal(45), Decimal(10), Decimal(1), Decimal(40)]

    # when each event debits its increment of the volume price
    before = Decimal(0)
    for index, quantity in enumerate(usage):
        after = before + quantity
        usage_debit(
            customer=customer,
            currency="USD",
            amount=incremental_cost(spec=VOLUME, usage_before=before, usage_after=after),
            subscription_id=subscription.pk,
            idempotency_key=f"evt-{index}",
            event_ids=[f"evt-{index}"],
            now=now,
            **period,
        )
        before = after

    # then the debits equal the price of 146 seats, $438; $100 came from credit, $338 is overage
    assert rate(VOLUME, before).amount == Decimal("438")
    assert debits_for_subscription_period(subscription_id=subscription.pk, **period) == Decimal("438")
    assert overage_for_period(subscription_id=subscription.pk, **period) == Decimal("338")
    assert period_debits(subscription_id=subscription.pk, **period).covered_by_credit == Decimal("100")
    assert assert_ledger_consistent(Wallet.objects.get()).balance == Decimal("-338")


# -- dimensional prices: debits per request telescope to the per-combination invoice lines -------------


def _dimensional_spec(tier_scope: str):
    from catalog.pricing import Combination, DimensionalSpec

    return DimensionalSpec(
        price_id="price_dim",
        name="Tokens by model",
        currency="USD",
        unit_name="calls",
        dimensions=("model",),
        combinations=(
            Combination(("small",), TOKENS),
            Combination(("large",), GRADUATED),
            Combination(("vol",), VOLUME),
        ),
        default=GRADUATED,
        tier_scope=tier_scope,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["combination", "metric"]),
    st.lists(
        st.tuples(
            st.sampled_from(["small", "large", "vol", "other", "another"]),
            st.decimals(min_value=0, max_value=5000, places=3, allow_nan=False, allow_infinity=False),
        ),
        max_size=25,
    ),
)
def test_dimensional_debits_telescope_to_the_sum_of_the_combination_lines(tier_scope, requests):
    from catalog.pricing import rate_dimensional
    from wallets.costing import incremental_dimensional_cost

    spec = _dimensional_spec(tier_scope)
    usage: dict = {}
    debited = Decimal(0)
    for model, quantity in requests:
        before = dict(usage)
        usage[(model,)] = usage.get((model,), Decimal(0)) + quantity
        debited += incremental_dimensional_cost(spec=spec, usage_before=before, usage_after=dict(usage))
    lines = rate_dimensional(spec, usage).combinations
    assert debited == sum((line.amount for line in lines), Decimal(0)).quantize(Decimal("1e-12"))

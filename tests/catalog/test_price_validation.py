"""Impossible pricing is refused by the models with a message a finance person understands."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from catalog.models import Aggregation, PriceModel
from catalog.validation import rate_schedule_errors, tier_table_errors
from tests.factories import (
    BillableMetricFactory,
    FeeFactory,
    FeePriceFactory,
    MeteredPriceFactory,
    NegotiatedPriceFactory,
    PlanFactory,
)

pytestmark = pytest.mark.django_db


def clean_errors(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


def test_price_on_neither_metric_nor_fee():
    price = MeteredPriceFactory.build(plan=PlanFactory(), billable_metric=None, invoice_display_name="Tokens")

    assert clean_errors(price) == {
        "billable_metric": ["Choose what this price charges for: a billable metric (usage) or a fee (fixed charge)."]
    }


def test_price_on_both_metric_and_fee():
    price = MeteredPriceFactory()
    price.fee = FeeFactory(product=price.plan.product, merchant=price.merchant)

    assert clean_errors(price) == {
        "billable_metric": ["Choose either a billable metric (usage price) or a fee (fixed charge), not both."]
    }


def test_metric_of_another_product():
    plan = PlanFactory(name="Pro", product__name="Neural Language Engine")
    foreign = BillableMetricFactory(name="Egress", merchant=plan.merchant, product__merchant=plan.merchant)
    foreign.product.name = "Cloud Analytics"
    foreign.product.save()
    price = MeteredPriceFactory.build(plan=plan, merchant=plan.merchant, billable_metric=foreign)

    assert clean_errors(price) == {
        "billable_metric": [
            "The metric “Egress” belongs to the product “Cloud Analytics”, but the plan “Pro” sells "
            "“Neural Language Engine”."
        ]
    }


def test_unknown_currency_on_a_plan():
    plan = PlanFactory.build(product=PlanFactory().product, currency="XYZ")
    plan.merchant = plan.product.merchant

    assert clean_errors(plan) == {"currency": ["“XYZ” is not an ISO 4217 currency code (for example USD, EUR, JPY)."]}


@pytest.mark.parametrize("rate", [Decimal("10.01"), Decimal("-0.01")])
def test_percentage_outside_zero_to_ten(rate):
    price = MeteredPriceFactory(model=PriceModel.PERCENTAGE, unit_price=None, percentage_rate=Decimal("0.03"))
    price.percentage_rate = rate

    assert clean_errors(price) == {
        "percentage_rate": ["The percentage must be between 0 and 10 (0.03 means 3 %, 1.10 means 110 %)."]
    }


def test_percentage_of_ten_is_accepted():
    price = MeteredPriceFactory(model=PriceModel.PERCENTAGE, unit_price=None, percentage_rate=Decimal("10"))

    price.full_clean()


def test_non_ascending_tiers():
    rows = [(Decimal("100"), Decimal("0.02")), (Decimal("50"), Decimal("0.01")), (None, Decimal("0.005"))]

    assert tier_table_errors(rows, model=PriceModel.GRADUATED) == [
        "Tier 2 must start above tier 1's upper bound of 100"
    ]


def test_open_ended_tier_that_is_not_last():
    rows = [(None, Decimal("0.02")), (Decimal("100"), Decimal("0.01"))]

    assert tier_table_errors(rows, model=PriceModel.VOLUME) == [
        "Only the last tier may be open-ended",
        "The last tier (tier 2) must be open-ended: leave its upper bound empty",
    ]


def test_tiered_price_without_tiers_and_standard_price_with_tiers():
    assert tier_table_errors([], model=PriceModel.GRADUATED) == [
        "Add at least one tier; the last one has no upper bound."
    ]
    assert tier_table_errors([(None, Decimal("1"))], model=PriceModel.STANDARD) == [
        "Only graduated and volume prices have tiers; remove the tier rows."
    ]


def test_tiered_price_with_a_unit_price():
    price = MeteredPriceFactory(model=PriceModel.STANDARD)
    price.model = PriceModel.GRADUATED

    assert clean_errors(price) == {
        "unit_price": ["Tiered prices take their rates from the tier rows; leave the unit price empty."]
    }


def test_standard_and_package_prices_need_a_unit_price():
    standard = MeteredPriceFactory()
    standard.unit_price = None
    package = MeteredPriceFactory(model=PriceModel.PACKAGE, package_size=Decimal("1000"), unit_price=Decimal("0.002"))
    package.unit_price = None
    package.package_size = None

    assert clean_errors(standard) == {"unit_price": ["Enter the price per unit."]}
    assert clean_errors(package) == {
        "unit_price": ["Enter the price per package."],
        "package_size": ["A package price needs the number of units in a package."],
    }


def test_fee_price_that_is_not_standard():
    price = FeePriceFactory()
    price.model = PriceModel.PACKAGE
    price.package_size = Decimal("10")

    assert clean_errors(price) == {"model": ["A fee is a fixed amount: use the standard model with a unit price."]}


def test_negotiated_rate_on_another_plan():
    negotiated = NegotiatedPriceFactory()
    other_plan = PlanFactory(product=negotiated.plan.product, merchant=negotiated.merchant)
    negotiated.plan = other_plan

    assert clean_errors(negotiated) == {
        "overrides": ["The negotiated rate must sit on the same plan as the price it replaces."]
    }


def test_negotiated_rate_is_valid_on_the_same_plan():
    NegotiatedPriceFactory().full_clean()


def test_sum_metric_without_value_property():
    metric = BillableMetricFactory(aggregation=Aggregation.SUM)
    metric.value_property = ""

    assert clean_errors(metric) == {
        "value_property": ["A sum of a value needs the event property that holds the value, for example $.tokens."]
    }


def test_metric_with_a_bad_property_path():
    metric = BillableMetricFactory()
    metric.value_property = "tokens"

    assert clean_errors(metric) == {
        "value_property": [
            "“tokens” is not a property path. Write $. followed by the property name, for example $.tokens "
            "or $.usage.input_tokens."
        ]
    }


def test_rate_schedule_rules():
    assert rate_schedule_errors([], model="dynamic", dynamic_mode="schedule") == [
        "Add at least one rate to the schedule, with the moment it takes effect."
    ]
    assert rate_schedule_errors([None], model="standard", dynamic_mode=None) == [
        "Only dynamic prices have a rate schedule; remove the rate rows."
    ]

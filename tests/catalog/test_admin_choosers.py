"""Choosers on the price page hold only what fits and tell same-named objects apart."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from tests.factories import (
    BillableMetricFactory,
    FeeFactory,
    MeteredPriceFactory,
    NegotiatedPriceFactory,
    PlanFactory,
    ProductFactory,
)

pytestmark = pytest.mark.django_db

PRICE_ADD = reverse("admin:catalog_price_add")


def _choices(response, name: str) -> list[str]:
    field = response.context["adminform"].form.fields[name]
    return [label for value, label in field.choices if value]


@pytest.fixture
def two_products(merchant):
    engine = ProductFactory(merchant=merchant, name="Neural Language Engine")
    vision = ProductFactory(merchant=merchant, name="Vision API")
    engine_tokens = BillableMetricFactory(merchant=merchant, product=engine, name="Input tokens")
    vision_tokens = BillableMetricFactory(merchant=merchant, product=vision, name="Input tokens")
    engine_fee = FeeFactory(merchant=merchant, product=engine, name="Platform fee")
    FeeFactory(merchant=merchant, product=vision, name="Platform fee")
    plan = PlanFactory(merchant=merchant, product=engine, name="Pro")
    return plan, engine_tokens, vision_tokens, engine_fee


def test_adding_a_price_from_a_plan_lists_only_its_products_metrics_and_fees(superuser_client, two_products):
    plan, engine_tokens, _, engine_fee = two_products

    response = superuser_client.get(f"{PRICE_ADD}?plan={plan.pk}&merchant={plan.merchant_id}")

    assert _choices(response, "billable_metric") == [f"Input tokens — Neural Language Engine ({engine_tokens.pk})"]
    assert _choices(response, "fee") == [f"Platform fee — Neural Language Engine ({engine_fee.pk})"]


def test_without_a_plan_same_named_metrics_are_told_apart_by_product_and_id(superuser_client, two_products):
    _, engine_tokens, vision_tokens, _ = two_products

    response = superuser_client.get(PRICE_ADD)

    assert sorted(_choices(response, "billable_metric")) == sorted(
        [
            f"Input tokens — Neural Language Engine ({engine_tokens.pk})",
            f"Input tokens — Vision API ({vision_tokens.pk})",
        ]
    )


def test_overrides_choices_are_the_plans_own_prices_labelled_readably(superuser_client):
    base = MeteredPriceFactory(invoice_display_name="Input tokens", plan__name="Enterprise")
    MeteredPriceFactory(invoice_display_name="Output tokens")  # another plan's price
    negotiated = NegotiatedPriceFactory(plan=base.plan, overrides=base, billable_metric=base.billable_metric)

    response = superuser_client.get(reverse("admin:catalog_price_change", args=(quote(negotiated.pk),)))

    assert _choices(response, "overrides") == [f"Input tokens — {base.plan.product.name} · Enterprise ({base.pk})"]

"""Prices through the admin: tier tables as inline rows, finance messages, plan and customer pages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.admin_forms import CatalogModelForm
from catalog.models import Price, PriceModel, PriceTier, Product
from tests.factories import (
    BillableMetricFactory,
    FeeFactory,
    MeteredPriceFactory,
    NegotiatedPriceFactory,
    PlanFactory,
    PriceTierFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db

PRICE_ADD = reverse("admin:catalog_price_add")


def management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def price_form(price_fields: dict, tiers: list[tuple[str, str]] = ()) -> dict[str, str]:
    """POST data of the price page: the price's fields, its tier rows and an empty rate schedule."""
    data = {
        "invoice_display_name": "Input tokens",
        "payment_term": "in_arrears",
        "model": "standard",
        "quantity": "1",
        "package_rounding": "exact",
        "free_units": "0",
        "rate_type": "amount",
        "tax_supply_scope": "IN_SCOPE",
        **management("tiers", len(tiers)),
        **management("dynamic_rates", 0),
    }
    data.update({k: str(v) for k, v in price_fields.items()})
    for number, (up_to, unit_price) in enumerate(tiers):
        data.update({f"tiers-{number}-up_to": up_to, f"tiers-{number}-unit_price": unit_price})
        data[f"tiers-{number}-flat_fee"] = "0"
    return data


@pytest.fixture
def metric():
    return BillableMetricFactory(name="Input tokens")


@pytest.fixture
def plan(metric):
    return PlanFactory(name="Pro", product=metric.product, merchant=metric.merchant)


def test_graduated_price_with_tiers_is_created_through_the_add_page(superuser_client, plan, metric):
    # given a graduated price of two tiers: 10M tokens at 0.000002, the rest at 0.000001
    data = price_form(
        {"merchant": plan.merchant_id, "plan": plan.pk, "billable_metric": metric.pk, "model": "graduated"},
        tiers=[("10000000", "0.000002"), ("", "0.000001")],
    )

    # when it is saved through the admin
    response = superuser_client.post(PRICE_ADD, data)

    # then the price and its tier rows exist, and its history records the tier table
    assert response.status_code == 302
    price = Price.objects.get(plan=plan)
    assert price.model == PriceModel.GRADUATED
    assert price.unit_price is None
    assert list(price.tiers.values_list("up_to", "unit_price", "flat_fee")) == [
        (Decimal("10000000"), Decimal("0.000002"), Decimal("0")),
        (None, Decimal("0.000001"), Decimal("0")),
    ]
    assert price.history.get().history_change_reason == "Tiers: ≤10,000,000 @ 0.000002; rest @ 0.000001"


def test_bad_tier_table_gets_the_finance_message_back(superuser_client, plan, metric):
    data = price_form(
        {"merchant": plan.merchant_id, "plan": plan.pk, "billable_metric": metric.pk, "model": "volume"},
        tiers=[("10000000", "0.000002"), ("5000000", "0.000001"), ("", "0.0000005")],
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.status_code == 200
    tiers_formset = next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "tiers")
    assert tiers_formset.non_form_errors() == ["Tier 2 must start above tier 1's upper bound of 10,000,000."]
    assert "Tier 2 must start above tier 1&#x27;s upper bound of 10,000,000." in response.content.decode()
    assert not Price.objects.exists()


def test_graduated_price_needs_at_least_one_tier(superuser_client, plan, metric):
    data = price_form(
        {"merchant": plan.merchant_id, "plan": plan.pk, "billable_metric": metric.pk, "model": "graduated"}
    )

    response = superuser_client.post(PRICE_ADD, data)

    tiers_formset = next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "tiers")
    assert tiers_formset.non_form_errors() == ["Add at least one tier; the last one has no upper bound."]
    assert not Price.objects.exists()


def test_standard_price_needs_a_unit_price(superuser_client, plan, metric):
    data = price_form({"merchant": plan.merchant_id, "plan": plan.pk, "billable_metric": metric.pk})

    response = superuser_client.post(PRICE_ADD, data)

    assert response.context["adminform"].form.errors == {"unit_price": ["Enter the price per unit."]}


def test_metric_of_another_product_is_refused_on_the_form(superuser_client, plan):
    other_metric = BillableMetricFactory(name="Egress", merchant=plan.merchant, product__merchant=plan.merchant)
    data = price_form(
        {"merchant": plan.merchant_id, "plan": plan.pk, "billable_metric": other_metric.pk, "unit_price": "0.09"}
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.context["adminform"].form.errors == {
        "billable_metric": [
            f"The metric “Egress” belongs to the product “{other_metric.product.name}”, but the plan “Pro” sells "
            f"“{plan.product.name}”."
        ]
    }


def test_fee_price_must_be_standard_on_the_form(superuser_client, plan):
    fee = FeeFactory(product=plan.product, merchant=plan.merchant)
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "fee": fee.pk,
            "model": "percentage",
            "percentage_rate": "0.03",
            "billing_cadence": "P1M",
        }
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.context["adminform"].form.errors == {
        "model": ["A fee is a fixed amount: use the standard model with a unit price."]
    }


def test_tier_rows_can_be_changed_on_the_price_page(superuser_client):
    tier = PriceTierFactory(up_to=None, unit_price=Decimal("0.000001"))
    price = tier.price
    data = price_form(
        {
            "merchant": price.merchant_id,
            "plan": price.plan_id,
            "billable_metric": price.billable_metric_id,
            "model": "graduated",
            "invoice_display_name": price.invoice_display_name,
        },
        tiers=[("", "0.000001"), ("1000", "0.000004")],
    )
    data.update({"tiers-INITIAL_FORMS": "1", "tiers-0-id": str(tier.pk), "tiers-0-price": price.pk})
    data["tiers-0-up_to"], data["tiers-1-up_to"] = "1000", ""
    data["tiers-0-unit_price"], data["tiers-1-unit_price"] = "0.000004", "0.000001"

    response = superuser_client.post(reverse("admin:catalog_price_change", args=(quote(price.pk),)), data)

    assert response.status_code == 302
    assert list(PriceTier.objects.filter(price=price).values_list("up_to", "unit_price")) == [
        (Decimal("1000"), Decimal("0.000004")),
        (None, Decimal("0.000001")),
    ]


def test_plan_page_lists_prices_with_links_and_an_add_link(superuser_client):
    price = MeteredPriceFactory(invoice_display_name="Output tokens")
    plan = price.plan

    page = superuser_client.get(reverse("admin:catalog_plan_change", args=(quote(plan.pk),))).content.decode()

    assert reverse("admin:catalog_price_change", args=(quote(price.pk),)) in page
    assert f"{reverse('admin:catalog_price_add')}?plan={plan.pk}&amp;merchant={plan.merchant_id}" in page
    assert "tokens at $0.000002 each" in page


def test_add_price_link_prefills_plan_and_merchant(superuser_client):
    plan = PlanFactory()

    response = superuser_client.get(f"{PRICE_ADD}?plan={plan.pk}&merchant={plan.merchant_id}")

    form = response.context["adminform"].form
    assert (form.initial["plan"], form.initial["merchant"]) == (plan.pk, plan.merchant_id)


def test_customer_page_shows_subscriptions_and_negotiated_rates(superuser_client):
    negotiated = NegotiatedPriceFactory(invoice_display_name="Input tokens")
    customer = negotiated.customer
    subscription = SubscriptionFactory(customer=customer, plan=negotiated.plan, merchant=customer.merchant)

    page = superuser_client.get(reverse("admin:catalog_customer_change", args=(quote(customer.pk),))).content.decode()

    assert reverse("admin:catalog_subscription_change", args=(quote(subscription.pk),)) in page
    assert reverse("admin:catalog_price_change", args=(quote(negotiated.pk),)) in page
    assert f"?customer={customer.pk}&amp;merchant={customer.merchant_id}" in page


def test_dynamic_schedule_price_needs_a_rate(superuser_client, plan, metric):
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "model": "dynamic",
            "dynamic_mode": "schedule",
        }
    )

    response = superuser_client.post(PRICE_ADD, data)

    rates = next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "dynamic_rates")
    assert rates.non_form_errors() == ["Add at least one rate to the schedule, with the moment it takes effect."]
    assert not Price.objects.exists()


def test_dynamic_schedule_price_is_created_with_its_rates(superuser_client, plan, metric):
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "model": "dynamic",
            "dynamic_mode": "schedule",
            **management("dynamic_rates", 1),
            "dynamic_rates-0-effective_from_0": "2026-03-01",
            "dynamic_rates-0-effective_from_1": "00:00:00",
            "dynamic_rates-0-unit_price": "0.0004",
        }
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.status_code == 302
    price = Price.objects.get()
    assert list(price.dynamic_rates.values_list("unit_price", flat=True)) == [Decimal("0.0004")]
    assert price.history.get().history_change_reason == "Rates: 2026-03-01 00:00 @ 0.0004"


def test_model_message_about_a_field_missing_from_the_form_is_shown_on_the_form(plan, metric):
    class DisplayNameOnly(CatalogModelForm):
        class Meta:
            model = Price
            fields = ("invoice_display_name",)

    price = Price(merchant=plan.merchant, plan=plan, model=PriceModel.STANDARD, unit_price=Decimal("1"))
    form = DisplayNameOnly({"invoice_display_name": "Tokens"}, instance=price)

    assert not form.is_valid()
    assert form.non_field_errors() == [
        "Billable metric: Choose what this price charges for: a billable metric (usage) or a fee (fixed charge)."
    ]


def test_product_added_with_its_metrics_and_fees_inline(superuser_client, merchant):
    data = {
        "merchant": merchant.pk,
        "name": "Neural Language Engine",
        "description": "",
        "metadata": "{}",
        **management("billable_metrics", 1),
        "billable_metrics-0-name": "Input tokens",
        "billable_metrics-0-unit": "tokens",
        "billable_metrics-0-aggregation": "SUM",
        "billable_metrics-0-event_type": "llm.completion",
        "billable_metrics-0-value_property": "$.input_tokens",
        **management("fees", 1),
        "fees-0-name": "Platform fee",
    }

    response = superuser_client.post(reverse("admin:catalog_product_add"), data)

    assert response.status_code == 302
    product = Product.objects.get()
    metric = product.billable_metrics.get()
    assert (metric.merchant, metric.value_property) == (merchant, "$.input_tokens")
    assert product.fees.get().merchant == merchant


def test_metric_row_without_value_property_is_refused_on_the_product_page(superuser_client, merchant):
    data = {
        "merchant": merchant.pk,
        "name": "Neural Language Engine",
        "metadata": "{}",
        **management("billable_metrics", 1),
        "billable_metrics-0-name": "Input tokens",
        "billable_metrics-0-unit": "tokens",
        "billable_metrics-0-aggregation": "SUM",
        "billable_metrics-0-event_type": "llm.completion",
        **management("fees", 0),
    }

    response = superuser_client.post(reverse("admin:catalog_product_add"), data)

    metrics = next(
        f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "billable_metrics"
    )
    assert metrics.errors == [
        {"value_property": ["A sum of a value needs the event property that holds the value, for example $.tokens."]}
    ]
    assert not Product.objects.exists()

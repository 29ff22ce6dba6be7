"""Usage rates typed and shown per 1K or per 1M units (“price per”), stored per unit so the rating stays exact."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.models import Price, PriceModel, RatePer
from catalog.pricing import rate
from catalog.pricing_adapter import price_spec_from_price
from catalog.simulator import SimulatedUsage, plan_simulate
from tests.catalog.test_admin_prices import management, price_form
from tests.factories import BillableMetricFactory, MeteredPriceFactory, PlanFactory, PriceTierFactory

pytestmark = pytest.mark.django_db

PRICE_ADD = reverse("admin:catalog_price_add")
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def metric():
    return BillableMetricFactory(name="Input tokens", unit="tokens")


@pytest.fixture
def plan(metric):
    return PlanFactory(name="Pro", product=metric.product, merchant=metric.merchant, currency="USD")


def _input_value(page: str, name: str) -> str:
    tag = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page).group(0)
    return re.search(r'value="([^"]*)"', tag).group(1)


def test_graduated_tiers_typed_per_1k_are_stored_per_unit(superuser_client, plan, metric):
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "model": "graduated",
            "rate_per": "1000",
        },
        tiers=[("10000000", "0.002"), ("", "0.001")],
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.status_code == 302
    price = Price.objects.get(plan=plan)
    assert price.rate_per == RatePer.THOUSAND
    assert list(price.tiers.values_list("up_to", "unit_price")) == [
        (Decimal("10000000"), Decimal("0.000002")),
        (None, Decimal("0.000001")),
    ]


def test_standard_rate_typed_per_1m_is_stored_per_unit_and_shown_per_1m(superuser_client, plan, metric):
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "unit_price": "6",
            "rate_per": "1000000",
        }
    )

    assert superuser_client.post(PRICE_ADD, data).status_code == 302
    price = Price.objects.get(plan=plan)
    assert (price.unit_price, price.rate_per) == (Decimal("0.000006"), RatePer.MILLION)

    page = superuser_client.get(reverse("admin:catalog_price_change", args=(quote(price.pk),))).content.decode()
    assert _input_value(page, "unit_price") == "6"
    listing = superuser_client.get(reverse("admin:catalog_price_changelist")).content.decode()
    assert '<td class="field-rate">tokens at $6.00 per 1M</td>' in listing


def test_change_page_shows_tiers_per_1k_and_an_unchanged_save_keeps_the_rates(superuser_client):
    price = MeteredPriceFactory(model=PriceModel.GRADUATED, unit_price=None, rate_per=RatePer.THOUSAND)
    first = PriceTierFactory(price=price, up_to=Decimal("10000000"), unit_price=Decimal("0.000002"))
    last = PriceTierFactory(price=price, up_to=None, unit_price=Decimal("0.000001"))
    url = reverse("admin:catalog_price_change", args=(quote(price.pk),))

    page = superuser_client.get(url).content.decode()

    assert (_input_value(page, "tiers-0-unit_price"), _input_value(page, "tiers-1-unit_price")) == ("0.002", "0.001")
    assert (
        "Graduated tiers: up to 10,000,000 @ $0.002 per 1K; above @ $0.001 per 1K"
        in superuser_client.get(reverse("admin:catalog_plan_change", args=(quote(price.plan.pk),))).content.decode()
    )

    data = price_form(
        {
            "merchant": price.merchant_id,
            "plan": price.plan_id,
            "billable_metric": price.billable_metric_id,
            "invoice_display_name": price.invoice_display_name,
            "model": "graduated",
            "rate_per": "1000",
            **management("tiers", 2, initial=2),
            "tiers-0-id": first.pk,
            "tiers-0-price": price.pk,
            "tiers-0-up_to": "10000000",
            "tiers-0-unit_price": "0.002",
            "tiers-0-flat_fee": "0",
            "tiers-1-id": last.pk,
            "tiers-1-price": price.pk,
            "tiers-1-up_to": "",
            "tiers-1-unit_price": "0.0015",
            "tiers-1-flat_fee": "0",
        }
    )
    assert superuser_client.post(url, data).status_code == 302
    assert list(price.tiers.values_list("unit_price", flat=True)) == [Decimal("0.000002"), Decimal("0.0000015")]


def test_a_rate_finer_than_12_places_per_unit_is_refused(superuser_client, plan, metric):
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "unit_price": "0.0000001",
            "rate_per": "1000000",
        }
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["unit_price"] == [
        "A rate per 1M units has at most 6 decimal places (rates are kept per unit to 12 places)."
    ]
    assert not Price.objects.exists()


def test_a_fee_cannot_be_priced_per_1k(superuser_client, plan):
    from tests.factories import FeeFactory

    fee = FeeFactory(product=plan.product, merchant=plan.merchant)
    data = price_form(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "fee": fee.pk,
            "unit_price": "49",
            "billing_cadence": "P1M",
            "rate_per": "1000",
        }
    )

    response = superuser_client.post(PRICE_ADD, data)

    assert response.context["adminform"].form.errors["rate_per"] == [
        "Per 1K or per 1M applies to usage rates per unit (standard without a package size, tiers, dynamic rates); "
        "choose “per unit”."
    ]


def test_explanations_print_the_rate_per_1k_and_the_amount_is_exact():
    price = MeteredPriceFactory(unit_price=Decimal("0.000006"), rate_per=RatePer.THOUSAND, plan__currency="USD")

    result = rate(price_spec_from_price(price), Decimal(1_500_000))

    assert result.amount == Decimal("9.000000")
    assert result.describe() == "1,500,000 tokens × $0.006 per 1K = $9.00"


def test_graduated_explanation_prints_each_tier_per_1m():
    price = MeteredPriceFactory(model=PriceModel.GRADUATED, unit_price=None, rate_per=RatePer.MILLION)
    PriceTierFactory(price=price, up_to=Decimal("1000000"), unit_price=Decimal("0.000002"))
    PriceTierFactory(price=price, up_to=None, unit_price=Decimal("0.000001"))

    result = rate(price_spec_from_price(price), Decimal(1_500_000))

    assert [line.description for line in result.lines] == [
        "0–1,000,000 tokens × $2.00 per 1M = $2.00",
        "1,000,000–1,500,000 tokens × $1.00 per 1M = $0.50",
    ]


def test_simulator_breakdown_prints_the_rate_per_1k():
    price = MeteredPriceFactory(
        invoice_display_name="Output tokens", unit_price=Decimal("0.000006"), rate_per=RatePer.THOUSAND
    )

    simulation = plan_simulate(
        plan=price.plan,
        usage={price.pk: SimulatedUsage(quantity=Decimal(2_000_000))},
        at=NOW,
        rounding="ROUND_HALF_UP",
    )

    assert simulation.lines[0].breakdown == ["2,000,000 tokens × $0.006 per 1K = $12.00"]


def test_the_demo_catalog_lists_token_rates_per_1k():
    from catalog.demo import demo_catalog_build

    summary = demo_catalog_build(now=NOW)

    lines = list(summary.lines())
    assert "      Input tokens: tokens at $0.002 per 1K, first 10,000 free" in lines
    assert "      Output tokens: Graduated tiers: up to 10,000,000 @ $0.006 per 1K; above @ $0.003 per 1K" in lines

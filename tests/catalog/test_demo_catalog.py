"""The demo catalog command builds both worked examples, and building again changes nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command

from catalog import models
from catalog.demo import demo_catalog_build

pytestmark = pytest.mark.django_db

CATALOG_MODELS = (
    models.Merchant,
    models.ApiKey,
    models.Product,
    models.BillableMetric,
    models.Fee,
    models.Plan,
    models.Price,
    models.PriceTier,
    models.Customer,
    models.Subscription,
)


def snapshot() -> dict[str, set]:
    return {model.__name__: set(model.objects.values_list("pk", flat=True)) for model in CATALOG_MODELS}


def test_running_the_command_twice_gives_the_same_catalog():
    first_output = io.StringIO()
    call_command("demo_catalog", stdout=first_output)
    first = snapshot()

    second_output = io.StringIO()
    call_command("demo_catalog", stdout=second_output)

    assert snapshot() == first
    assert {name: len(ids) for name, ids in first.items()} == {
        "Merchant": 2,
        "ApiKey": 2,
        "Product": 2,
        "BillableMetric": 8,
        "Fee": 1,
        "Plan": 6,
        "Price": 18,  # the 2 negotiated rates come with invoicing demo (price intervals)
        "PriceTier": 8,
        "Customer": 6,
        "Subscription": 6,
    }
    assert first_output.getvalue().count("shown once") == 2
    assert "shown once" not in second_output.getvalue()
    assert second_output.getvalue().startswith("Demo catalog: 0 rows created, 57 already there.")


def test_subscriptions_start_on_the_first_of_the_month_utc():
    demo_catalog_build(now=datetime(2026, 3, 31, 23, 30, tzinfo=UTC), with_api_keys=False)

    assert set(models.Subscription.objects.values_list("started_at", flat=True)) == {datetime(2026, 3, 1, tzinfo=UTC)}


def test_llm_provider_prices():
    demo_catalog_build(now=datetime(2026, 3, 17, tzinfo=UTC), with_api_keys=False)
    product = models.Product.objects.get(name="Neural Language Engine", merchant__name="Neural Labs")

    metrics = {m.name: (m.aggregation, m.event_type, m.value_property) for m in product.billable_metrics.all()}
    assert metrics == {
        "Input tokens": ("SUM", "llm.completion", "$.input_tokens"),
        "Output tokens": ("SUM", "llm.completion", "$.output_tokens"),
        "Fine-tuning compute hours": ("SUM", "llm.finetune", "$.hours"),
        "API calls": ("COUNT", "llm.completion", ""),
    }
    free_input = models.Price.objects.get(plan__name="Free", plan_line_key="input_tokens")
    assert (free_input.unit_price, free_input.free_units) == (Decimal("0.000002"), Decimal("10000"))
    pro_output = models.Price.objects.get(plan__name="Pro", plan_line_key="output_tokens")
    assert pro_output.model == models.PriceModel.GRADUATED
    assert list(pro_output.tiers.values_list("up_to", "unit_price")) == [
        (Decimal("10000000"), Decimal("0.000006")),
        (None, Decimal("0.000003")),
    ]
    enterprise = models.Plan.objects.get(name="Enterprise")
    assert enterprise.minimum_commitment == Decimal("5000")
    platform = enterprise.prices.get(fee__isnull=False)
    assert (platform.unit_price, platform.payment_term) == (Decimal("2000"), models.PaymentTerm.IN_ADVANCE)
    # Acme AI's negotiated rates are set through the API's price intervals by invoicing's demo (test_demo_activity).
    assert not enterprise.prices.filter(customer__isnull=False).exists()


def test_data_platform_prices():
    demo_catalog_build(now=datetime(2026, 3, 17, tzinfo=UTC), with_api_keys=False)

    storage = models.BillableMetric.objects.get(name="Storage", merchant__name="Cloud Analytics Inc")
    assert (storage.aggregation, storage.value_property) == ("AVG", "$.gb")
    reserved_compute = models.Price.objects.get(plan__name="Reserved", plan_line_key="compute_seconds")
    assert (reserved_compute.unit_price, reserved_compute.discount_percent) == (Decimal("0.0001"), Decimal("40"))
    committed = models.Plan.objects.get(name="Committed")
    assert (committed.billing_cadence, committed.minimum_commitment) == ("P1Y", Decimal("100000"))
    egress = committed.prices.get(plan_line_key="egress_gb")
    assert egress.model == models.PriceModel.VOLUME
    assert [t.up_to for t in egress.tiers.all()] == [Decimal("10000"), Decimal("50000"), Decimal("150000"), None]


def test_every_demo_row_passes_validation():
    demo_catalog_build(now=datetime(2026, 3, 17, tzinfo=UTC), with_api_keys=False)

    for model in (models.BillableMetric, models.Plan, models.Price, models.Customer, models.Subscription):
        for instance in model.objects.all():
            instance.full_clean()


def test_the_llm_plans_price_two_models_at_different_rates():
    from catalog.pricing import rate_dimensional
    from catalog.pricing_adapter import price_dimensional_spec

    demo_catalog_build(now=datetime(2026, 3, 17, tzinfo=UTC), with_api_keys=False)
    pro_input = models.Price.objects.get(plan__name="Pro", plan_line_key="input_tokens")
    spec = price_dimensional_spec(pro_input)
    usage = {("nle-small",): Decimal(1_000_000), ("nle-large",): Decimal(12_000_000), ("nle-xl",): Decimal(1_000_000)}
    # $1.00 small; 10M × 0.000004 + 2M × 0.000002 = $44.00 large; another model at the Pro rate: $2.00
    assert [c.amount for c in rate_dimensional(spec, usage).combinations] == [Decimal(1), Decimal(44), Decimal(2)]
    free_output = models.Price.objects.get(plan__name="Free", plan_line_key="output_tokens")
    (small, large) = price_dimensional_spec(free_output).combinations
    assert (small.spec.unit_price, large.spec.unit_price, large.spec.free_units) == (
        Decimal("0.000003"),
        Decimal("0.000012"),
        Decimal("10000"),
    )

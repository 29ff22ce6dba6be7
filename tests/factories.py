"""factory-boy factories for the catalog; other apps add theirs in this module too."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import factory

from catalog import models


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    email = factory.LazyAttribute(lambda m: f"billing@{m.name.lower().replace(' ', '')}.example")
    default_currency = "USD"


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Product

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Product {n}")
    description = "A product"


class BillableMetricFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.BillableMetric

    product = factory.SubFactory(ProductFactory)
    merchant = factory.SelfAttribute("product.merchant")
    name = factory.Sequence(lambda n: f"Metric {n}")
    unit = "tokens"
    aggregation = models.Aggregation.SUM
    event_type = factory.Sequence(lambda n: f"usage.event{n}")
    value_property = "$.tokens"


class FeeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Fee

    product = factory.SubFactory(ProductFactory)
    merchant = factory.SelfAttribute("product.merchant")
    name = factory.Sequence(lambda n: f"Fee {n}")


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Plan

    product = factory.SubFactory(ProductFactory)
    merchant = factory.SelfAttribute("product.merchant")
    name = factory.Sequence(lambda n: f"Plan {n}")
    currency = "USD"
    billing_cadence = models.BillingCadence.MONTHLY


class MeteredPriceFactory(factory.django.DjangoModelFactory):
    """A standard per-unit price on a metric of the plan's product."""

    class Meta:
        model = models.Price

    plan = factory.SubFactory(PlanFactory)
    merchant = factory.SelfAttribute("plan.merchant")
    billable_metric = factory.SubFactory(
        BillableMetricFactory,
        product=factory.SelfAttribute("..plan.product"),
        merchant=factory.SelfAttribute("..merchant"),
    )
    invoice_display_name = factory.LazyAttribute(lambda p: p.billable_metric.name)
    payment_term = models.PaymentTerm.IN_ARREARS
    model = models.PriceModel.STANDARD
    unit_price = Decimal("0.000002")


class FeePriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Price

    plan = factory.SubFactory(PlanFactory)
    merchant = factory.SelfAttribute("plan.merchant")
    fee = factory.SubFactory(
        FeeFactory, product=factory.SelfAttribute("..plan.product"), merchant=factory.SelfAttribute("..merchant")
    )
    invoice_display_name = factory.LazyAttribute(lambda p: p.fee.name)
    payment_term = models.PaymentTerm.IN_ADVANCE
    model = models.PriceModel.STANDARD
    billing_cadence = "P1M"
    unit_price = Decimal("49.00")


class PriceTierFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.PriceTier

    price = factory.SubFactory(MeteredPriceFactory, model=models.PriceModel.GRADUATED, unit_price=None)
    up_to = None
    unit_price = Decimal("0.000001")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Customer

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Customer {n}")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    country = "US"
    currency = "USD"


class SubscriptionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Subscription

    plan = factory.SubFactory(PlanFactory)
    merchant = factory.SelfAttribute("plan.merchant")
    customer = factory.SubFactory(CustomerFactory, merchant=factory.SelfAttribute("..merchant"))
    name = factory.LazyAttribute(lambda s: f"{s.customer.name} · {s.plan.name}")
    status = models.SubscriptionStatus.ACTIVE
    started_at = datetime(2026, 1, 1, tzinfo=UTC)


class MetricFilterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.MetricFilter

    metric = factory.SubFactory(BillableMetricFactory)
    property_path = "$.status"
    operator = models.MetricFilterOperator.EQUALS
    values = factory.LazyFunction(lambda: ["ok"])


class DynamicPriceFactory(MeteredPriceFactory):
    """A dynamic price in schedule mode; give it DynamicRateFactory rows."""

    model = models.PriceModel.DYNAMIC
    dynamic_mode = models.DynamicMode.SCHEDULE
    unit_price = None


class DynamicRateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.DynamicRate

    price = factory.SubFactory(DynamicPriceFactory)
    effective_from = datetime(2026, 1, 1, tzinfo=UTC)
    unit_price = Decimal("0.000003")


class NegotiatedPriceFactory(MeteredPriceFactory):
    """A customer's negotiated rate replacing ``overrides`` (a plan price) on the same plan and metric."""

    overrides = factory.SubFactory(MeteredPriceFactory)
    plan = factory.SelfAttribute("overrides.plan")
    billable_metric = factory.SelfAttribute("overrides.billable_metric")
    customer = factory.SubFactory(CustomerFactory, merchant=factory.SelfAttribute("..merchant"))
    unit_price = Decimal("0.0000015")


class TestClockFactory(factory.django.DjangoModelFactory):
    __test__ = False  # not a pytest test class

    class Meta:
        model = models.TestClock

    merchant = factory.SubFactory(MerchantFactory)
    name = factory.Sequence(lambda n: f"Clock {n}")
    current_time = datetime(2026, 1, 15, tzinfo=UTC)

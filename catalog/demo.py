"""The demo catalog: the two worked examples of the brief, built idempotently.

Each example has its own merchant, as a real deployment would: "Neural Labs" sells the "Neural
Language Engine" (an LLM API) and "Cloud Analytics Inc" sells "Cloud Analytics" (a data
warehouse). Every row is found or created by a natural key (merchant + name, plan + line key,
merchant + external id…), so building twice gives the same rows with the same ids, and rows that
finance has since edited in the admin are left as they are. catalog/README.md explains each
pricing choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction

from core.formatting import decimal_string

from .descriptions import price_rate_summary
from .models import (
    Aggregation,
    ApiKey,
    BillableMetric,
    BillingCadence,
    Customer,
    Fee,
    Merchant,
    PaymentTerm,
    Plan,
    Price,
    PriceModel,
    PriceTier,
    Product,
    RatePer,
    Subscription,
)
from .services import api_key_create

D = Decimal
DEMO_API_KEY_NAME = "demo key"
NEURAL_LABS, CLOUD_ANALYTICS = "Neural Labs", "Cloud Analytics Inc"
DEMO_MERCHANT_NAMES = (NEURAL_LABS, CLOUD_ANALYTICS)


@dataclass
class DemoSummary:
    """What the build found or created, for the command to print."""

    created: int = 0
    existing: int = 0
    merchants: list[Merchant] = field(default_factory=list)
    new_api_keys: list[tuple[Merchant, str]] = field(default_factory=list)

    def lines(self) -> Iterable[str]:
        yield f"Demo catalog: {self.created} rows created, {self.existing} already there."
        for merchant in self.merchants:
            yield f"{merchant.name} ({merchant.id})"
            for product in merchant.products.order_by("name"):
                yield f"  Product {product.name} ({product.id})"
                for metric in product.billable_metrics.order_by("name"):
                    how = f"{metric.aggregation} {metric.value_property}".strip()
                    yield f"    metric {metric.name}: {how} of {metric.event_type} ({metric.id})"
                for plan in product.plans.order_by("name"):
                    commitment = (
                        f", minimum {decimal_string(plan.minimum_commitment)}" if plan.minimum_commitment else ""
                    )
                    yield f"    plan {plan.name}: {plan.currency} {plan.get_billing_cadence_display()}{commitment}"
                    for price in plan.prices.select_related("customer").prefetch_related("tiers"):
                        who = f" (negotiated for {price.customer.name})" if price.customer_id else ""
                        yield f"      {price.invoice_display_name}{who}: {price_rate_summary(price)}"
            for subscription in merchant.subscriptions.select_related("customer", "plan").order_by("customer__name"):
                customer = subscription.customer
                yield (
                    f"  Customer {customer.name} (external id {customer.external_id}) on {subscription.plan.name} "
                    f"since {subscription.started_at:%Y-%m-%d}"
                )
        for merchant, raw_key in self.new_api_keys:
            yield f"API key for {merchant.name} (shown once, copy it now): {raw_key}"


class _Builder:
    def __init__(self, summary: DemoSummary) -> None:
        self.summary = summary

    def get_or_create(self, model, defaults: dict | None = None, **natural_key):
        """Find by natural key or validate and create; existing rows are never overwritten."""
        instance = model.objects.filter(**natural_key).first()
        if instance is not None:
            self.summary.existing += 1
            return instance
        instance = model(**natural_key, **(defaults or {}))
        instance.full_clean()
        instance.save()
        self.summary.created += 1
        return instance

    def metric(self, product: Product, name: str, **defaults) -> BillableMetric:
        return self.get_or_create(
            BillableMetric, merchant=product.merchant, product=product, name=name, defaults=defaults
        )

    def plan(self, product: Product, name: str, **defaults) -> Plan:
        defaults.setdefault("currency", "USD")
        return self.get_or_create(Plan, merchant=product.merchant, product=product, name=name, defaults=defaults)

    def price(self, plan: Plan, line_key: str, *, customer: Customer | None = None, tiers=(), **defaults) -> Price:
        defaults.setdefault("payment_term", PaymentTerm.IN_ARREARS)
        price = self.get_or_create(
            Price, merchant=plan.merchant, plan=plan, plan_line_key=line_key, customer=customer, defaults=defaults
        )
        for up_to, unit_price in tiers:
            self.get_or_create(PriceTier, price=price, up_to=up_to, defaults={"unit_price": unit_price})
        return price

    def customer(self, merchant: Merchant, external_id: str, name: str, email: str) -> Customer:
        return self.get_or_create(
            Customer,
            merchant=merchant,
            external_id=external_id,
            defaults={"name": name, "email": email, "country": "US", "currency": "USD"},
        )

    def subscription(self, customer: Customer, plan: Plan, started_at: datetime) -> Subscription:
        return self.get_or_create(
            Subscription,
            merchant=customer.merchant,
            customer=customer,
            plan=plan,
            defaults={"name": f"{customer.name} · {plan.name}", "started_at": started_at},
        )


def first_of_month(now: datetime) -> datetime:
    """Midnight UTC on the first day of ``now``'s month (UTC)."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def first_of_previous_month(now: datetime) -> datetime:
    """Midnight UTC on the first day of the month before ``now``'s (UTC)."""
    return first_of_month(first_of_month(now) - timedelta(days=1))


@transaction.atomic
def demo_catalog_build(*, now: datetime, with_api_keys: bool = True) -> DemoSummary:
    """Build (or find) both worked examples; subscriptions start on the first of ``now``'s month.

    With ``with_api_keys``, a merchant that has no key named "demo key" gets one, and its secret is
    returned once in the summary.
    """
    summary = DemoSummary()
    build = _Builder(summary)
    started_at = first_of_month(now)
    neural = _build_neural_labs(build, started_at)
    cloud = _build_cloud_analytics(build, started_at)
    summary.merchants = [neural, cloud]
    if with_api_keys:
        for merchant in summary.merchants:
            if not ApiKey.objects.filter(merchant=merchant, name=DEMO_API_KEY_NAME).exists():
                _, raw_key = api_key_create(merchant=merchant, name=DEMO_API_KEY_NAME)
                summary.new_api_keys.append((merchant, raw_key))
    return summary


# The two models of the LLM demo (events carry ``model``; the token metrics group by it).
DEMO_MODELS = ("nle-small", "nle-large")


def _per_model(*, small: str, large: str | tuple[str, str], free: str | None = None) -> dict:
    """Rates per model for a token price: nle-small per token; nle-large per token, or graduated with
    the second rate beyond 10M tokens a month. Other models fall back to the price's own rate."""
    large_rate: dict = (
        {"model": "standard", "unitPrice": large}
        if isinstance(large, str)
        else {
            "model": "graduated",
            "tiers": [{"upTo": "10000000", "unitPrice": large[0]}, {"upTo": None, "unitPrice": large[1]}],
        }
    )
    rates = [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": small},
        {"values": {"model": "nle-large"}, **large_rate},
    ]
    if free is not None:
        for rate in rates:
            rate["freeUnits"] = free
    return {"dimensions": ["model"], "tierScope": "combination", "unmatched": "default", "rates": rates}


def _build_neural_labs(build: _Builder, started_at: datetime) -> Merchant:
    merchant = build.get_or_create(
        Merchant,
        name=NEURAL_LABS,
        defaults={"email": "billing@neurallabs.example", "country": "US", "invoice_number_prefix": "NLE"},
    )
    product = build.get_or_create(
        Product,
        merchant=merchant,
        name="Neural Language Engine",
        defaults={"description": "LLM API: completions and fine-tuning."},
    )
    input_tokens = build.metric(
        product,
        "Input tokens",
        unit="tokens",
        aggregation=Aggregation.SUM,
        event_type="llm.completion",
        value_property="$.input_tokens",
        group_by={"model": "$.model"},
    )
    output_tokens = build.metric(
        product,
        "Output tokens",
        unit="tokens",
        aggregation=Aggregation.SUM,
        event_type="llm.completion",
        value_property="$.output_tokens",
        group_by={"model": "$.model"},
    )
    finetune_hours = build.metric(
        product,
        "Fine-tuning compute hours",
        unit="hours",
        aggregation=Aggregation.SUM,
        event_type="llm.finetune",
        value_property="$.hours",
    )
    build.metric(product, "API calls", unit="calls", aggregation=Aggregation.COUNT, event_type="llm.completion")
    platform_fee = build.get_or_create(
        Fee,
        merchant=merchant,
        product=product,
        name="Enterprise platform fee",
        defaults={"description": "Monthly platform access, billed in advance."},
    )

    # Free: list rates per token ($0.002 / 1K input, $0.006 / 1K output) with the first 10,000
    # tokens of each kind free every month; per model, nle-small costs half and nle-large double,
    # each with its own 10,000 free tokens (other models at the list rate).
    free = build.plan(product, "Free", description="10,000 free input and 10,000 free output tokens a month.")
    build.price(
        free,
        "input_tokens",
        billable_metric=input_tokens,
        invoice_display_name="Input tokens",
        unit_price=D("0.000002"),
        rate_per=RatePer.THOUSAND,
        free_units=D("10000"),
        dimensional_rates=_per_model(small="0.000001", large="0.000004", free="10000"),
    )
    build.price(
        free,
        "output_tokens",
        billable_metric=output_tokens,
        invoice_display_name="Output tokens",
        unit_price=D("0.000006"),
        rate_per=RatePer.THOUSAND,
        free_units=D("10000"),
        dimensional_rates=_per_model(small="0.000003", large="0.000012", free="10000"),
    )

    # Pro: tokens are graduated, half price beyond 10,000,000 a month; fine-tuning $3 an hour.
    pro = build.plan(product, "Pro", description="50% volume discount on tokens beyond 10M a month.")
    build.price(
        pro,
        "input_tokens",
        billable_metric=input_tokens,
        invoice_display_name="Input tokens",
        model=PriceModel.GRADUATED,
        rate_per=RatePer.THOUSAND,
        tiers=[(D("10000000"), D("0.000002")), (None, D("0.000001"))],
        dimensional_rates=_per_model(small="0.000001", large=("0.000004", "0.000002")),
    )
    build.price(
        pro,
        "output_tokens",
        billable_metric=output_tokens,
        invoice_display_name="Output tokens",
        model=PriceModel.GRADUATED,
        rate_per=RatePer.THOUSAND,
        tiers=[(D("10000000"), D("0.000006")), (None, D("0.000003"))],
        dimensional_rates=_per_model(small="0.000003", large=("0.000012", "0.000006")),
    )
    build.price(
        pro,
        "finetune_hours",
        billable_metric=finetune_hours,
        invoice_display_name="Fine-tuning compute",
        unit_price=D("3"),
    )

    # Enterprise: $2,000 platform fee in advance, list usage rates, $5,000 monthly minimum.
    enterprise = build.plan(
        product,
        "Enterprise",
        description="Platform fee, negotiated rates and a monthly minimum commitment.",
        minimum_commitment=D("5000"),
    )
    build.price(
        enterprise,
        "platform_fee",
        fee=platform_fee,
        invoice_display_name="Platform fee",
        payment_term=PaymentTerm.IN_ADVANCE,
        billing_cadence="P1M",
        unit_price=D("2000"),
    )
    build.price(
        enterprise,
        "input_tokens",
        billable_metric=input_tokens,
        invoice_display_name="Input tokens",
        unit_price=D("0.000002"),
        rate_per=RatePer.THOUSAND,
    )
    build.price(
        enterprise,
        "output_tokens",
        billable_metric=output_tokens,
        invoice_display_name="Output tokens",
        unit_price=D("0.000006"),
        rate_per=RatePer.THOUSAND,
    )
    build.price(
        enterprise,
        "finetune_hours",
        billable_metric=finetune_hours,
        invoice_display_name="Fine-tuning compute",
        unit_price=D("3"),
    )

    acme = build.customer(merchant, "acme-ai", "Acme AI", "ap@acme-ai.example")
    startup = build.customer(merchant, "startup-studio", "Startup Studio", "founders@startup-studio.example")
    hobbyist = build.customer(merchant, "hobby-hacker", "Hobby Hacker", "me@hobby-hacker.example")
    # Acme AI's negotiated token rates are set through the API's price intervals by invoicing's demo
    # (``invoicing.demo``, ``NEGOTIATED_RATES``): the catalog cannot call invoicing's services.
    build.subscription(acme, enterprise, started_at)
    build.subscription(startup, pro, started_at)
    build.subscription(hobbyist, free, started_at)
    return merchant


def _build_cloud_analytics(build: _Builder, started_at: datetime) -> Merchant:
    merchant = build.get_or_create(
        Merchant,
        name=CLOUD_ANALYTICS,
        defaults={"email": "billing@cloudanalytics.example", "country": "US", "invoice_number_prefix": "CA"},
    )
    product = build.get_or_create(
        Product,
        merchant=merchant,
        name="Cloud Analytics",
        defaults={"description": "Data warehouse: queries, storage and egress."},
    )
    compute = build.metric(
        product,
        "Query compute",
        unit="seconds",
        aggregation=Aggregation.SUM,
        event_type="warehouse.query",
        value_property="$.compute_seconds",
    )
    # Storage is reported as hourly snapshots of the GB held; their average over the month is the
    # GB-months to bill (SUM would multiply by the number of snapshots).
    storage = build.metric(
        product,
        "Storage",
        unit="GB-months",
        aggregation=Aggregation.AVG,
        event_type="warehouse.storage",
        value_property="$.gb",
    )
    egress = build.metric(
        product,
        "Data egress",
        unit="GB",
        aggregation=Aggregation.SUM,
        event_type="warehouse.egress",
        value_property="$.egress_gb",
    )
    build.metric(
        product,
        "Concurrent connections",
        unit="connections",
        aggregation=Aggregation.MAX,
        event_type="warehouse.connections",
        value_property="$.connections",
    )

    def list_prices(plan: Plan, *, compute_discount: Decimal | None = None, egress_tiers=None) -> None:
        build.price(
            plan,
            "compute_seconds",
            billable_metric=compute,
            invoice_display_name="Query compute",
            unit_price=D("0.0001"),
            discount_percent=compute_discount,
        )
        build.price(
            plan, "storage_gb_months", billable_metric=storage, invoice_display_name="Storage", unit_price=D("0.023")
        )
        if egress_tiers:
            build.price(
                plan,
                "egress_gb",
                billable_metric=egress,
                invoice_display_name="Data egress",
                model=PriceModel.VOLUME,
                tiers=egress_tiers,
            )
        else:
            build.price(
                plan, "egress_gb", billable_metric=egress, invoice_display_name="Data egress", unit_price=D("0.09")
            )

    on_demand = build.plan(product, "On-demand", description="Pay per use at list rates.")
    list_prices(on_demand)
    reserved = build.plan(product, "Reserved", description="40% off query compute.")
    list_prices(reserved, compute_discount=D("40"))
    committed = build.plan(
        product,
        "Committed",
        description="Annual commitment of $100,000; volume-tiered egress.",
        billing_cadence=BillingCadence.YEARLY,
        minimum_commitment=D("100000"),
    )
    # Volume tiers: the whole year's egress is priced at the rate of the band the total falls in.
    list_prices(
        committed,
        egress_tiers=[
            (D("10000"), D("0.09")),
            (D("50000"), D("0.085")),
            (D("150000"), D("0.07")),
            (None, D("0.05")),
        ],
    )

    retail = build.customer(merchant, "retail-insights", "Retail Insights", "finance@retail-insights.example")
    fintech = build.customer(merchant, "fintech-ledger", "Fintech Ledger", "ap@fintech-ledger.example")
    logistics = build.customer(merchant, "global-logistics", "Global Logistics", "billing@global-logistics.example")
    build.subscription(retail, on_demand, started_at)
    build.subscription(fintech, reserved, started_at)
    build.subscription(logistics, committed, started_at)
    return merchant

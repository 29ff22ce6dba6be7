"""Builders for invoicing tests: plans with fee and metered prices, usage events."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal

from catalog.models import PaymentTerm, PriceModel
from metering.models import UsageEvent
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    FeePriceFactory,
    MeteredPriceFactory,
    PlanFactory,
    PriceTierFactory,
    ProductFactory,
    SubscriptionFactory,
)

_keys = itertools.count(1)

__all__ = [
    "BillableMetricFactory",
    "CustomerFactory",
    "FeePriceFactory",
    "MeteredPriceFactory",
    "PlanFactory",
    "PriceTierFactory",
    "ProductFactory",
    "SubscriptionFactory",
    "fee_price",
    "metered_price",
    "record_usage",
]


def fee_price(
    plan, amount: str, *, term: str = PaymentTerm.IN_ADVANCE, cadence: str = "P1M", name="Platform fee", **extra
):
    return FeePriceFactory(
        plan=plan,
        unit_price=Decimal(amount),
        payment_term=term,
        billing_cadence=cadence,
        invoice_display_name=name,
        fee__name=name,
        **extra,
    )


def metered_price(plan, unit_price: str | None, *, name="Tokens", unit="tokens", event_type=None, **extra):
    metric_kwargs = {"billable_metric__name": name, "billable_metric__unit": unit}
    if event_type:
        metric_kwargs["billable_metric__event_type"] = event_type
    return MeteredPriceFactory(
        plan=plan,
        unit_price=None if unit_price is None else Decimal(unit_price),
        invoice_display_name=name,
        model=extra.pop("model", PriceModel.STANDARD),
        **metric_kwargs,
        **extra,
    )


def record_usage(customer, metric, timestamp: datetime, value, **data) -> UsageEvent:
    path = (metric.value_property or "$.value").removeprefix("$.")
    return UsageEvent.objects.create(
        merchant=customer.merchant,
        customer=customer,
        event_type=metric.event_type,
        timestamp=timestamp,
        received_at=timestamp,
        idempotency_key=f"test-{next(_keys)}",
        data={path: str(value), **data},
    )

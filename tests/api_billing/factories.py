"""Builders for billing API tests: a plan with a $49 in-advance fee and a token price, usage events."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal

from catalog.models import PaymentTerm
from metering.models import UsageEvent
from tests.factories import CustomerFactory, FeePriceFactory, MeteredPriceFactory, PlanFactory, TestClockFactory

_keys = itertools.count(1)

__all__ = ["CustomerFactory", "TestClockFactory", "llm_plan", "record_usage", "usage_plan"]


def llm_plan(merchant, *, fee: str = "49.00", unit_price: str = "0.000002"):
    """Plan "Pro": a monthly platform fee in advance and input tokens in arrears."""
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    FeePriceFactory(plan=plan, unit_price=Decimal(fee), invoice_display_name="Platform fee", fee__name="Platform fee")
    MeteredPriceFactory(
        plan=plan,
        unit_price=Decimal(unit_price),
        invoice_display_name="Input tokens",
        billable_metric__name="Input tokens",
        billable_metric__unit="tokens",
        billable_metric__event_type="llm.completion",
        billable_metric__value_property="$.tokens",
    )
    return plan


def usage_plan(merchant, *, unit_price: str = "0.000002"):
    """Plan "Usage": input tokens only, nothing in advance."""
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Usage")
    MeteredPriceFactory(
        plan=plan,
        unit_price=Decimal(unit_price),
        payment_term=PaymentTerm.IN_ARREARS,
        invoice_display_name="Input tokens",
        billable_metric__name="Input tokens",
        billable_metric__unit="tokens",
        billable_metric__event_type="llm.completion",
        billable_metric__value_property="$.tokens",
    )
    return plan


def record_usage(customer, plan, timestamp: datetime, tokens: int) -> UsageEvent:
    metric = plan.prices.get(billable_metric__isnull=False).billable_metric
    return UsageEvent.objects.create(
        merchant=customer.merchant,
        customer=customer,
        event_type=metric.event_type,
        timestamp=timestamp,
        received_at=timestamp,
        idempotency_key=f"api-billing-{next(_keys)}",
        data={"tokens": str(tokens)},
    )

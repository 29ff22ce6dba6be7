"""factory-boy factories for usage events."""

from __future__ import annotations

from datetime import UTC, datetime

import factory

from metering.models import UsageEvent
from tests.factories import CustomerFactory


class UsageEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UsageEvent

    customer = factory.SubFactory(CustomerFactory)
    merchant = factory.SelfAttribute("customer.merchant")
    event_type = "llm.completion"
    timestamp = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    received_at = factory.SelfAttribute("timestamp")
    idempotency_key = factory.Sequence(lambda n: f"key-{n}")
    source = "https://api.example.com"
    data = factory.LazyFunction(dict)

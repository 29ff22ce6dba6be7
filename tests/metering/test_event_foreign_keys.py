"""The events table has no foreign-key constraints in the database (migration 0004; metering/README.md,
"Foreign keys"), and what they protected still holds: a customer with events cannot be deleted, and an
event is stored only for an existing customer of the key's merchant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection

from catalog.models import Customer
from catalog.services import CatalogConflict, customer_delete
from metering.models import UsageEvent
from metering.services import events_ingest

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _event(subject, key):
    return {
        "type": "llm.completion",
        "source": "app",
        "subject": subject,
        "data": {"input_tokens": 3},
        "idempotencyKey": key,
    }


def test_the_table_has_no_foreign_key_constraints():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, UsageEvent._meta.db_table)
    assert [name for name, c in constraints.items() if c["foreign_key"]] == []


def test_a_customer_with_events_cannot_be_deleted(merchant, input_tokens, customer):
    events_ingest(merchant=merchant, raw_events=[_event(customer.pk, "k-1")], now=NOW)

    with pytest.raises(CatalogConflict):
        customer_delete(customer=customer)

    assert Customer.objects.filter(pk=customer.pk).exists()


def test_events_are_stored_only_for_the_merchants_existing_customers(merchant, input_tokens, customer):
    outcome = events_ingest(
        merchant=merchant,
        raw_events=[_event(customer.pk, "k-1"), _event("cus_gone", "k-2"), _event(customer.pk, "k-3")],
        now=NOW,
    )

    assert [r.status for r in outcome.results] == ["accepted", "rejected", "accepted"]
    assert set(UsageEvent.objects.values_list("customer_id", flat=True)) == {customer.pk}

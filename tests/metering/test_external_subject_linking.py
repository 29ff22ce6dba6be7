"""Events naming an externalSubject before the customer exists count for it once it exists."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metering.models import UsageEvent
from metering.selectors import usage_aggregate, usage_aggregate_by_customer
from metering.services import events_ingest, events_link_external_subjects
from metering.tasks import events_link_external_subjects_task
from tests.factories import CustomerFactory
from tests.metering.conftest import FEB, JAN, NOW

pytestmark = pytest.mark.django_db


def _event(key: str, tokens: int, **subject):
    return {
        "type": "llm.completion",
        "source": "app",
        "data": {"input_tokens": tokens},
        "timestamp": "2026-01-10T00:00:00Z",
        "idempotencyKey": key,
        **subject,
    }


def test_event_before_the_customer_counts_once_the_customer_exists(merchant, input_tokens):
    # given: an event for an external id no customer has yet
    outcome = events_ingest(merchant=merchant, raw_events=[_event("a", 40, externalSubject="acme-9")], now=NOW)
    assert outcome.accepted[0].customer_id is None
    assert UsageEvent.objects.get().external_subject == "acme-9"

    # when: the customer is created (catalog code, which knows nothing of metering)
    customer = CustomerFactory(merchant=merchant, external_id="acme-9")

    # then: usage is right immediately, before any linking
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal("40")
    assert usage_aggregate_by_customer(metric=input_tokens, start=JAN, end=FEB) == {customer.pk: Decimal("40")}
    assert usage_aggregate_by_customer(metric=input_tokens, start=JAN, end=FEB, customers=[customer]) == {
        customer.pk: Decimal("40")
    }

    # and the beat task links the row, after which nothing is counted twice
    assert events_link_external_subjects_task.delay().get() == 1
    assert UsageEvent.objects.get().customer_id == customer.pk
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal("40")
    assert events_link_external_subjects(merchant=merchant) == 0


def test_ingestion_links_older_events_when_the_subject_resolves(merchant, input_tokens):
    events_ingest(merchant=merchant, raw_events=[_event("a", 40, externalSubject="acme-9")], now=NOW)
    customer = CustomerFactory(merchant=merchant, external_id="acme-9")

    outcome = events_ingest(merchant=merchant, raw_events=[_event("b", 2, externalSubject="acme-9")], now=NOW)

    assert outcome.accepted[0].customer_id == customer.pk
    assert list(UsageEvent.objects.values_list("customer_id", flat=True)) == [customer.pk, customer.pk]
    assert usage_aggregate(metric=input_tokens, customer=customer, start=JAN, end=FEB) == Decimal("42")


def test_same_external_id_at_another_merchant_is_not_linked(merchant, input_tokens):
    events_ingest(merchant=merchant, raw_events=[_event("a", 40, externalSubject="acme-9")], now=NOW)
    stranger = CustomerFactory(external_id="acme-9")

    assert events_link_external_subjects() == 0
    assert UsageEvent.objects.get().customer_id is None
    with pytest.raises(ValueError, match="different merchants"):
        usage_aggregate(metric=input_tokens, customer=stranger, start=JAN, end=FEB)


def test_subject_wins_over_external_subject(merchant, input_tokens, customer):
    other = CustomerFactory(merchant=merchant, external_id="other-1")

    outcome = events_ingest(
        merchant=merchant, raw_events=[_event("a", 1, subject=customer.pk, externalSubject="other-1")], now=NOW
    )

    assert outcome.accepted[0].customer_id == customer.pk
    assert usage_aggregate(metric=input_tokens, customer=other, start=JAN, end=FEB) == Decimal("0")


def test_service_reports_metric_values_of_accepted_rows(merchant, input_tokens, customer):
    outcome = events_ingest(merchant=merchant, raw_events=[_event("a", 7, subject=customer.pk)], now=NOW)

    accepted = outcome.accepted[0]
    assert accepted.metric_values == {input_tokens.pk: Decimal("7")}
    assert accepted.timestamp == datetime(2026, 1, 10, tzinfo=UTC)
    assert accepted.received_at == NOW

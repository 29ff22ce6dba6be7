"""A spend cap on a real-time customer: the refusal is read from the real-time look-up's own customer row, so a
capped real-time customer is refused (402 SPEND_CAP_REACHED, not stored, not debited) and an uncapped one
still costs the hot path's fixed statements."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Customer
from invoicing.realtime import SPEND_CAP_REACHED
from metering.models import UsageEvent

from .conftest import balance, fund, send
from .test_hot_path import STATEMENTS

pytestmark = pytest.mark.django_db

REACHED = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def test_a_capped_real_time_customer_is_refused_without_a_debit(customer, subscription):
    fund(customer, "100")
    send(customer, 10)
    Customer.objects.filter(pk=customer.pk).update(spend_blocked_since=REACHED)  # as the cap's evaluation sets it

    outcome = send(customer, 200, keys=["over-the-cap"])

    assert outcome.counts == {"accepted": 0, "duplicate": 0, "rejected": 1}
    refusal = outcome.refusals[0]
    assert (refusal.code, refusal.details) == (
        SPEND_CAP_REACHED,
        {"customerId": customer.pk, "blockedSince": "2026-03-09T08:00:00Z"},
    )
    assert not UsageEvent.objects.filter(idempotency_key="over-the-cap").exists()
    assert balance(customer) == Decimal("99.9")  # 10 tokens at 0.01 before the cap; nothing after


def test_an_uncapped_real_time_customer_costs_no_statement_more(customer, subscription, django_assert_num_queries):
    fund(customer, "100")
    send(customer, 10)

    with django_assert_num_queries(STATEMENTS):
        send(customer, 200)

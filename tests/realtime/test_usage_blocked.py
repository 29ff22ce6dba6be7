"""Dunning's "block real-time usage": after an unanswered final notice the customer's real-time events are
refused (402 USAGE_BLOCKED, in a batch per item while the others are kept), and accepted again the moment
the overdue invoice is paid. The block is read from the look-up's own row: no statement is added."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Subscription
from invoicing.models import DunningAfterFinal, DunningSettings, PaymentMethod
from invoicing.realtime import USAGE_BLOCKED, events_ingest_and_debit
from invoicing.receivables import payment_record
from invoicing.services import dunning_reminders_send_due
from metering.models import UsageEvent
from tests.factories import CustomerFactory, SubscriptionFactory
from tests.invoicing.receivables import JAN_1, issued

from .conftest import NOW, balance, event, fund, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_subscription(customer, real_time_plan):
    """Subscribed since the start of the current (real) month, so events stamped now are in its period."""
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return SubscriptionFactory(
        plan=real_time_plan, merchant=customer.merchant, customer=customer, started_at=start, billing_anchor=start
    )


def live_event(customer, tokens_used, key=None):
    return event(customer, tokens_used, key=key, at=timezone.now() - timedelta(seconds=1))


def final_notice(subscription, *, now):
    """An invoice of the subscription, issued on Jan 1 and due at once, dunned up to its final notice under a
    merchant that blocks usage after it."""
    DunningSettings.objects.create(
        merchant=subscription.merchant, steps=[3], final_notice_days=10, after_final=DunningAfterFinal.BLOCK_USAGE
    )
    invoice = issued(subscription, "25.00")
    assert invoice.due_at == JAN_1
    (final,) = dunning_reminders_send_due(now=now)
    assert final.final
    return invoice


def pay(invoice, *, at):
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=invoice.amount_due,
        method=PaymentMethod.BANK_TRANSFER,
        received_at=at,
        now=at,
        invoice_ids=[invoice.pk],
    )


def test_events_are_refused_while_blocked_and_accepted_after_payment(api_client, customer, live_subscription):
    fund(customer, "10", now=timezone.now())
    invoice = final_notice(live_subscription, now=timezone.now())
    blocked_since = Subscription.objects.get(pk=live_subscription.pk).usage_blocked_since

    refused = api_client.post("/v0/events", live_event(customer, 100, key="while-blocked"), format="json")

    assert refused.status_code == 402
    body = refused.json()
    assert (body["error"], body["code"]) == ("payment_required", "USAGE_BLOCKED")
    assert body["details"] == {
        "subscriptionId": live_subscription.pk,
        "blockedSince": blocked_since.isoformat().replace("+00:00", "Z"),
    }
    assert "unpaid after its final notice" in body["message"]
    assert not UsageEvent.objects.filter(idempotency_key="while-blocked").exists()
    assert balance(customer) == Decimal(10)

    pay(invoice, at=timezone.now())
    accepted = api_client.post("/v0/events", live_event(customer, 100, key="while-blocked"), format="json")

    assert accepted.status_code == 202
    assert UsageEvent.objects.filter(idempotency_key="while-blocked").exists()
    assert balance(customer) == Decimal(9)


def test_a_batch_keeps_the_other_customers_events(api_client, merchant, customer, live_subscription):
    other = CustomerFactory(merchant=merchant, currency="USD", time_zone="UTC", external_id="other-ext")
    SubscriptionFactory(
        plan=live_subscription.plan,
        merchant=merchant,
        customer=other,
        started_at=live_subscription.started_at,
        billing_anchor=live_subscription.started_at,
    )
    fund(customer, "10", now=timezone.now())
    fund(other, "10", now=timezone.now())
    final_notice(live_subscription, now=timezone.now())
    by_external = {**live_event(other, 300, key="o2"), "externalSubject": "other-ext"}
    del by_external["subject"]
    events = [
        live_event(other, 100, key="o1"),
        live_event(customer, 100, key="b1"),
        by_external,
        {"type": "tokens.used", "subject": other.pk},  # a bad item stays a field error
        live_event(customer, 50, key="b2"),
    ]

    response = api_client.post("/v0/events/batch", {"events": events}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["counts"] == {"accepted": 2, "duplicate": 0, "rejected": 3}
    results = body["results"]
    assert [item["index"] for item in results] == [0, 1, 2, 3, 4]
    assert [item["status"] for item in results] == ["accepted", "rejected", "accepted", "rejected", "rejected"]
    assert [results[i]["idempotencyKey"] for i in (0, 1, 2, 4)] == ["o1", "b1", "o2", "b2"]
    for index in (1, 4):
        assert results[index]["code"] == "USAGE_BLOCKED"
        assert results[index]["details"]["subscriptionId"] == live_subscription.pk
        assert "id" not in results[index]
    assert "code" not in results[3]
    assert results[3]["errors"][0]["field"] == "source"
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == {"o1", "o2"}
    assert (balance(customer), balance(other)) == (Decimal(10), Decimal(6))


def test_a_blocked_customer_named_by_external_subject_is_refused(customer, live_subscription):
    customer.external_id = "acme-ext"
    customer.save()
    final_notice(live_subscription, now=timezone.now())
    raw = {**live_event(customer, 10, key="x1"), "externalSubject": "acme-ext"}
    del raw["subject"]

    outcome = events_ingest_and_debit(merchant=customer.merchant, raw_events=[raw], now=timezone.now())

    assert outcome.refusals[0].code == USAGE_BLOCKED
    assert outcome.accepted == []


def test_a_blocked_request_adds_no_statement_to_the_look_up(customer, subscription, django_assert_num_queries):
    # given the customer found real-time by a first request, then blocked
    fund(customer, "100")
    send(customer, 10)
    Subscription.objects.filter(pk=subscription.pk).update(past_due_since=NOW, usage_blocked_since=NOW)

    # when one more event arrives: the subscriptions' look-up only, nothing stored, nothing locked
    with django_assert_num_queries(1):
        outcome = send(customer, 200)

    assert list(outcome.refusals) == [0]
    assert outcome.counts == {"accepted": 0, "duplicate": 0, "rejected": 1}
    assert balance(customer) == Decimal("99.9")

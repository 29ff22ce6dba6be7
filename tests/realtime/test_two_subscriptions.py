"""A customer with two real-time subscriptions that meter the same usage.

Each subscription's period invoice bills the usage of its metrics, so an event of that metric is
debited once per subscription: each debit names its subscription, and each invoice settles its own.
(The debit keys carry the subscription: two subscriptions of one plan share the price.)
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.realtime import events_ingest_and_debit, events_link_and_debit
from invoicing.services import billing_run_execute, invoice_finalize
from tests.factories import CustomerFactory, SubscriptionFactory
from wallets.models import EntryKind, LedgerEntry

from .conftest import APRIL, EVENT_TYPE, MARCH, NOW, balance, fund, send

pytestmark = pytest.mark.django_db

CLOSE = APRIL + timedelta(hours=1)


def debited_by_subscription(customer) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for entry in LedgerEntry.objects.filter(wallet__customer=customer, kind=EntryKind.USAGE_DEBIT):
        totals[entry.subscription_id] = totals.get(entry.subscription_id, Decimal(0)) - entry.amount
    return totals


def second_subscription(customer, plan):
    return SubscriptionFactory(
        plan=plan, merchant=customer.merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH
    )


@pytest.mark.parametrize("sent_as", ["two requests", "one batch"])
def test_two_subscriptions_of_one_plan_are_each_debited(customer, subscription, real_time_plan, sent_as):
    # given two subscriptions of the Prepaid plan (1,000 tokens at 0.01, then 0.005) and $100
    second = second_subscription(customer, real_time_plan)
    fund(customer, "100")

    # when 1,200 tokens arrive
    if sent_as == "two requests":
        send(customer, 600)
        send(customer, 600)
    else:
        send(customer, 600, 600)

    # then each subscription paid the price of 1,200 tokens: 10 + 200 × 0.005 = 11
    assert debited_by_subscription(customer) == {subscription.pk: Decimal("11"), second.pk: Decimal("11")}
    assert balance(customer) == Decimal("78")


def test_each_period_invoice_settles_its_own_subscriptions_debits(customer, subscription, real_time_plan):
    second = second_subscription(customer, real_time_plan)
    fund(customer, "100")
    send(customer, 600, now=MARCH + timedelta(days=9))
    send(customer, 600, now=MARCH + timedelta(days=9))

    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    for sub in (subscription, second):
        draft = Invoice.objects.get(subscription=sub, kind=InvoiceKind.RECURRING, period_start=MARCH)
        invoice = invoice_finalize(invoice=draft, now=CLOSE)
        assert [(line.kind, line.amount) for line in invoice.lines.order_by("position")] == [
            (LineKind.USAGE, Decimal("11.0000")),
            (LineKind.PREPAID, Decimal("-11.0000")),
        ]
        assert (invoice.total, invoice.amount_due) == (Decimal("11.00"), Decimal("0.00"))
    assert balance(customer) == Decimal("78")


def test_events_linked_later_are_caught_up_for_each_subscription(merchant, real_time_plan):
    # given 1,200 tokens sent before the customer existed, then the customer with two subscriptions
    for tokens_used, key in ((800, "early-1"), (400, "early-2")):
        events_ingest_and_debit(
            merchant=merchant,
            raw_events=[
                {
                    "type": EVENT_TYPE,
                    "source": "crm",
                    "externalSubject": "crm-2",
                    "timestamp": (MARCH + timedelta(days=2)).isoformat(),
                    "idempotencyKey": key,
                    "data": {"tokens": tokens_used},
                }
            ],
            now=MARCH + timedelta(days=2),
        )
    customer = CustomerFactory(merchant=merchant, currency="USD", time_zone="UTC", external_id="crm-2")
    first, second = (second_subscription(customer, real_time_plan) for _ in range(2))
    fund(customer, "100")

    # when they are linked
    outcome = events_link_and_debit(now=NOW)

    # then each subscription is debited the price of the linked usage
    assert sorted(d.subscription_id for d in outcome.debits) == sorted([first.pk, second.pk])
    assert debited_by_subscription(customer) == {first.pk: Decimal("11"), second.pk: Decimal("11")}

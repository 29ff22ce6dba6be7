"""The real-time ingestion hot path costs a fixed number of statements per request (REALTIME.md,
"Throughput"): one event, and a batch spread over several customers, once their usage counters exist.

Inside the test's transaction ``events_ingest_and_debit``'s own transaction is a savepoint (SAVEPOINT
and RELEASE where production has BEGIN and COMMIT), so the counts are the production counts.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from invoicing.realtime import events_ingest_and_debit
from tests.factories import CustomerFactory, SubscriptionFactory
from wallets.models import LedgerAllocation, LedgerEntry

from .conftest import MARCH, NOW, balance, event, fund, send

pytestmark = pytest.mark.django_db

# (The real-time check is skipped: the customer was found real-time by the request before, see
# ``test_a_customer_found_real_time_skips_the_check``.) Savepoint, subscriptions, prices (on PostgreSQL with their tiers, dynamic rates and
# metric filters; elsewhere three more statements), wallet lock, counters, insert of the events, lots,
# then the writes: ledger entries, allocations, lots update, wallets update, the period's running debit
# total, counter upsert — on PostgreSQL one statement (a core.bulk.WriteBatch), on SQLite six
# and a read of the period total before its write (its NUMERIC sums are floating point) — release.
STATEMENTS = 9 if connection.vendor == "postgresql" else 18
# A batch goes through metering's batch insert, inside the same transaction without a savepoint of its
# own, and its customers are those read with the subscriptions (no look-up): the same count.
BATCH_STATEMENTS = STATEMENTS


def _customers(merchant, plan, count):
    customers = []
    for n in range(count):
        customer = CustomerFactory(merchant=merchant, name=f"Spread {n}", currency="USD", time_zone="UTC")
        SubscriptionFactory(plan=plan, merchant=merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH)
        fund(customer, "100")
        customers.append(customer)
    return customers


def test_one_event_costs_a_fixed_number_of_statements(customer, subscription, django_assert_num_queries):
    # given a funded wallet and the customer's counter created by a first event
    fund(customer, "100")
    send(customer, 10)

    # when one more event arrives
    with django_assert_num_queries(STATEMENTS):
        outcome = send(customer, 200)

    # then it is stored and debited exactly (graduated: 210 tokens at 0.01)
    assert [debit.amount for debit in outcome.debits] == [Decimal(2)]
    assert balance(customer) == Decimal("97.9")


def test_spread_batch_costs_a_fixed_number_of_statements(merchant, real_time_plan, django_assert_num_queries):
    # given five funded real-time customers whose counters exist
    customers = _customers(merchant, real_time_plan, 5)
    for customer in customers:
        send(customer, 1)

    # when a batch of 20 events spread over them arrives
    raw_events = [event(customers[n % 5], 100) for n in range(20)]
    with django_assert_num_queries(BATCH_STATEMENTS):
        outcome = events_ingest_and_debit(merchant=merchant, raw_events=raw_events, now=NOW)

    # then the statements do not grow with the customers, every event is stored and each customer is
    # debited once for its 400 tokens: 1 → 401 tokens at 0.01
    assert outcome.counts["accepted"] == 20
    assert sorted(debit.amount for debit in outcome.debits) == [Decimal(4)] * 5
    assert [balance(customer) for customer in customers] == [Decimal("95.99")] * 5
    entries = LedgerEntry.objects.filter(wallet__customer__in=customers, kind="usage_debit", amount=Decimal(-4))
    assert entries.count() == 5
    assert LedgerAllocation.objects.filter(entry__in=entries).count() == 5


def test_a_customer_found_real_time_skips_the_check(customer, subscription, django_assert_num_queries):
    from catalog.models import BillingMode
    from invoicing.realtime import lookup
    from metering.models import UsageEvent

    fund(customer, "100")
    send(customer, 10)  # creates the usage counter
    lookup.SEEN_REAL_TIME.discard(customer.pk)  # as in a process that has not seen the customer
    # the first request tries the one-statement insert (declined: the customer is real-time), then asks for
    # the subscriptions
    with django_assert_num_queries(STATEMENTS + 1):
        send(customer, 10)
    # the next ones go straight to the subscriptions
    with django_assert_num_queries(STATEMENTS):
        send(customer, 10)

    # when the subscription is no longer real-time, the hint is stale: the subscriptions statement finds
    # none, the event is only ingested, and the next request asks the check again
    subscription.billing_mode = BillingMode.POST_PAID
    subscription.save(update_fields=["billing_mode"])
    outcome = send(customer, 10)
    assert outcome.debits == [] and outcome.counts["accepted"] == 1
    assert customer.pk not in lookup.SEEN_REAL_TIME
    assert balance(customer) == Decimal("99.7")
    assert UsageEvent.objects.filter(customer=customer).count() == 4

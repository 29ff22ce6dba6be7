"""Events sent with an externalSubject before their customer existed are debited when they are linked.

The rule (REALTIME.md, "Events linked to their customer later"): when such events are linked to a
customer with an active real-time subscription — by the beat (``invoicing.link_external_subjects``) or
by a request naming the customer by ``externalSubject`` — the linking transaction debits the usage they
add, so that the plan part's debits equal the price of its usage; the period invoice then settles them
like any debit. Delivered usage is never refused: under the block policy the uncovered part is overage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import BillingMode
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.realtime import events_ingest_and_debit, events_link_and_debit
from invoicing.services import billing_run_execute, invoice_finalize
from invoicing.tasks import link_external_subjects_task
from metering.models import UsageEvent
from tests.factories import CustomerFactory, PlanFactory, SubscriptionFactory
from wallets.models import EntryKind, LedgerEntry, Wallet

from .conftest import APRIL, EVENT_TYPE, MARCH, fund, graduated_price, send

pytestmark = pytest.mark.django_db

EXTERNAL = "acme-crm-7"
CLOSE = APRIL + timedelta(hours=1)


def day(n: int) -> datetime:
    return datetime(2026, 3, n, 9, 0, tzinfo=MARCH.tzinfo)


def by_external(merchant, tokens_used: int, *, at: datetime, key: str, now: datetime | None = None):
    return events_ingest_and_debit(
        merchant=merchant,
        raw_events=[
            {
                "type": EVENT_TYPE,
                "source": "crm",
                "externalSubject": EXTERNAL,
                "timestamp": at.isoformat(),
                "idempotencyKey": key,
                "data": {"tokens": tokens_used},
            }
        ],
        now=now or at,
    )


@pytest.fixture
def early_events(merchant, tokens):
    """800 then 400 tokens (1,200: 11.00 on the Prepaid plan) sent before the customer existed."""
    first = by_external(merchant, 800, at=day(2), key="early-1")
    by_external(merchant, 400, at=day(3), key="early-2")
    assert first.accepted[0].customer_id is None
    return list(UsageEvent.objects.order_by("id").values_list("id", flat=True))


@pytest.fixture
def crm_customer(merchant):
    return CustomerFactory(merchant=merchant, name="Acme CRM", currency="USD", time_zone="UTC", external_id=EXTERNAL)


@pytest.fixture
def crm_subscription(crm_customer, real_time_plan):
    return SubscriptionFactory(
        plan=real_time_plan,
        merchant=crm_customer.merchant,
        customer=crm_customer,
        started_at=MARCH,
        billing_anchor=MARCH,
    )


def usage_debits(customer) -> list[tuple[str, Decimal, Decimal, list]]:
    return [
        (entry.idempotency_key.split(":")[0], -entry.amount, entry.overage_amount, entry.event_ids)
        for entry in LedgerEntry.objects.filter(wallet__customer=customer, kind=EntryKind.USAGE_DEBIT).order_by(
            "sequence"
        )
    ]


def test_linking_debits_the_usage_the_events_add(early_events, crm_customer, crm_subscription):
    # given the customer, its real-time subscription since March 1 and 100 of credit
    fund(crm_customer, "100", now=day(4))

    # when the beat links the early events
    outcome = events_link_and_debit(now=day(4))

    # then they are the customer's and their usage (1,200 tokens, across the 1,000 tier) is debited once
    assert outcome.linked == 2
    assert list(UsageEvent.objects.values_list("customer_id", flat=True)) == [crm_customer.pk] * 2
    [debit] = outcome.debits
    assert (debit.subscription_id, debit.period_start, debit.amount, debit.covered_by_credit) == (
        crm_subscription.pk,
        MARCH,
        Decimal("11"),
        Decimal("11"),
    )
    assert usage_debits(crm_customer) == [
        ("rt-link", Decimal("11"), Decimal("0"), [f"evt_{early_events[0]}", f"evt_{early_events[1]}"])
    ]
    # and the next event is priced on top of them, like any real-time event
    later = send(crm_customer, 300, now=day(5), at=day(5))
    assert [(d.usage_before, d.usage_after, d.amount) for d in later.debits] == [
        (Decimal(1200), Decimal(1500), Decimal("1.5"))
    ]
    # a second run links and debits nothing
    assert events_link_and_debit(now=day(6)) == type(outcome)(linked=0)

    # then March's invoice settles all of it: nothing due, nothing charged twice
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    march = invoice_finalize(
        invoice=Invoice.objects.get(subscription=crm_subscription, kind=InvoiceKind.RECURRING), now=CLOSE
    )
    assert [(line.kind, line.amount) for line in march.lines.order_by("position")] == [
        (LineKind.USAGE, Decimal("12.5000")),
        (LineKind.PREPAID, Decimal("-12.5000")),
    ]
    assert (march.total, march.amount_due) == (Decimal("12.50"), Decimal("0.00"))
    assert Wallet.objects.get(customer=crm_customer).balance == Decimal("87.5")


def test_events_debited_before_the_link_are_caught_up_exactly(merchant, early_events, crm_customer, crm_subscription):
    # given a real-time event of the customer debited before the beat ran: priced on top of the early
    # 1,200 tokens (the selectors count unlinked events by external id), so 300 × 0.005
    fund(crm_customer, "100", now=day(4))
    assert [d.amount for d in send(crm_customer, 300, now=day(4), at=day(4)).debits] == [Decimal("1.5")]

    # when the beat links the early events
    outcome = events_link_and_debit(now=day(5), merchant=merchant)

    # then the catch-up brings the debits to the price of the 1,500 tokens: 12.50 − 1.50 already debited
    assert [debit.amount for debit in outcome.debits] == [Decimal("11")]
    assert sum((cost for _, cost, _, _ in usage_debits(crm_customer)), Decimal(0)) == Decimal("12.5")


def test_a_request_naming_the_customer_by_external_id_debits_its_early_events_first(
    merchant, early_events, crm_customer, crm_subscription
):
    fund(crm_customer, "100", now=day(4))

    # when the customer's next event names it by externalSubject (metering would link the early ones)
    outcome = by_external(merchant, 300, at=day(4), key="now-1")

    # then the early events were linked and debited first, in their own transaction, then this event
    assert UsageEvent.objects.filter(customer__isnull=True).count() == 0
    assert [(d.usage_before, d.usage_after, d.amount) for d in outcome.debits] == [
        (Decimal(1200), Decimal(1500), Decimal("1.5"))
    ]
    assert [(kind, cost) for kind, cost, _, _ in usage_debits(crm_customer)] == [
        ("rt-link", Decimal("11")),
        ("rt", Decimal("1.5")),
    ]


def test_delivered_usage_is_debited_under_the_block_policy_too(early_events, crm_customer, crm_subscription):
    # given 5 of credit and the block policy
    fund(crm_customer, "5", policy="block", now=day(4))

    # when the early events are linked
    outcome = link_external_subjects_task.delay(day(4).isoformat()).get()

    # then they are not refused (they were delivered): 5 from credit, 6 of overage for the invoice
    assert outcome == 2
    assert usage_debits(crm_customer)[0][:3] == ("rt-link", Decimal("11"), Decimal("6"))
    wallet = Wallet.objects.get(customer=crm_customer)
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal("-6"), Decimal("6"))


def test_usage_of_an_invoiced_period_or_a_post_paid_customer_is_only_linked(merchant, tokens, early_events):
    # given the early events' customer on a post-paid plan
    plan = PlanFactory(product=tokens.product, merchant=merchant, billing_mode=BillingMode.POST_PAID)
    graduated_price(plan, tokens)
    customer = CustomerFactory(merchant=merchant, currency="USD", time_zone="UTC", external_id=EXTERNAL)
    SubscriptionFactory(plan=plan, merchant=merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH)

    outcome = events_link_and_debit(now=day(4))

    # then the events are linked, nothing is debited and no wallet is opened
    assert (outcome.linked, outcome.debits) == (2, [])
    assert not Wallet.objects.filter(customer=customer).exists()


def test_early_usage_of_an_issued_period_is_left_to_late_usage(merchant, early_events, crm_customer, crm_subscription):
    # given March invoiced and issued (its usage, the early events included, billed in full)
    billing_run_execute(as_of=CLOSE, clock=lambda: CLOSE)
    march = invoice_finalize(
        invoice=Invoice.objects.get(subscription=crm_subscription, kind=InvoiceKind.RECURRING), now=CLOSE
    )
    assert march.amount_due == Decimal("11.00")

    # when the events are linked afterwards
    outcome = events_link_and_debit(now=CLOSE + timedelta(days=1))

    # then nothing is debited: the invoice billed them already
    assert (outcome.linked, outcome.debits) == (2, [])
    assert usage_debits(crm_customer) == []

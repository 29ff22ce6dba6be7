"""Subscription lifecycle: trial, termination now or at period end, upgrade with proration, downgrade."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import PaymentTerm, Subscription, SubscriptionStatus
from invoicing.models import (
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    PlanChangeKind,
    SubscriptionPlanChange,
)
from invoicing.services import (
    SubscriptionChangeError,
    SubscriptionTerminatedError,
    billing_run_execute,
    subscription_downgrade,
    subscription_reactivate,
    subscription_start,
    subscription_terminate,
    subscription_upgrade,
)
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def lines_of(invoice):
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


@pytest.fixture
def customer(seller):
    return CustomerFactory(merchant=seller)


def make_plan(seller, name, fee, unit_price):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name=name)
    fee_price(plan, fee, term=PaymentTerm.IN_ADVANCE, name=f"{name} fee")
    metered_price(plan, unit_price, name=f"{name} calls", unit="calls", event_type="api.call")
    return plan


def metric_of(plan):
    return plan.prices.get(billable_metric__isnull=False).billable_metric


def test_trial_waives_fees_and_usage_until_it_ends(seller, customer):
    # given a 14-day trial from January 1st
    plan = make_plan(seller, "Pro", "49.00", "0.01")
    subscription = subscription_start(
        customer=customer, plan=plan, started_at=JAN_1, now=JAN_1, trial_ends_at=datetime(2026, 1, 15, tzinfo=UTC)
    )
    record_usage(customer, metric_of(plan), datetime(2026, 1, 10, tzinfo=UTC), 1000)  # in the trial
    record_usage(customer, metric_of(plan), datetime(2026, 1, 20, tzinfo=UTC), 500)
    # then the opening fee covers January 15–31 only: 49 × 17/31 = 26.870… → 26.87
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)
    assert lines_of(opening) == [
        (LineKind.FEE, "Pro fee (Jan 15, 2026 – Jan 31, 2026), prorated 17/31 days", Decimal("26.8700"))
    ]
    # and January's usage counts from the trial's end
    billing_run_execute(as_of=FEB_1)
    recurring = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert lines_of(recurring) == [
        (LineKind.USAGE, "Pro calls: 500 calls (Jan 15, 2026 – Jan 31, 2026)", Decimal("5.0000")),
        (LineKind.FEE, "Pro fee (Feb 1, 2026 – Feb 28, 2026)", Decimal("49.0000")),
    ]


def test_terminate_now_bills_the_partial_period_and_credits_unused_days(seller, customer):
    # given $31 a month in advance (a dollar a day in January)
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, metric_of(plan), datetime(2026, 1, 5, tzinfo=UTC), 300)
    # when terminated on January 21st at 10:00
    at = datetime(2026, 1, 21, 10, 0, tzinfo=UTC)
    subscription = subscription_terminate(subscription=subscription, now=at, reason="moving on")
    # then the final invoice bills usage up to now and credits January 21–31 (11 days)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert (final.period_start, final.period_end) == (JAN_1, at)
    assert lines_of(final) == [
        (LineKind.USAGE, "Pro calls: 300 calls (Jan 1, 2026 – Jan 21, 2026)", Decimal("3.0000")),
        (
            LineKind.CREDIT,
            "Credit for unused time: Pro fee (Jan 21, 2026 – Jan 31, 2026), prorated 11/31 days",
            Decimal("-11.0000"),
        ),
    ]
    assert (final.total, final.amount_due) == (Decimal("-8.00"), Decimal("0.00"))
    assert (subscription.status, subscription.terminated_at) == (SubscriptionStatus.TERMINATED, at)
    # and nothing more is billed later
    run = billing_run_execute(as_of=datetime(2026, 4, 1, tzinfo=UTC))
    assert run.invoices_created == 0
    assert Invoice.objects.filter(subscription=subscription).count() == 2


def test_terminate_at_period_end_bills_no_further_period(seller, customer):
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    subscription = subscription_terminate(
        subscription=subscription, now=datetime(2026, 1, 12, tzinfo=UTC), at_period_end=True
    )
    assert (subscription.status, subscription.ending_at) == (SubscriptionStatus.ACTIVE, FEB_1)
    billing_run_execute(as_of=FEB_1)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    # January's usage only: no platform fee for February
    assert [line.kind for line in final.lines.all()] == [LineKind.USAGE]
    subscription.refresh_from_db()
    assert (subscription.status, subscription.terminated_at) == (SubscriptionStatus.TERMINATED, FEB_1)
    assert billing_run_execute(as_of=datetime(2026, 3, 5, tzinfo=UTC)).invoices_created == 0


def test_termination_keeps_the_change_reason_in_the_metadata(seller, customer):
    # given a subscription with metadata of its own
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(
        customer=customer, plan=plan, started_at=JAN_1, now=JAN_1, extra_fields={"metadata": {"crm": "42"}}
    )
    # when it is terminated with a change reason
    subscription = subscription_terminate(
        subscription=subscription,
        now=datetime(2026, 1, 21, tzinfo=UTC),
        reason="moving on",
        by="finance",
        change_reason="commercial",
    )
    # then the reason joins the metadata, next to what was there
    subscription.refresh_from_db()
    assert subscription.metadata == {"crm": "42", "terminationChangeReason": "commercial"}
    assert (subscription.status, subscription.termination_reason, subscription.terminated_by) == (
        SubscriptionStatus.TERMINATED,
        "moving on",
        "finance",
    )


def test_terminating_a_subscription_waiting_for_payment_closes_nothing(seller, customer):
    # given a subscription waiting for its opening invoice to be paid
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    Subscription.objects.filter(pk=subscription.pk).update(status=SubscriptionStatus.PENDING_PAYMENT)
    record_usage(customer, metric_of(plan), datetime(2026, 1, 5, tzinfo=UTC), 300)
    # when it is terminated
    at = datetime(2026, 1, 21, tzinfo=UTC)
    subscription = subscription_terminate(subscription=subscription, now=at, reason="never paid")
    # then it ends now and no period is billed (the opening invoice stays the only one)
    assert (subscription.status, subscription.terminated_at) == (SubscriptionStatus.TERMINATED, at)
    assert list(Invoice.objects.filter(subscription=subscription).values_list("kind", flat=True)) == [
        InvoiceKind.OPENING
    ]
    assert subscription.metadata == {}


@pytest.mark.parametrize(
    ("requested_at", "message"),
    [
        (JAN_1, "Must be after startedAt."),
        (
            datetime(2026, 1, 21, tzinfo=UTC) - timedelta(seconds=61),
            "A backdated termination is not supported; terminate now or set endingAt.",
        ),
    ],
)
def test_a_termination_at_or_before_the_start_or_backdated_is_refused(seller, customer, requested_at, message):
    # given an active subscription, on January 21st
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    now = datetime(2026, 1, 21, tzinfo=UTC)
    # when it is asked to end at its start, or more than a minute in the past
    with pytest.raises(SubscriptionChangeError) as refused:
        subscription_terminate(subscription=subscription, now=now, requested_at=requested_at)
    # then the refusal names terminatedAt and nothing was written or billed
    assert (refused.value.field, str(refused.value)) == ("terminatedAt", message)
    subscription.refresh_from_db()
    assert (subscription.status, subscription.terminated_at) == (SubscriptionStatus.ACTIVE, None)
    assert Invoice.objects.filter(subscription=subscription).exclude(kind=InvoiceKind.OPENING).count() == 0


@pytest.mark.parametrize(
    "requested_at",
    [datetime(2026, 1, 21, tzinfo=UTC) - timedelta(seconds=60), datetime(2026, 3, 1, tzinfo=UTC)],
    ids=["within-a-minute-before", "later"],
)
def test_a_requested_termination_time_within_a_minute_or_later_terminates_now(seller, customer, requested_at):
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    now = datetime(2026, 1, 21, tzinfo=UTC)

    subscription = subscription_terminate(subscription=subscription, now=now, requested_at=requested_at)

    assert (subscription.status, subscription.terminated_at) == (SubscriptionStatus.TERMINATED, now)


def test_terminating_twice_is_refused_as_already_terminated(seller, customer):
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    subscription_terminate(subscription=subscription, now=datetime(2026, 1, 21, tzinfo=UTC))

    # the stale instance (still active in memory) and a fresh one are refused alike
    for instance in (subscription, Subscription.objects.get(pk=subscription.pk)):
        with pytest.raises(SubscriptionTerminatedError, match="^The subscription is already terminated.$"):
            subscription_terminate(subscription=instance, now=datetime(2026, 1, 22, tzinfo=UTC))
    # a state conflict, not a field to blame; still an InvoiceError for the admin's callers
    assert issubclass(SubscriptionTerminatedError, InvoiceError)
    assert SubscriptionTerminatedError("x").field is None


def test_reactivating_an_active_subscription_changes_nothing(seller, customer, django_assert_num_queries):
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    updated_at = subscription.updated_at

    with django_assert_num_queries(0):
        same = subscription_reactivate(subscription=subscription)

    assert same is subscription
    subscription.refresh_from_db()
    assert (subscription.status, subscription.updated_at) == (SubscriptionStatus.ACTIVE, updated_at)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            SubscriptionStatus.PENDING_PAYMENT,
            "The subscription is pending_payment; it becomes active when Invoice 0 is paid",
        ),
        (SubscriptionStatus.TERMINATED, "A terminated subscription cannot be reactivated; start a new one."),
    ],
)
def test_a_pending_or_terminated_subscription_cannot_be_reactivated(seller, customer, status, message):
    plan = make_plan(seller, "Pro", "31.00", "0.01")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    Subscription.objects.filter(pk=subscription.pk).update(status=status)
    subscription.refresh_from_db()

    with pytest.raises(SubscriptionChangeError) as refused:
        subscription_reactivate(subscription=subscription)

    assert (refused.value.field, str(refused.value)) == (None, message)
    subscription.refresh_from_db()
    assert subscription.status == status


def test_upgrade_credits_the_old_plan_and_charges_the_new_one_pro_rata(seller, customer):
    basic = make_plan(seller, "Basic", "30.00", "0.01")
    pro = make_plan(seller, "Pro", "90.00", "0.005")
    subscription = subscription_start(customer=customer, plan=basic, started_at=JAN_1, now=JAN_1)
    record_usage(customer, metric_of(basic), datetime(2026, 1, 5, tzinfo=UTC), 100)
    # when upgrading on January 22nd at noon: 10 of January's 31 days remain
    at = datetime(2026, 1, 22, 12, 0, tzinfo=UTC)
    change_invoice = subscription_upgrade(subscription=subscription, new_plan=pro, now=at)
    record_usage(customer, metric_of(pro), datetime(2026, 1, 25, tzinfo=UTC), 200)
    # then the old plan's usage is settled, 30 × 10/31 = 9.677… credited and 90 × 10/31 = 29.032… charged
    assert change_invoice.kind == InvoiceKind.PLAN_CHANGE
    assert lines_of(change_invoice) == [
        (LineKind.USAGE, "Basic calls: 100 calls (Jan 1, 2026 – Jan 22, 2026)", Decimal("1.0000")),
        (
            LineKind.CREDIT,
            "Credit for unused time: Basic fee (Jan 22, 2026 – Jan 31, 2026), prorated 10/31 days",
            Decimal("-9.6800"),
        ),
        (LineKind.FEE, "Pro fee (Jan 22, 2026 – Jan 31, 2026), prorated 10/31 days", Decimal("29.0300")),
    ]
    assert change_invoice.total == Decimal("20.35")
    change = SubscriptionPlanChange.objects.get(subscription=subscription)
    assert (change.kind, change.effective_at, change.applied_at) == (PlanChangeKind.UPGRADE, at, at)
    # and January's closing invoice bills the new plan from the upgrade on, and February in advance
    billing_run_execute(as_of=FEB_1)
    recurring = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert recurring.plan_id == pro.id
    assert lines_of(recurring) == [
        (LineKind.USAGE, "Pro calls: 200 calls (Jan 22, 2026 – Jan 31, 2026)", Decimal("1.0000")),
        (LineKind.FEE, "Pro fee (Feb 1, 2026 – Feb 28, 2026)", Decimal("90.0000")),
    ]


def test_downgrade_takes_effect_at_the_period_end(seller, customer):
    pro = make_plan(seller, "Pro", "90.00", "0.005")
    basic = make_plan(seller, "Basic", "30.00", "0.01")
    subscription = subscription_start(customer=customer, plan=pro, started_at=JAN_1, now=JAN_1)
    change = subscription_downgrade(subscription=subscription, new_plan=basic, now=datetime(2026, 1, 10, tzinfo=UTC))
    assert (change.effective_at, change.applied_at) == (FEB_1, None)
    record_usage(customer, metric_of(pro), datetime(2026, 1, 20, tzinfo=UTC), 1000)
    billing_run_execute(as_of=FEB_1)
    recurring = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    # January at Pro prices, February's fee at the Basic price
    assert lines_of(recurring) == [
        (LineKind.USAGE, "Pro calls: 1,000 calls (Jan 1, 2026 – Jan 31, 2026)", Decimal("5.0000")),
        (LineKind.FEE, "Basic fee (Feb 1, 2026 – Feb 28, 2026)", Decimal("30.0000")),
    ]
    subscription.refresh_from_db()
    change.refresh_from_db()
    assert subscription.plan_id == basic.id
    assert change.applied_at == FEB_1
    assert recurring.status == InvoiceStatus.DRAFT

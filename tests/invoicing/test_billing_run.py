"""The billing run: due periods invoiced exactly once, in advance vs in arrears, runs recorded, crashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import PaymentTerm
from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.services import billing_run_execute, runs, subscription_start
from tests.invoicing.factories import (
    CustomerFactory,
    PlanFactory,
    SubscriptionFactory,
    fee_price,
    metered_price,
    record_usage,
)

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro")
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee")
    fee_price(plan, "10.00", term=PaymentTerm.IN_ARREARS, name="Support")
    metered_price(plan, "0.000002", name="Input tokens")
    return plan


@pytest.fixture
def customer(seller):
    return CustomerFactory(merchant=seller, name="Acme")


def lines_of(invoice):
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


def test_in_advance_fee_is_billed_at_start_and_arrears_at_period_end(plan, customer):
    # given a subscription started on January 1st with usage in January
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    tokens = plan.prices.get(billable_metric__isnull=False).billable_metric
    record_usage(customer, tokens, datetime(2026, 1, 10, tzinfo=UTC), 1_000_000)
    record_usage(customer, tokens, datetime(2026, 1, 31, 23, 59, tzinfo=UTC), 234_567)
    record_usage(customer, tokens, FEB_1, 999)  # February: not in January's invoice

    # then the opening invoice billed January's platform fee at once, issued and numbered
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)
    assert opening.status == InvoiceStatus.ISSUED
    assert opening.number == "NLE-2026-000001"
    assert lines_of(opening) == [(LineKind.FEE, "Platform fee (Jan 1, 2026 – Jan 31, 2026)", Decimal("49.0000"))]
    assert opening.total == Decimal("49.00")

    # when the period closes
    run = billing_run_execute(as_of=FEB_1 + timedelta(minutes=5), clock=lambda: FEB_1)

    # then January's usage and support fee are billed in arrears with February's platform fee in advance
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert (invoice.period_start, invoice.period_end) == (JAN_1, FEB_1)
    assert invoice.status == InvoiceStatus.DRAFT
    assert invoice.number is None
    assert invoice.grace_ends_at == FEB_1 + timedelta(hours=24)
    assert lines_of(invoice) == [
        (LineKind.USAGE, "Input tokens: 1,234,567 tokens (Jan 1, 2026 – Jan 31, 2026)", Decimal("2.4700")),
        (LineKind.FEE, "Support (Jan 1, 2026 – Jan 31, 2026)", Decimal("10.0000")),
        (LineKind.FEE, "Platform fee (Feb 1, 2026 – Feb 28, 2026)", Decimal("49.0000")),
    ]
    usage_line = invoice.lines.get(kind=LineKind.USAGE)
    assert usage_line.quantity == Decimal("1234567")
    assert usage_line.explanation["text"] == "1,234,567 tokens × $0.000002 = $2.469134"
    assert usage_line.explanation["lines"][0]["amount"] == "2.469134"
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due) == (
        Decimal("61.47"),
        Decimal("0"),
        Decimal("61.47"),
        Decimal("61.47"),
    )
    assert (run.status, run.invoices_created, run.invoices_skipped, run.invoices_failed) == (
        BillingRunStatus.SUCCEEDED,
        1,
        0,
        0,
    )


def test_a_second_run_creates_nothing(plan, customer):
    SubscriptionFactory(plan=plan, customer=customer, merchant=plan.merchant, started_at=JAN_1)
    first = billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
    second = billing_run_execute(as_of=FEB_1 + timedelta(hours=1), clock=lambda: FEB_1)
    # the closer created the missing opening invoice and January's recurring invoice, once
    assert (first.invoices_created, first.invoices_skipped) == (2, 0)
    assert (second.invoices_created, second.invoices_skipped, second.subscriptions_total) == (0, 0, 1)
    assert Invoice.objects.filter(kind=InvoiceKind.RECURRING).count() == 1
    assert Invoice.objects.filter(kind=InvoiceKind.OPENING).count() == 1


def test_a_retried_chunk_skips_what_exists(plan, customer):
    from invoicing.services import billing_run_create, billing_run_process_chunk

    subscription = SubscriptionFactory(plan=plan, customer=customer, merchant=plan.merchant, started_at=JAN_1)
    run, chunks = billing_run_create(as_of=FEB_1, trigger="beat", now=FEB_1)
    billing_run_process_chunk(run_id=run.pk, subscription_ids=chunks[0], as_of=FEB_1)
    # a retried task (acks_late, a worker lost) processes the same chunk again
    outcome = billing_run_process_chunk(run_id=run.pk, subscription_ids=chunks[0], as_of=FEB_1)
    assert (outcome.created, outcome.skipped) == (0, 0)
    assert Invoice.objects.filter(subscription=subscription).count() == 2


def test_the_unique_constraint_refuses_a_second_recurring_invoice(plan, customer):
    from django.db import IntegrityError, transaction

    subscription = SubscriptionFactory(plan=plan, customer=customer, merchant=plan.merchant, started_at=JAN_1)
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(kind=InvoiceKind.RECURRING)
    duplicate = Invoice(
        merchant=invoice.merchant,
        customer=customer,
        subscription=subscription,
        plan=plan,
        kind=InvoiceKind.RECURRING,
        currency="USD",
        period_start=invoice.period_start,
        period_end=invoice.period_end,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save(force_insert=True)


def test_backdated_start_catches_up_every_ended_period(plan, customer):
    # given a subscription started in January but entered on March 10th
    subscription = subscription_start(
        customer=customer, plan=plan, started_at=JAN_1, now=datetime(2026, 3, 10, tzinfo=UTC)
    )
    # then January and February are invoiced, each once, and the opening invoice exists
    periods = list(
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING)
        .order_by("period_start")
        .values_list("period_start", "period_end")
    )
    assert periods == [(JAN_1, FEB_1), (FEB_1, MAR_1)]
    assert Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.OPENING).count() == 1


def test_mid_month_start_prorates_the_first_in_advance_fee(plan, customer):
    # given a plan anchored on the 1st and a start on January 22nd (10 of 31 days left)
    plan.billing_anchor = JAN_1
    plan.save()
    subscription = subscription_start(
        customer=customer,
        plan=plan,
        started_at=datetime(2026, 1, 22, 15, 0, tzinfo=UTC),
        now=datetime(2026, 1, 22, 15, 0, tzinfo=UTC),
    )
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)
    # 49 × 10/31 = 15.806… → 15.81
    assert lines_of(opening) == [
        (LineKind.FEE, "Platform fee (Jan 22, 2026 – Jan 31, 2026), prorated 10/31 days", Decimal("15.8100"))
    ]
    billing_run_execute(as_of=FEB_1)
    recurring = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert recurring.period_start == datetime(2026, 1, 22, 15, 0, tzinfo=UTC)
    assert [line[2] for line in lines_of(recurring)] == [Decimal("0.0000"), Decimal("3.2300"), Decimal("49.0000")]


def test_test_clock_subscriptions_close_on_their_clock(plan, customer):
    from catalog.models import TestClock

    clock = TestClock.objects.create(merchant=plan.merchant, current_time=JAN_1 + timedelta(days=3))
    subscription = SubscriptionFactory(
        plan=plan, customer=customer, merchant=plan.merchant, started_at=JAN_1, test_clock=clock
    )
    # the real time is far later, but the clock still says January 4th
    billing_run_execute(as_of=datetime(2026, 6, 1, tzinfo=UTC))
    assert not Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).exists()
    clock.current_time = FEB_1
    clock.save()
    billing_run_execute(as_of=datetime(2026, 6, 1, tzinfo=UTC))
    assert Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).count() == 1


def test_a_crash_inside_an_invoice_leaves_nothing_and_the_next_run_completes(plan, customer, monkeypatch):
    subscription = SubscriptionFactory(plan=plan, customer=customer, merchant=plan.merchant, started_at=JAN_1)
    billing_run_execute(as_of=JAN_1)  # the opening invoice
    original = runs.invoice_lines_insert

    def crash(invoice, lines, **kwargs):
        if invoice.kind == InvoiceKind.RECURRING:
            raise RuntimeError("worker killed")
        return original(invoice, lines, **kwargs)

    # given a worker that dies after writing the invoice row, before its lines
    monkeypatch.setattr(runs, "invoice_lines_insert", crash)
    run = billing_run_execute(as_of=FEB_1)
    # then nothing of the invoice remains and the run records the failure
    assert not Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).exists()
    assert (run.status, run.invoices_created, run.invoices_failed) == (BillingRunStatus.FAILED, 0, 1)
    error = run.errors.get()
    assert (error.subscription_id, error.period_start, error.message) == (
        subscription.id,
        JAN_1,
        "RuntimeError: worker killed",
    )
    # when the next run comes after the fix
    monkeypatch.setattr(runs, "invoice_lines_insert", original)
    rerun = billing_run_execute(as_of=FEB_1)
    # then it completes the period
    assert (rerun.status, rerun.invoices_created) == (BillingRunStatus.SUCCEEDED, 1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert invoice.lines.count() == 3
    assert BillingRun.objects.count() == 3


def test_queries_per_invoice_stay_constant(plan, seller):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def run_for(count):
        customers = [CustomerFactory(merchant=seller) for _ in range(count)]
        for c in customers:
            SubscriptionFactory(plan=plan, customer=c, merchant=seller, started_at=JAN_1)
            record_usage(c, plan.prices.get(billable_metric__isnull=False).billable_metric, JAN_1, 5)
        billing_run_execute(as_of=JAN_1)  # opening invoices
        with CaptureQueriesContext(connection) as captured:
            billing_run_execute(as_of=FEB_1)
        return len(captured.captured_queries)

    small = run_for(2)
    large = run_for(6)  # the first two are already billed: found by the watermark, no query of their own
    # 4 more invoices cost 4 × 5 queries (savepoint — BEGIN outside tests —, lock, insert, lines, release —
    # COMMIT); usage, prices and watermarks are read once per chunk whatever its size
    assert large - small == 4 * 5


def test_a_writer_that_loses_the_race_skips_instead_of_failing(plan, customer):
    from invoicing.calculation import Biller, subscription_period_at
    from invoicing.services.lifecycle import subscription_load
    from invoicing.services.runs import _close_one, _Work

    # given a writer whose view of the watermark is stale (a concurrent run already wrote the invoice)
    subscription = subscription_load(
        SubscriptionFactory(plan=plan, customer=customer, merchant=plan.merchant, started_at=JAN_1)
    )
    period = subscription_period_at(subscription, JAN_1)
    item = _Work(subscription, InvoiceKind.RECURRING, FEB_1, period)
    assert _close_one(Biller(), item, run=None, pending={}) is True
    # when it writes the same period again, the unique constraint refuses it and it counts as a skip
    assert _close_one(Biller(), item, run=None, pending={}) is False
    assert Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).count() == 1


def test_one_off_fee_is_billed_once_at_start(seller, customer):
    plan = PlanFactory(merchant=seller, product__merchant=seller)
    fee_price(plan, "250.00", term=PaymentTerm.IN_ARREARS, cadence="P0D", name="Set-up", is_obligation=True)
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)
    assert lines_of(opening) == [(LineKind.FEE, "Set-up", Decimal("250.0000"))]
    billing_run_execute(as_of=MAR_1)
    assert [inv.total for inv in Invoice.objects.filter(kind=InvoiceKind.RECURRING)] == [Decimal("0"), Decimal("0")]


def test_percentage_and_event_priced_usage_are_rated_from_event_values(seller, customer):
    from catalog.models import PriceModel

    plan = PlanFactory(merchant=seller, product__merchant=seller)
    payments = metered_price(
        plan,
        None,
        name="Card payments",
        unit="USD",
        model=PriceModel.PERCENTAGE,
        percentage_rate=Decimal("0.029"),
        fixed_fee_per_event=Decimal("0.30"),
    )
    spot = metered_price(
        plan,
        None,
        name="Spot GPU",
        unit="hours",
        model=PriceModel.DYNAMIC,
        dynamic_mode="event_price",
        event_price_property="$.unit_price",
    )
    SubscriptionFactory(plan=plan, customer=customer, merchant=seller, started_at=JAN_1)
    record_usage(customer, payments.billable_metric, datetime(2026, 1, 2, tzinfo=UTC), "100.00")
    record_usage(customer, payments.billable_metric, datetime(2026, 1, 3, tzinfo=UTC), "50.00")
    record_usage(customer, spot.billable_metric, datetime(2026, 1, 4, tzinfo=UTC), "2", unit_price="1.25")
    record_usage(customer, spot.billable_metric, datetime(2026, 1, 5, tzinfo=UTC), "3", unit_price="0.80")
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(kind=InvoiceKind.RECURRING)
    # 150 × 2.9 % = 4.35 + 2 × 0.30 = 0.60 → 4.95; 2 h × 1.25 + 3 h × 0.80 = 4.90
    assert {line.description.split(":")[0]: line.amount for line in invoice.lines.all()} == {
        "Card payments": Decimal("4.9500"),
        "Spot GPU": Decimal("4.9000"),
    }
    assert invoice.total == Decimal("9.85")

"""Threshold (progressive) billing: usage reaching the threshold inside a period is invoiced at once, and the
period's recurring invoice bills only what is left, each deduction a line of its own (invoicing/THRESHOLDS.md)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.projections import invoice_upcoming
from invoicing.services import (
    billing_run_execute,
    invoice_finalize,
    invoice_void,
    subscription_start,
    subscription_threshold_evaluate,
    subscription_upgrade,
    usage_thresholds_evaluate,
)
from invoicing.thresholds import next_threshold
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
D = Decimal


def make_subscription(seller, *, threshold="100", recurring=False, name="Acme", **plan_terms):
    plan = PlanFactory(
        merchant=seller,
        product__merchant=seller,
        name="Metered",
        threshold_amount=None if threshold is None else D(threshold),
        threshold_recurring=recurring,
        **plan_terms,
    )
    price = metered_price(plan, "0.002", name="API calls", unit="calls")
    customer = CustomerFactory(merchant=seller, name=name)
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    return subscription, price.billable_metric


def lines_of(invoice):
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


def threshold_invoices(subscription):
    return list(
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.THRESHOLD).order_by("threshold_sequence")
    )


def test_the_next_threshold_in_dollars():
    single, ladder = (D("100"),), (D("100"), D("500"))
    assert next_threshold(amounts=single, recurring=False, billed=D("0")) == D("100")
    assert next_threshold(amounts=single, recurring=False, billed=D("120")) is None
    assert next_threshold(amounts=single, recurring=True, billed=D("120")) == D("200")
    assert next_threshold(amounts=single, recurring=True, billed=D("200")) == D("300")
    assert next_threshold(amounts=single, recurring=True, billed=D("99.99")) == D("100")
    assert next_threshold(amounts=ladder, recurring=False, billed=D("120")) == D("500")
    assert next_threshold(amounts=ladder, recurring=False, billed=D("520")) is None
    # recurring past the ladder: every further last step ($500 − $100 = $400)
    assert next_threshold(amounts=ladder, recurring=True, billed=D("520")) == D("900")
    assert next_threshold(amounts=ladder, recurring=True, billed=D("900")) == D("1300")


def test_a_ladder_invoices_at_each_of_its_thresholds(seller):
    subscription, calls = make_subscription(seller)
    subscription.plan.threshold_ladder = ["300", "1000"]
    subscription.plan.save(update_fields=["threshold_ladder"])
    customer = subscription.customer
    totals = []
    for day, quantity in ((2, 60_000), (3, 60_000), (4, 40_000), (5, 300_000), (6, 200_000)):
        record_usage(customer, calls, datetime(2026, 1, day, tzinfo=UTC), quantity)
        invoice = subscription_threshold_evaluate(
            subscription_id=subscription.pk, now=datetime(2026, 1, day, 12, tzinfo=UTC)
        )
        totals.append(None if invoice is None else invoice.total)
    # accrued $120 (≥ $100), $240 (< $300), $320 (≥ $300), $920 (< $1,000), $1,320 (≥ $1,000); then no more
    assert totals == [D("120"), None, D("200"), None, D("1000")]


def test_usage_reaching_the_threshold_is_invoiced_at_once_and_the_period_end_bills_the_rest(seller):
    # given $0.002 a call and a $100 threshold
    subscription, calls = make_subscription(seller)
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 40_000)  # $80
    assert (
        subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC)) is None
    )

    # when 60,000 calls ($120) have accrued
    record_usage(subscription.customer, calls, datetime(2026, 1, 10, tzinfo=UTC), 20_000)
    invoice = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 11, tzinfo=UTC))

    # then a threshold invoice bills the $120 at once, issued and numbered
    assert (invoice.kind, invoice.status, invoice.number, invoice.threshold_sequence) == (
        InvoiceKind.THRESHOLD,
        InvoiceStatus.ISSUED,
        "NLE-2026-000001",
        1,
    )
    assert (invoice.period_start, invoice.period_end) == (JAN_1, datetime(2026, 1, 11, tzinfo=UTC))
    assert lines_of(invoice) == [(LineKind.USAGE, "API calls: 60,000 calls (Jan 1, 2026 – Jan 10, 2026)", D("120"))]
    assert (invoice.total, invoice.amount_due) == (D("120"), D("120"))
    # and evaluating again bills nothing more (not recurring)
    assert (
        subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 12, tzinfo=UTC)) is None
    )

    # when the period ends with 80,000 calls in all ($160)
    record_usage(subscription.customer, calls, datetime(2026, 1, 20, tzinfo=UTC), 20_000)
    billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)

    # then the recurring invoice bills the whole period and takes off what the threshold invoice billed: $40
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert lines_of(final) == [
        (LineKind.USAGE, "API calls: 80,000 calls (Jan 1, 2026 – Jan 31, 2026)", D("160")),
        (LineKind.THRESHOLD_BILLED, "API calls: already billed on threshold invoice NLE-2026-000001", D("-120")),
    ]
    assert final.lines.get(kind=LineKind.THRESHOLD_BILLED).explanation == {
        "text": "$120.00 billed on threshold invoice NLE-2026-000001",
        "thresholdInvoices": ["NLE-2026-000001"],
    }
    assert (final.subtotal, final.total) == (D("40"), D("40"))
    # and the refreshed draft, issued after the grace period, keeps the deduction
    issued = invoice_finalize(invoice=final, now=FEB_1 + timedelta(days=1))
    assert (issued.total, issued.amount_due) == (D("40"), D("40"))
    # and a threshold is not evaluated for a period already closed
    assert (
        subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 31, tzinfo=UTC)) is None
    )


def test_the_upcoming_invoice_takes_off_what_the_threshold_invoice_billed(seller):
    subscription, calls = make_subscription(seller)
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)  # $120
    subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    record_usage(subscription.customer, calls, datetime(2026, 1, 8, tzinfo=UTC), 5_000)  # $130 in all

    upcoming = invoice_upcoming(subscription=subscription, now=datetime(2026, 1, 9, tzinfo=UTC))

    assert [(line.kind, line.amount) for line in upcoming.composed.lines] == [
        (LineKind.USAGE, D("130")),
        (LineKind.THRESHOLD_BILLED, D("-120")),
    ]
    assert upcoming.invoice.total == D("10")


def test_a_recurring_threshold_invoices_again_every_further_hundred_dollars(seller):
    subscription, calls = make_subscription(seller, recurring=True)
    customer = subscription.customer
    record_usage(customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)  # $120: first threshold ($100)
    first = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    record_usage(customer, calls, datetime(2026, 1, 8, tzinfo=UTC), 30_000)  # $180: below the next ($200)
    assert (
        subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 9, tzinfo=UTC)) is None
    )
    record_usage(customer, calls, datetime(2026, 1, 12, tzinfo=UTC), 20_000)  # $220
    second = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 13, tzinfo=UTC))

    assert (first.total, first.threshold_sequence) == (D("120"), 1)
    assert second.threshold_sequence == 2
    assert lines_of(second) == [
        (LineKind.USAGE, "API calls: 110,000 calls (Jan 1, 2026 – Jan 12, 2026)", D("220")),
        (LineKind.THRESHOLD_BILLED, "API calls: already billed on threshold invoice NLE-2026-000001", D("-120")),
    ]
    assert second.total == D("100")

    record_usage(customer, calls, datetime(2026, 1, 25, tzinfo=UTC), 10_000)  # $240 in all
    billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert lines_of(final) == [
        (LineKind.USAGE, "API calls: 120,000 calls (Jan 1, 2026 – Jan 31, 2026)", D("240")),
        (
            LineKind.THRESHOLD_BILLED,
            "API calls: already billed on threshold invoices NLE-2026-000001, NLE-2026-000002",
            D("-220"),
        ),
    ]
    assert final.total == D("20")
    # February starts afresh: its first threshold is $100 again
    record_usage(customer, calls, datetime(2026, 2, 3, tzinfo=UTC), 50_000)
    february = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 2, 4, tzinfo=UTC))
    assert (february.period_start, february.threshold_sequence, february.total) == (FEB_1, 1, D("100"))


def test_an_upgrade_deducts_the_old_plans_threshold_invoices_and_the_new_plan_starts_afresh(seller):
    subscription, calls = make_subscription(seller)
    customer = subscription.customer
    record_usage(customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)  # $120 on the old plan
    subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    record_usage(customer, calls, datetime(2026, 1, 10, tzinfo=UTC), 10_000)  # $140 in all
    new_plan = PlanFactory(merchant=seller, product=subscription.plan.product, name="Bulk", threshold_amount=D("100"))
    bulk_calls = metered_price(new_plan, "0.001", name="Bulk calls", unit="calls").billable_metric

    # when the subscription moves to the new plan on January 15th
    change = subscription_upgrade(subscription=subscription, new_plan=new_plan, now=datetime(2026, 1, 15, tzinfo=UTC))

    # then the plan-change invoice bills the old plan's usage less its threshold invoice
    assert lines_of(change) == [
        (LineKind.USAGE, "API calls: 70,000 calls (Jan 1, 2026 – Jan 14, 2026)", D("140")),
        (LineKind.THRESHOLD_BILLED, "API calls: already billed on threshold invoice NLE-2026-000001", D("-120")),
    ]
    assert change.total == D("20")
    # and the new plan's usage has thresholds of its own, from the change
    record_usage(customer, bulk_calls, datetime(2026, 1, 16, tzinfo=UTC), 150_000)  # $150
    bulk = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 17, tzinfo=UTC))
    assert (bulk.period_start, bulk.threshold_sequence, bulk.total) == (datetime(2026, 1, 15, tzinfo=UTC), 1, D("150"))
    record_usage(customer, bulk_calls, datetime(2026, 1, 20, tzinfo=UTC), 20_000)  # $170 in all
    billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert [(line.kind, line.amount) for line in final.lines.order_by("position")] == [
        (LineKind.USAGE, D("170")),
        (LineKind.THRESHOLD_BILLED, D("-150")),
    ]
    assert final.total == D("20")


def test_the_subscription_overrides_the_plans_threshold(seller):
    subscription, calls = make_subscription(seller, threshold="500")
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)  # $120
    assert (
        subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC)) is None
    )
    subscription.threshold_amount = D("50")
    subscription.save(update_fields=["threshold_amount"])
    assert subscription.effective_threshold == ((D("50"),), False)
    assert subscription_threshold_evaluate(
        subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC)
    ).total == D("120")


def test_the_plan_discount_and_tax_apply_to_each_invoice_on_what_it_bills(seller):
    subscription, calls = make_subscription(seller, discount_percent=D("10"), default_tax_rate=D("20"))
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)  # $120
    invoice = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    # $120 − 10 % = $108, + 20 % tax = $129.60
    assert (invoice.subtotal, invoice.tax, invoice.total) == (D("108"), D("21.60"), D("129.60"))
    record_usage(subscription.customer, calls, datetime(2026, 1, 20, tzinfo=UTC), 20_000)  # $160 in all
    billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    # ($160 − $120) − 10 % = $36, + 20 % = $43.20; with the threshold invoice: $144 + $28.80 as one invoice
    assert (final.subtotal, final.tax, final.total) == (D("36"), D("7.20"), D("43.20"))
    assert final.lines.get(kind=LineKind.DISCOUNT).amount == D("-4")


def test_the_plan_minimum_is_the_periods_not_the_final_invoices(seller):
    subscription, calls = make_subscription(seller, minimum_commitment=D("150"))
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)  # $120
    invoice = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    assert invoice.total == D("120")  # no true-up on a threshold invoice
    record_usage(subscription.customer, calls, datetime(2026, 1, 20, tzinfo=UTC), 10_000)  # $140 in all
    billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    # $140 − $120 billed = $20, + the $10 the period fell short of the $150 minimum
    assert final.lines.get(kind=LineKind.MINIMUM).amount == D("10")
    assert final.total == D("30")


def test_a_voided_threshold_invoice_is_not_deducted_and_its_number_is_not_reused(seller):
    subscription, calls = make_subscription(seller)
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)
    first = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    invoice_void(invoice=first, now=datetime(2026, 1, 7, tzinfo=UTC), reason="billed by mistake")
    again = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 8, tzinfo=UTC))
    assert (again.threshold_sequence, again.total) == (2, D("120"))
    billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert [line.amount for line in final.lines.order_by("position")] == [D("120"), D("-120")]
    assert again.number in final.lines.get(kind=LineKind.THRESHOLD_BILLED).description


def test_the_constraint_refuses_a_second_invoice_for_the_same_threshold(seller):
    subscription, calls = make_subscription(seller)
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)
    first = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
    first.pk = None
    first.id = None
    first.number = None
    with pytest.raises(IntegrityError), transaction.atomic():
        first.save(force_insert=True)


def test_the_sweep_evaluates_subscriptions_with_a_threshold_in_bounded_batches(seller):
    subscriptions = [make_subscription(seller, name=f"C{n}") for n in range(3)]
    make_subscription(seller, threshold=None, name="No threshold")
    for subscription, calls in subscriptions:
        record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)
    now = datetime(2026, 1, 6, tzinfo=UTC)
    first = usage_thresholds_evaluate(now=now, limit=2)
    assert (first.evaluated, len(first.invoices)) == (2, 2)
    rest = usage_thresholds_evaluate(now=now, after=first.next_after, limit=2)
    assert (rest.evaluated, len(rest.invoices), rest.next_after) == (1, 1, None)
    assert Invoice.objects.filter(kind=InvoiceKind.THRESHOLD).count() == 3


def test_evaluating_costs_the_same_queries_whatever_the_usage(seller):
    first, first_calls = make_subscription(seller, name="First")  # the merchant's first number of the year
    small, small_calls = make_subscription(seller, name="Small")
    large, large_calls = make_subscription(seller, name="Large")
    for customer, metric in ((first.customer, first_calls), (small.customer, small_calls)):
        record_usage(customer, metric, datetime(2026, 1, 5, tzinfo=UTC), 60_000)
    for day in range(1, 21):
        record_usage(large.customer, large_calls, datetime(2026, 1, day, tzinfo=UTC), 6_000)
    now = datetime(2026, 1, 22, tzinfo=UTC)
    subscription_threshold_evaluate(subscription_id=first.pk, now=now)
    counts = []
    for subscription in (small, large):
        with CaptureQueriesContext(connection) as queries:
            assert subscription_threshold_evaluate(subscription_id=subscription.pk, now=now) is not None
        counts.append(len(queries))
    with CaptureQueriesContext(connection) as idle:
        assert subscription_threshold_evaluate(subscription_id=large.pk, now=now) is None
    assert counts[0] == counts[1]
    assert len(idle) < counts[0]


@pytest.mark.django_db
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.integers(min_value=0, max_value=80_000), min_size=1, max_size=6),
    threshold=st.integers(min_value=1, max_value=150),
    recurring=st.booleans(),
)
def test_threshold_invoices_and_the_final_one_add_up_to_the_period_billed_at_once(batches, threshold, recurring):
    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            seller = MerchantFactory(invoice_number_prefix="NLE")
            with_thresholds, calls = make_subscription(seller, threshold=str(threshold), recurring=recurring)
            single, single_calls = make_subscription(seller, threshold=None, name="Single")
            for day, quantity in enumerate(batches, start=2):
                for subscription, metric in ((with_thresholds, calls), (single, single_calls)):
                    record_usage(subscription.customer, metric, datetime(2026, 1, day, tzinfo=UTC), quantity)
                subscription_threshold_evaluate(
                    subscription_id=with_thresholds.pk, now=datetime(2026, 1, day, 12, tzinfo=UTC)
                )
            billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1)
            invoices = Invoice.objects.filter(subscription=with_thresholds).exclude(status=InvoiceStatus.VOID)
            alone = Invoice.objects.get(subscription=single, kind=InvoiceKind.RECURRING)
            assert sum(invoice.total for invoice in invoices) == alone.total
            assert all(invoice.total >= 0 for invoice in invoices)
            raise Rollback
    except Rollback:
        pass


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_evaluators_at_once_issue_one_threshold_invoice():
    seller = MerchantFactory(invoice_number_prefix="NLE")
    subscription, calls = make_subscription(seller)
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)
    barrier = threading.Barrier(2)
    errors, results = [], []

    def evaluator():
        try:
            barrier.wait()
            results.append(
                subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))
            )
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(result is None for result in results) == [False, True]
    assert [(i.threshold_sequence, i.total) for i in threshold_invoices(subscription)] == [(1, D("120"))]


def test_closing_a_period_costs_one_more_query_per_subscription_with_a_threshold(seller):
    def close(threshold):
        merchant = MerchantFactory(invoice_number_prefix="NLE")
        for n in range(3):
            subscription, calls = make_subscription(merchant, threshold=threshold, name=f"C{n}")
            record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 10_000)
        with CaptureQueriesContext(connection) as queries:
            billing_run_execute(as_of=FEB_1, clock=lambda: FEB_1, merchant=merchant)
        return len(queries)

    assert close("100") == close(None) + 3


def test_the_invoice_page_shows_a_threshold_invoice_and_its_sequence(seller, viewer_client):
    subscription, calls = make_subscription(seller)
    record_usage(subscription.customer, calls, datetime(2026, 1, 5, tzinfo=UTC), 60_000)
    invoice = subscription_threshold_evaluate(subscription_id=subscription.pk, now=datetime(2026, 1, 6, tzinfo=UTC))

    page = viewer_client.get(reverse("admin:invoicing_invoice_change", args=(quote(invoice.pk),)))

    assert page.status_code == 200
    text = page.content.decode()
    assert "Threshold (usage reached the threshold inside the period)" in text
    assert "Threshold sequence" in text

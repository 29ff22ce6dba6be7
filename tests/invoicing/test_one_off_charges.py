"""Manual lines, one-off invoices, projections and the upcoming invoice on the worked examples, checked
against figures computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import BillingCadence, RoundingMode
from invoicing.models import Invoice, InvoiceKind, LineKind, ManualLineItem
from invoicing.one_off_invoices import one_off_invoice_create
from invoicing.projections import invoice_projections
from invoicing.selectors import invoice_preview
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from invoicing.services.manual_lines import ManualLineInput, manual_line_item_create
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_15 = datetime(2026, 1, 15, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


def _llm_pro():
    merchant = MerchantFactory(name="Neural Language Engine", invoice_number_prefix="NLE")
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    tokens = metered_price(plan, "0.000002", name="Input tokens")
    customer = CustomerFactory(merchant=merchant, tax_rate=Decimal("8.5"))
    return merchant, plan, tokens, customer


def test_manual_lines_ride_the_next_invoice_once_and_are_taxed_but_not_discounted():
    # given the LLM Pro plan (input $0.002/1K, 8.5 % tax), 5M tokens and a workshop and an SLA credit pending
    merchant, plan, tokens, customer = _llm_pro()
    plan.discount_percent = Decimal("10")
    plan.save()
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, tokens.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 5_000_000)
    workshop = ManualLineInput(display_name="Workshop", currency="USD", quantity=Decimal(2), unit_price=Decimal("150"))
    credit = ManualLineInput(display_name="SLA credit", currency="USD", quantity=Decimal(1), unit_price=Decimal("-20"))
    for key, data in (("w", workshop), ("c", credit)):
        manual_line_item_create(
            merchant=merchant, subscription=subscription, data=data, idempotency_key=key, now=JAN_15
        )
    # when January and February close
    billing_run_execute(as_of=FEB_1)
    billing_run_execute(as_of=MAR_1)
    january, february = Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).order_by(
        "period_start"
    )
    january = invoice_finalize(invoice=january, now=FEB_1)
    # then, by hand:
    #   tokens 5,000,000 × 0.000002 = 10.00; plan discount 10 % of 10.00 = −1.00 (manual lines are not discounted)
    #   workshop 2 × 150 = 300.00; SLA credit 1 × −20 = −20.00
    #   base 289.00; tax 8.5 % = 24.565 → 24.57; total 313.57
    assert sorted((line.kind, line.amount) for line in january.lines.all()) == [
        (LineKind.DISCOUNT, Decimal("-1.0000")),
        (LineKind.MANUAL, Decimal("-20.0000")),
        (LineKind.MANUAL, Decimal("300.0000")),
        (LineKind.TAX, Decimal("24.5700")),
        (LineKind.USAGE, Decimal("10.0000")),
    ]
    assert (january.subtotal, january.tax, january.total) == (Decimal("289.00"), Decimal("24.57"), Decimal("313.57"))
    assert not february.lines.filter(kind=LineKind.MANUAL).exists()
    assert set(ManualLineItem.objects.values_list("invoice_id", flat=True)) == {january.id}


def test_line_for_a_later_month_waits_for_that_close():
    merchant, plan, _, customer = _llm_pro()
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    data = ManualLineInput(
        display_name="Add-on: priority support",
        currency="USD",
        quantity=Decimal(1),
        unit_price=Decimal("99"),
        invoice_at=datetime(2026, 2, 10, tzinfo=UTC),
    )
    manual_line_item_create(merchant=merchant, subscription=subscription, data=data, idempotency_key="k", now=JAN_15)

    billing_run_execute(as_of=MAR_1)

    item = ManualLineItem.objects.get()
    assert item.invoice.period_start == FEB_1


def test_one_off_invoice_for_set_up_work_taxed_as_the_plan():
    # given the LLM customer at 8.5 % tax
    merchant, plan, _, customer = _llm_pro()
    subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    lines = [
        ManualLineInput(
            display_name="Fine-tuning set-up", currency="USD", quantity=Decimal(10), unit_price=Decimal("180")
        ),
        ManualLineInput(display_name="SLA credit", currency="USD", quantity=Decimal(1), unit_price=Decimal("-100")),
    ]
    # when
    result = one_off_invoice_create(customer=customer, currency="USD", lines=lines, idempotency_key="i", now=JAN_15)
    replay = one_off_invoice_create(customer=customer, currency="USD", lines=lines, idempotency_key="i", now=JAN_15)
    # then: 10 × 180 = 1,800.00 − 100.00 = 1,700.00; tax 8.5 % = 144.50; total 1,844.50, issued at once
    invoice = result.invoice
    assert (invoice.kind, invoice.subtotal, invoice.tax, invoice.total) == (
        InvoiceKind.ONE_OFF,
        Decimal("1700.00"),
        Decimal("144.50"),
        Decimal("1844.50"),
    )
    assert invoice.number and invoice.issued_at == JAN_15
    assert (replay.replayed, replay.invoice.pk) == (True, invoice.pk)


def _cloud_analytics(**plan_fields):
    merchant = MerchantFactory(name="Cloud Analytics", rounding_mode=RoundingMode.HALF_EVEN)
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, **plan_fields)
    compute = metered_price(plan, "0.0001", name="Query compute", unit="seconds")
    egress = metered_price(plan, "0.09", name="Data egress", unit="GB")
    customer = CustomerFactory(merchant=merchant)
    return merchant, plan, compute, egress, customer


def test_committed_plan_projects_its_annual_minimum_as_a_fixed_charge():
    # given the data platform's Committed plan: yearly, a $100,000 minimum, usage only
    _, plan, compute, _, customer = _cloud_analytics(
        name="Committed", billing_cadence=BillingCadence.YEARLY, minimum_commitment=Decimal("100000")
    )
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, compute.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    # when
    projected = invoice_projections(subscription=subscription, now=now, end=datetime(2027, 1, 2, tzinfo=UTC))
    # then: usage excluded, so the year's close bills the whole minimum: 100,000.00
    assert [(p.invoice_at, p.invoice.subtotal) for p in projected] == [
        (datetime(2027, 1, 1, tzinfo=UTC), Decimal("100000.00"))
    ]
    assert [row.line.kind for row in projected[0].page.lines] == [LineKind.MINIMUM]
    assert not Invoice.objects.filter(kind=InvoiceKind.RECURRING).exists()


def test_upcoming_invoice_is_rated_with_one_usage_query_per_metric():
    # given the data platform's On-demand plan: compute $0.0001/s, egress $0.09/GB, and a pending on-boarding line
    merchant, plan, compute, egress, customer = _cloud_analytics(name="On-demand")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, compute.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
    record_usage(customer, egress.billable_metric, datetime(2026, 1, 10, tzinfo=UTC), 200)
    onboarding = ManualLineInput(
        display_name="On-boarding", currency="USD", quantity=Decimal(1), unit_price=Decimal("2500")
    )
    manual_line_item_create(
        merchant=merchant, subscription=subscription, data=onboarding, idempotency_key="o", now=JAN_1
    )
    # when
    with CaptureQueriesContext(connection) as two_metrics:
        preview = invoice_preview(subscription=subscription, now=JAN_15)
    metered_price(plan, "0.023", name="Storage", unit="GB")
    with CaptureQueriesContext(connection) as three_metrics:
        invoice_preview(subscription=subscription, now=JAN_15)
    # then: compute 1,000,000 × 0.0001 = 100.00, egress 200 × 0.09 = 18.00, on-boarding 2,500.00 → 2,618.00
    assert sorted((line.description.split(":")[0], line.amount) for line in preview.lines) == [
        ("Data egress", Decimal("18.00")),
        ("On-boarding", Decimal("2500.00")),
        ("Query compute", Decimal("100.00")),
    ]
    assert preview.total == Decimal("2618.00")
    assert len(three_metrics) - len(two_metrics) == 1  # one usage query per metric, nothing else per metric


def test_a_line_claimed_meanwhile_rolls_the_close_back_and_is_never_billed_twice(monkeypatch):
    # given a pending line that another close claims after this run loaded it (simulated: the chunk's load
    # returns it, then the row is attached to another invoice before the close writes)
    from invoicing.services import runs

    merchant, plan, _, customer = _llm_pro()
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    data = ManualLineInput(display_name="Workshop", currency="USD", quantity=Decimal(1), unit_price=Decimal("300"))
    item, _ = manual_line_item_create(
        merchant=merchant, subscription=subscription, data=data, idempotency_key="k", now=JAN_15
    )
    other = one_off_invoice_create(
        customer=customer,
        currency="USD",
        lines=[ManualLineInput(display_name="Elsewhere", currency="USD", quantity=Decimal(1), unit_price=Decimal("1"))],
        idempotency_key="other",
        now=JAN_15,
    ).invoice
    load = runs._pending_manual_items

    def load_then_lose_the_race(work):
        found = load(work)
        ManualLineItem.objects.filter(pk=item.pk).update(invoice=other)
        return found

    monkeypatch.setattr(runs, "_pending_manual_items", load_then_lose_the_race)
    # when
    run = billing_run_execute(as_of=FEB_1)
    # then: January's invoice was rolled back (an error of the run, billed by the next run), the line stays put
    assert not Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).exists()
    assert "claimed by another close" in run.errors.get().message
    assert ManualLineItem.objects.get(pk=item.pk).invoice_id == other.pk
    monkeypatch.undo()
    billing_run_execute(as_of=FEB_1)
    january = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert not january.lines.filter(kind=LineKind.MANUAL).exists()

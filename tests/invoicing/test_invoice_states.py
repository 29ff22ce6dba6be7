"""Grace period, issue and numbering, immutability, payment, credit notes, void-and-reissue, late usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import PaymentTerm
from invoicing.models import CreditNote, Invoice, InvoiceError, InvoiceKind, InvoiceStatus, LineKind
from invoicing.selectors import late_usage_for_customer
from invoicing.services import (
    billing_run_execute,
    credit_note_issue,
    invoice_bill_late_usage,
    invoice_finalize,
    invoice_mark_paid,
    invoice_void,
    invoices_finalize_due,
    subscription_start,
)
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Usage", default_tax_rate=Decimal("10"))
    metered_price(plan, "0.01", name="Calls", unit="calls")
    return plan


@pytest.fixture
def customer(seller):
    return CustomerFactory(merchant=seller)


def metric_of(plan):
    return plan.prices.get(billable_metric__isnull=False).billable_metric


def close_january(plan, customer, calls=1000):
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, metric_of(plan), datetime(2026, 1, 15, tzinfo=UTC), calls)
    billing_run_execute(as_of=FEB_1)
    return subscription, Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)


def test_a_late_event_in_the_grace_period_is_included_when_the_draft_is_issued(plan, customer):
    # given January closed with 1,000 calls: $10.00 + 10 % tax
    _, draft = close_january(plan, customer)
    assert (draft.subtotal, draft.tax, draft.total) == (Decimal("10.00"), Decimal("1.00"), Decimal("11.00"))
    # when a January event arrives during the grace period
    record_usage(customer, metric_of(plan), datetime(2026, 1, 31, 23, 0, tzinfo=UTC), 500)
    # then nothing is issued before the grace period ends
    assert invoices_finalize_due(now=FEB_1 + timedelta(hours=23)) == {"issued": 0, "failed": 0}
    # and at its end the draft is refreshed and issued with the late event
    assert invoices_finalize_due(now=FEB_1 + timedelta(hours=24)) == {"issued": 1, "failed": 0}
    draft.refresh_from_db()
    assert (draft.status, draft.number, draft.issued_at) == (
        InvoiceStatus.ISSUED,
        "NLE-2026-000001",
        FEB_1 + timedelta(hours=24),
    )
    assert draft.lines.get(kind=LineKind.USAGE).quantity == Decimal("1500")
    assert (draft.subtotal, draft.tax, draft.total) == (Decimal("15.00"), Decimal("1.50"), Decimal("16.50"))


def test_an_issued_invoice_never_changes_and_late_usage_is_reported(plan, customer):
    subscription, invoice = close_january(plan, customer)
    invoice = invoice_finalize(invoice=invoice, now=FEB_1)
    # when an event for January arrives after the invoice was issued
    record_usage(customer, metric_of(plan), datetime(2026, 1, 20, tzinfo=UTC), 250)
    # then the model refuses to change its amounts
    invoice = Invoice.objects.get(pk=invoice.pk)
    invoice.total = Decimal("99.00")
    with pytest.raises(InvoiceError, match="total cannot change"):
        invoice.save()
    line = Invoice.objects.get(pk=invoice.pk).lines.first()
    line.amount = Decimal("1")
    with pytest.raises(InvoiceError):
        line.save()
    # and the late usage is reported for finance
    late = late_usage_for_customer(customer=customer)
    assert [(item.billed_quantity, item.current_quantity, item.extra_amount) for item in late] == [
        (Decimal("1000"), Decimal("1250"), Decimal("2.50"))
    ]
    # finance bills it as an adjustment invoice; it is then no longer reported
    adjustment = invoice_bill_late_usage(invoice=Invoice.objects.get(pk=invoice.pk), now=FEB_1 + timedelta(days=3))
    assert adjustment.kind == InvoiceKind.ADJUSTMENT and adjustment.adjusts_id == invoice.pk
    assert [(line.kind, line.amount) for line in adjustment.lines.order_by("position")] == [
        (LineKind.ADJUSTMENT, Decimal("2.5000")),
        (LineKind.TAX, Decimal("0.2500")),
    ]
    assert adjustment.total == Decimal("2.75")
    assert late_usage_for_customer(customer=customer) == []
    assert Invoice.objects.get(pk=invoice.pk).total == Decimal("11.00")


def test_numbers_are_gap_free_per_merchant_and_year(seller, plan):
    other_merchant = MerchantFactory(invoice_number_prefix="")
    other_plan = PlanFactory(merchant=other_merchant, product__merchant=other_merchant)
    fee_price(other_plan, "5.00", term=PaymentTerm.IN_ADVANCE)
    numbers = []
    for _ in range(3):
        customer = CustomerFactory(merchant=seller)
        _, draft = close_january(plan, customer)
        numbers.append(invoice_finalize(invoice=draft, now=FEB_1).number)
    # a voided draft never took a number, so the sequence continues without a hole
    _, draft = close_january(plan, CustomerFactory(merchant=seller))
    invoice_void(invoice=draft, now=FEB_1, reason="duplicate customer")
    _, draft = close_january(plan, CustomerFactory(merchant=seller))
    numbers.append(invoice_finalize(invoice=draft, now=datetime(2026, 12, 31, 23, 0, tzinfo=UTC)).number)
    _, draft = close_january(plan, CustomerFactory(merchant=seller))
    numbers.append(invoice_finalize(invoice=draft, now=datetime(2027, 1, 2, tzinfo=UTC)).number)
    other = subscription_start(
        customer=CustomerFactory(merchant=other_merchant), plan=other_plan, started_at=JAN_1, now=JAN_1
    )
    assert numbers == [
        "NLE-2026-000001",
        "NLE-2026-000002",
        "NLE-2026-000003",
        "NLE-2026-000004",
        "NLE-2027-000001",
    ]
    assert Invoice.objects.get(subscription=other).number == "INV-2026-000001"


def test_full_and_partial_credit_notes(plan, customer):
    _, invoice = close_january(plan, customer)
    invoice = invoice_finalize(invoice=invoice, now=FEB_1)
    usage_line = invoice.lines.get(kind=LineKind.USAGE)
    # a partial credit of $4 on the usage line, tax credited at the invoice's 10 %
    partial = credit_note_issue(invoice=invoice, now=FEB_1, reason="outage", amounts={usage_line.id: Decimal("4")})
    assert (partial.number, partial.subtotal, partial.tax, partial.total) == (
        "CN-2026-000001",
        Decimal("4.00"),
        Decimal("0.40"),
        Decimal("4.40"),
    )
    assert [(line.invoice_line_id, line.amount) for line in partial.lines.all()] == [(usage_line.id, Decimal("4.00"))]
    # no more than what is left can be credited
    with pytest.raises(InvoiceError, match="between 0 and 6"):
        credit_note_issue(invoice=invoice, now=FEB_1, amounts={usage_line.id: Decimal("6.01")})
    # a full credit note credits the rest
    rest = credit_note_issue(invoice=invoice, now=FEB_1, reason="goodwill")
    assert (rest.number, rest.total) == ("CN-2026-000002", Decimal("6.60"))
    with pytest.raises(InvoiceError, match="Nothing left"):
        credit_note_issue(invoice=invoice, now=FEB_1)
    assert CreditNote.objects.filter(invoice=invoice).count() == 2
    # drafts cannot be credited
    _, draft = close_january(plan, CustomerFactory(merchant=plan.merchant))
    with pytest.raises(InvoiceError, match="Only issued"):
        credit_note_issue(invoice=draft, now=FEB_1)


def test_void_and_reissue(plan, customer):
    subscription, invoice = close_january(plan, customer)
    invoice = invoice_finalize(invoice=invoice, now=FEB_1)
    # the customer's tax rate was wrong: void and reissue
    customer.tax_rate = Decimal("20")
    customer.save()
    replacement = invoice_void(invoice=invoice, now=FEB_1 + timedelta(days=1), reason="wrong tax", reissue=True)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.number, invoice.void_reason) == (InvoiceStatus.VOID, "NLE-2026-000001", "wrong tax")
    assert (replacement.status, replacement.replaces_id, replacement.period_start) == (
        InvoiceStatus.DRAFT,
        invoice.pk,
        JAN_1,
    )
    assert (replacement.subtotal, replacement.tax, replacement.total) == (
        Decimal("10.00"),
        Decimal("2.00"),
        Decimal("12.00"),
    )
    replacement = invoice_finalize(invoice=replacement, now=FEB_1 + timedelta(days=1))
    assert replacement.number == "NLE-2026-000002"
    # the voided period is not billed a third time by the closer
    assert billing_run_execute(as_of=FEB_1 + timedelta(days=2)).invoices_created == 0
    # paid invoices cannot be voided
    invoice_mark_paid(invoice=replacement, now=FEB_1 + timedelta(days=5))
    with pytest.raises(InvoiceError, match="paid"):
        invoice_void(invoice=replacement, now=FEB_1 + timedelta(days=6))
    assert Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).count() == 2


def test_inclusive_tax_is_extracted_from_gross(seller, customer):
    plan = PlanFactory(
        merchant=seller, product__merchant=seller, tax_behavior="inclusive", default_tax_rate=Decimal("20")
    )
    metered_price(plan, "0.01", name="Calls", unit="calls")
    _, invoice = close_january(plan, customer, calls=1000)
    # gross 10.00 includes 20 %: tax = 10.00 × 20 / 120 = 1.666… → 1.67, net 8.33
    assert (invoice.subtotal, invoice.tax, invoice.total) == (Decimal("8.33"), Decimal("1.67"), Decimal("10.00"))
    assert invoice.lines.get(kind=LineKind.TAX).description == "Tax 20% (included)"

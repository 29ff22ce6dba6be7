"""Subscription adjustments (the client's percentageDiscount, usageDiscount, minimumQuantity,
maximumQuantity) on the LLM Pro example, against figures computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import PriceModel
from invoicing.models import Invoice, InvoiceKind, LineKind, SubscriptionAdjustment
from invoicing.selectors import invoice_preview
from invoicing.services import billing_run_execute, invoice_finalize, invoice_refresh, subscription_start
from invoicing.services.adjustments import (
    AdjustmentConflict,
    AdjustmentError,
    AdjustmentInput,
    subscription_adjustment_create,
    subscription_adjustment_delete,
)
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

pytestmark = pytest.mark.django_db

DEC_31 = datetime(2025, 12, 31, tzinfo=UTC)
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_9 = datetime(2026, 1, 9, tzinfo=UTC)
JAN_16 = datetime(2026, 1, 16, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


def _llm_pro():
    """LLM Pro below its 10M-token break (so its rates are flat): input $0.002/1K, output $0.006/1K, and
    API calls at $0.0001 each; no tax."""
    merchant = MerchantFactory(name="Neural Language Engine", invoice_number_prefix="NLE")
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    inputs = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input")
    outputs = metered_price(plan, "0.000006", name="Output tokens", event_type="llm.output")
    calls = metered_price(plan, "0.0001", name="API calls", unit="calls", event_type="llm.calls")
    customer = CustomerFactory(merchant=merchant, tax_rate=Decimal("0"))
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, inputs.billable_metric, JAN_9, 1_000_000)
    record_usage(customer, outputs.billable_metric, JAN_9, 2_000_000)
    record_usage(customer, calls.billable_metric, JAN_9, 300_000)
    return subscription, inputs, outputs, calls


def _add(subscription, type_, number, *, start=JAN_1, end=FEB_1, targets=(), key=None, description=None):
    return subscription_adjustment_create(
        subscription=subscription,
        data=AdjustmentInput(
            type=type_,
            number=number,
            effective_from=start,
            effective_to=end,
            target_price_ids=tuple(t.pk for t in targets),
            description=description,
            idempotency_key=key,
        ),
        now=JAN_1,
    )[0]


def _january(subscription):
    billing_run_execute(as_of=FEB_1)
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=JAN_1)


def test_discount_usage_waiver_and_minimum_on_one_invoice():
    # given 1M input, 2M output tokens and 300,000 API calls in January, and the three adjustments
    subscription, inputs, outputs, calls = _llm_pro()
    _add(subscription, "percentageDiscount", "0.1", description="Launch deal")
    _add(subscription, "usageDiscount", "200000", targets=[inputs])
    _add(subscription, "minimumQuantity", "1000000", start=DEC_31, end=None, targets=[calls])
    # when January closes
    invoice = _january(subscription)
    lines = {(line.kind, line.price_id): line for line in invoice.lines.all()}
    # then, by hand:
    #   input  1,000,000 − 200,000 waived = 800,000 × 0.000002 = 1.60; discount 10 % = −0.16
    #   output 2,000,000 × 0.000006 = 12.00;                                discount 10 % = −1.20
    #   calls  300,000 raised to the minimum 1,000,000 × 0.0001 = 100.00;  discount 10 % = −10.00
    #   total 113.60 − 11.36 = 102.24
    assert lines[(LineKind.USAGE, inputs.pk)].amount == Decimal("1.60")
    assert lines[(LineKind.USAGE, inputs.pk)].quantity == Decimal("800000")
    assert "1,000,000 − 200,000 discounted = 800,000 tokens" in lines[(LineKind.USAGE, inputs.pk)].explanation["text"]
    assert lines[(LineKind.USAGE, outputs.pk)].amount == Decimal("12.00")
    assert lines[(LineKind.USAGE, calls.pk)].amount == Decimal("100.00")
    assert lines[(LineKind.USAGE, calls.pk)].explanation["adjustments"] == [
        "300,000 raised to the contracted minimum 1,000,000 calls"
    ]
    discounts = {price: line.amount for (kind, price), line in lines.items() if kind == LineKind.DISCOUNT}
    assert discounts == {inputs.pk: Decimal("-0.16"), outputs.pk: Decimal("-1.20"), calls.pk: Decimal("-10.00")}
    assert lines[(LineKind.DISCOUNT, outputs.pk)].description.startswith("Discount 10% — Launch deal: Output tokens")
    assert invoice.total == Decimal("102.24")


def test_the_upcoming_invoice_applies_the_same_adjustments():
    subscription, inputs, outputs, calls = _llm_pro()
    _add(subscription, "usageDiscount", "200000", targets=[inputs])
    _add(subscription, "maximumQuantity", "100000", targets=[calls])
    preview = invoice_preview(subscription=subscription, now=datetime(2026, 1, 20, tzinfo=UTC))
    amounts = {line.price.pk: line.amount for line in preview.lines if line.kind == LineKind.USAGE}
    # 800,000 × 0.000002 = 1.60; 2,000,000 × 0.000006 = 12.00; calls capped at 100,000 × 0.0001 = 10.00
    assert amounts == {inputs.pk: Decimal("1.60"), outputs.pk: Decimal("12.00"), calls.pk: Decimal("10.00")}


def test_a_percentage_discount_is_prorated_by_the_days_its_window_overlaps():
    subscription, *_ = _llm_pro()
    _add(subscription, "percentageDiscount", "0.1", end=JAN_16)
    invoice = _january(subscription)
    # 15 of 31 days: input 2.00 × 10 % × 15/31 = 0.0968 → −0.10; output 12.00 → −0.58; calls 30.00 → −1.45
    assert sorted(line.amount for line in invoice.lines.filter(kind=LineKind.DISCOUNT)) == [
        Decimal("-1.45"),
        Decimal("-0.58"),
        Decimal("-0.10"),
    ]


def test_a_usage_discount_window_opening_at_the_period_end_belongs_to_the_next_period():
    subscription, inputs, *_ = _llm_pro()
    _add(subscription, "usageDiscount", "200000", start=FEB_1, end=MAR_1, targets=[inputs])
    invoice = _january(subscription)
    assert invoice.lines.get(kind=LineKind.USAGE, price=inputs).amount == Decimal("2.00")


def test_replay_by_key_returns_the_first_and_another_body_is_a_conflict():
    subscription, inputs, *_ = _llm_pro()
    first = _add(subscription, "usageDiscount", "200000", targets=[inputs], key="deal-1")
    again = _add(subscription, "usageDiscount", "200000", targets=[inputs], key="deal-1")
    assert again.pk == first.pk
    with pytest.raises(AdjustmentConflict):
        _add(subscription, "usageDiscount", "300000", targets=[inputs], key="deal-1")
    assert SubscriptionAdjustment.objects.count() == 1


@pytest.mark.parametrize(
    ("type_", "number", "field"),
    [
        ("percentageDiscount", "0", "percentageDiscount"),
        ("percentageDiscount", "1.000001", "percentageDiscount"),
        ("percentageDiscount", "35", "percentageDiscount"),
        ("usageDiscount", "1e3", "usageDiscount"),
        ("usageDiscount", "1_000", "usageDiscount"),
        ("usageDiscount", "-5", "usageDiscount"),
        ("usageDiscount", "0", "usageDiscount"),
        ("minimumQuantity", "1.0000001", "minimumQuantity"),
        ("maximumQuantity", "1" * 36, "maximumQuantity"),
    ],
)
def test_numbers_beyond_the_documented_bounds_are_refused_with_their_field(type_, number, field):
    subscription, inputs, *_ = _llm_pro()
    targets = () if type_ == "percentageDiscount" else (inputs,)
    with pytest.raises(AdjustmentError) as refused:
        _add(subscription, type_, number, targets=targets)
    assert refused.value.field == field


def test_a_usage_discount_needs_one_standard_or_volume_metered_price():
    subscription, inputs, outputs, _ = _llm_pro()
    graduated = metered_price(subscription.plan, None, name="Graduated", model=PriceModel.GRADUATED)
    for targets in ((), (inputs, outputs), (graduated,)):
        with pytest.raises(AdjustmentError) as refused:
            _add(subscription, "usageDiscount", "1", targets=targets)
        assert refused.value.field == "targetPriceIds"


def test_delete_removes_an_unbilled_adjustment_and_retracts_a_billed_one():
    subscription, inputs, *_ = _llm_pro()
    unbilled = _add(subscription, "usageDiscount", "1", start=FEB_1, end=None, targets=[inputs])
    billed = _add(subscription, "percentageDiscount", "0.1", end=None)
    invoice_finalize(invoice=_january(subscription), now=FEB_1)
    assert subscription_adjustment_delete(adjustment=unbilled) is None
    retracted = subscription_adjustment_delete(adjustment=billed)
    assert retracted.effective_to == FEB_1
    assert subscription_adjustment_delete(adjustment=retracted).effective_to == FEB_1
    assert list(SubscriptionAdjustment.objects.values_list("pk", flat=True)) == [billed.pk]


def test_finance_adds_and_deletes_an_adjustment_on_the_subscription_page(billing_admin_client, viewer_client):
    subscription, inputs, *_ = _llm_pro()
    page = f"/admin/catalog/subscription/{subscription.pk}/change/"
    add = f"/admin/catalog/subscription/{subscription.pk}/adjustments/add/"
    form = {
        "type": "usageDiscount",
        "number": "200000",
        "target_price": inputs.pk,
        "effective_from": "2026-01-01 00:00:00",
        "effective_to": "2026-02-01 00:00:00",
    }
    assert viewer_client.post(add, form).status_code == 403
    assert not SubscriptionAdjustment.objects.exists()
    refused = billing_admin_client.post(add, {**form, "number": "1e3"})
    assert refused.status_code == 200 and "plain decimal string" in refused.content.decode()
    assert billing_admin_client.post(add, form).status_code == 302
    adjustment = SubscriptionAdjustment.objects.get()
    assert (adjustment.usage_discount, adjustment.target_price_id) == (Decimal("200000"), inputs.pk)
    assert "Usage discount 200000 on Input tokens" in billing_admin_client.get(page).content.decode()
    delete = f"/admin/catalog/subscription/{subscription.pk}/adjustments/{adjustment.pk}/delete/"
    assert viewer_client.post(delete).status_code == 403
    assert billing_admin_client.post(delete).status_code == 302
    assert not SubscriptionAdjustment.objects.exists()


def test_a_refreshed_draft_recomputes_its_discount_lines_on_the_late_usage():
    subscription, inputs, outputs, calls = _llm_pro()
    _add(subscription, "percentageDiscount", "0.1")
    draft = _january(subscription)
    # a late 1,000,000 output tokens of January: output 3,000,000 × 0.000006 = 18.00, its discount −1.80
    record_usage(subscription.customer, outputs.billable_metric, datetime(2026, 1, 30, tzinfo=UTC), 1_000_000)
    invoice_refresh(invoice=draft, now=datetime(2026, 2, 2, tzinfo=UTC))
    discounts = {line.price_id: line.amount for line in draft.lines.filter(kind=LineKind.DISCOUNT)}
    # input 2.00 → −0.20; output 18.00 → −1.80; calls 30.00 → −3.00; total 50.00 − 5.00 = 45.00
    assert discounts == {inputs.pk: Decimal("-0.20"), outputs.pk: Decimal("-1.80"), calls.pk: Decimal("-3.00")}
    draft.refresh_from_db()
    assert draft.total == Decimal("45.00")

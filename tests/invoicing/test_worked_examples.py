"""The catalog's worked examples invoiced end to end, checked against figures computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import PaymentTerm, PriceModel, RoundingMode
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MerchantFactory
from tests.invoicing.factories import (
    CustomerFactory,
    PlanFactory,
    PriceTierFactory,
    fee_price,
    metered_price,
    record_usage,
)

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def lines_of(invoice):
    return [(line.kind, line.amount) for line in invoice.lines.order_by("position")]


def graduated(plan, name, base_rate, discounted_rate):
    price = metered_price(plan, None, name=name, model=PriceModel.GRADUATED)
    PriceTierFactory(price=price, up_to=Decimal("10000000"), unit_price=Decimal(base_rate))
    PriceTierFactory(price=price, up_to=None, unit_price=Decimal(discounted_rate))
    return price


def test_neural_language_engine_pro_plan():
    # given the Pro plan: input $0.002/1K, output $0.006/1K, 50 % off beyond 10M tokens, and 8.5 % tax
    merchant = MerchantFactory(name="Neural Language Engine", invoice_number_prefix="NLE")
    plan = PlanFactory(
        merchant=merchant, product__merchant=merchant, product__name="Neural Language Engine", name="Pro"
    )
    input_price = graduated(plan, "Input tokens", "0.000002", "0.000001")
    output_price = graduated(plan, "Output tokens", "0.000006", "0.000003")
    customer = CustomerFactory(merchant=merchant, tax_rate=Decimal("8.5"))
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, input_price.billable_metric, datetime(2026, 1, 3, tzinfo=UTC), 7_500_000)
    record_usage(customer, input_price.billable_metric, datetime(2026, 1, 28, tzinfo=UTC), 5_000_000)
    record_usage(customer, output_price.billable_metric, datetime(2026, 1, 28, tzinfo=UTC), 3_000_000)
    # when January closes and is issued
    billing_run_execute(as_of=FEB_1)
    invoice = invoice_finalize(
        invoice=Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING), now=FEB_1
    )
    # then, by hand:
    #   input  12.5M: 10,000,000 × 0.000002 = 20.00, 2,500,000 × 0.000001 = 2.50 → 22.50
    #   output  3M:    3,000,000 × 0.000006 = 18.00
    #   subtotal 40.50, tax 8.5 % = 3.4425 → 3.44, total 43.94
    assert lines_of(invoice) == [
        (LineKind.USAGE, Decimal("22.5000")),
        (LineKind.USAGE, Decimal("18.0000")),
        (LineKind.TAX, Decimal("3.4400")),
    ]
    assert (invoice.subtotal, invoice.tax, invoice.total) == (Decimal("40.50"), Decimal("3.44"), Decimal("43.94"))
    explanation = invoice.lines.get(price=input_price).explanation
    assert [(line["kind"], line["quantity"], line["unit_price"], line["amount"]) for line in explanation["lines"]] == [
        ("tier", "10000000", "0.000002", "20"),
        ("tier", "2500000", "0.000001", "2.5"),
    ]
    assert sum(line.amount for line in invoice.lines.exclude(kind=LineKind.TAX)) + invoice.tax == invoice.total


def test_cloud_analytics_reserved_plan():
    # given the Reserved plan: compute 40 % off $0.00012/s, storage $0.023/GB, $500 reserved capacity in
    # advance, a $700 monthly minimum, banker's rounding
    merchant = MerchantFactory(name="Cloud Analytics", rounding_mode=RoundingMode.HALF_EVEN)
    plan = PlanFactory(
        merchant=merchant, product__merchant=merchant, name="Reserved", minimum_commitment=Decimal("700")
    )
    compute = metered_price(plan, "0.00012", name="Query compute", unit="seconds", discount_percent=Decimal("40"))
    storage = metered_price(plan, "0.023", name="Storage", unit="GB")
    fee_price(plan, "500.00", term=PaymentTerm.IN_ADVANCE, name="Reserved capacity")
    customer = CustomerFactory(merchant=merchant)
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, compute.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_234_567)
    record_usage(customer, storage.billable_metric, datetime(2026, 1, 31, tzinfo=UTC), 500)
    # when
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    # then, by hand:
    #   compute 1,234,567 s × 0.00012 = 148.14804, 40 % off −59.259216 → 88.888824 → 88.89
    #   storage 500 GB × 0.023 = 11.50; February's reserved capacity 500.00
    #   charges 600.39 < minimum 700 → true-up 99.61; no tax; total 700.00
    assert lines_of(invoice) == [
        (LineKind.USAGE, Decimal("88.8900")),
        (LineKind.USAGE, Decimal("11.5000")),
        (LineKind.FEE, Decimal("500.0000")),
        (LineKind.MINIMUM, Decimal("99.6100")),
    ]
    assert invoice.total == Decimal("700.00")
    compute_line = invoice.lines.get(price=compute)
    assert [line["kind"] for line in compute_line.explanation["lines"]] == ["unit", "discount"]
    assert compute_line.explanation["lines"][1]["amount"] == "-59.259216"

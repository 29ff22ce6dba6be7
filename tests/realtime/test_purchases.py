"""Prepaid top-ups and reserved capacity are invoiced and credited when paid (or at once, trusted);
commitment shortfalls billed once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.one_off_invoices import (
    CreditPurchaseRefused,
    commitment_true_ups_bill,
    credit_purchase_create,
    reserved_capacity_price,
)
from invoicing.receivables import InvoicePaymentError, invoice_pay_in_full
from wallets.errors import InvalidAmount
from wallets.models import CreditLot, CreditPurchase, CreditPurchaseKind, EntryKind, LedgerEntry
from wallets.services import IdempotencyConflict, commitment_create, credit_purchase_fulfil

from .conftest import APRIL, MARCH, NOW, balance, fund, send

pytestmark = pytest.mark.django_db


def _top_up(customer, key="po-1", amount="100", price="90", **kw):
    return credit_purchase_create(
        customer=customer,
        kind=CreditPurchaseKind.TOP_UP,
        currency="USD",
        amount=Decimal(amount),
        price=Decimal(price),
        idempotency_key=key,
        now=NOW,
        **kw,
    )


def test_a_top_up_issues_an_invoice_and_credits_nothing_until_it_is_paid(customer, subscription):
    # when $100 of credit is sold for $90, twice with the same key
    first = _top_up(customer)
    again = _top_up(customer)

    # then one issued invoice of $90 (untaxed prepayment), one pending purchase, no credit yet
    invoice = first.invoice
    assert (again.replayed, again.invoice.pk, again.purchase.pk) == (True, invoice.pk, first.purchase.pk)
    assert Invoice.objects.filter(kind=InvoiceKind.CREDIT_PURCHASE).count() == 1
    assert (invoice.status, invoice.number is not None) == (InvoiceStatus.ISSUED, True)
    assert (invoice.total, invoice.amount_due, invoice.tax) == (Decimal("90.00"), Decimal("90.00"), Decimal("0.00"))
    [line] = invoice.lines.all()
    assert (line.kind, line.description) == (LineKind.FEE, "Prepaid credit: 100 USD")
    assert (first.purchase.lot_id, first.purchase.credited_at) == (None, None)
    assert not LedgerEntry.objects.filter(kind=EntryKind.TOP_UP).exists()

    # when finance records the payment (out of band), then once more
    paid_at = NOW + timedelta(days=2)
    invoice_pay_in_full(invoice=invoice, at=paid_at)
    with pytest.raises(InvoicePaymentError):
        invoice_pay_in_full(invoice=invoice, at=paid_at)
    credit_purchase_fulfil(invoice_ref=invoice.pk, now=paid_at)  # a replayed effect grants nothing more

    # then the $100 is credited once, its lot and entry naming the invoice
    [top_up] = LedgerEntry.objects.filter(kind=EntryKind.TOP_UP)
    assert (top_up.amount, top_up.reference, top_up.occurred_at) == (Decimal(100), invoice.pk, paid_at)
    purchase = CreditPurchase.objects.get()
    assert (purchase.lot_id, purchase.credited_at) == (top_up.lot_id, paid_at)
    assert CreditLot.objects.get(pk=top_up.lot_id).purchase_invoice_ref == invoice.pk
    assert balance(customer) == Decimal(100)


def test_a_trusted_customer_is_credited_at_once_and_paying_later_adds_nothing(customer, subscription):
    customer.credit_before_payment = True
    customer.save(update_fields=["credit_before_payment"])

    result = _top_up(customer, amount="50", price="50")
    assert result.purchase.credited_at == NOW
    assert balance(customer) == Decimal(50)
    assert result.invoice.amount_due == Decimal("50.00")  # still owed

    invoice_pay_in_full(invoice=result.invoice, at=NOW + timedelta(days=1))
    assert balance(customer) == Decimal(50)
    assert LedgerEntry.objects.filter(kind=EntryKind.TOP_UP).count() == 1


def test_a_replay_that_buys_something_else_is_refused(customer, subscription):
    _top_up(customer)
    with pytest.raises(IdempotencyConflict):
        _top_up(customer, price="95")


def test_reserved_capacity_at_40_percent_off_is_invoiced_at_60_percent_and_drawn_first(customer, subscription, tokens):
    # $1,000.00 of capacity for tokens at 40 % off: 1000 × (100 − 40) / 100 = $600.00 invoiced
    result = credit_purchase_create(
        customer=customer,
        kind=CreditPurchaseKind.RESERVED,
        currency="USD",
        amount=Decimal("1000"),
        discount_percent=Decimal("40"),
        metric_ids=[tokens.pk],
        idempotency_key="rc-1",
        now=NOW,
    )
    invoice = result.invoice
    assert (invoice.total, invoice.amount_due) == (Decimal("600.00"), Decimal("600.00"))
    [line] = invoice.lines.all()
    assert line.description == "Reserved capacity: 1000 USD"
    assert line.explanation["text"] == f"1000 USD of reserved capacity for {tokens.pk} at 600 (40 % off)"
    assert result.purchase.price == Decimal("600")

    invoice_pay_in_full(invoice=invoice, at=NOW)
    lot = CreditLot.objects.get(pk=CreditPurchase.objects.get().lot_id)
    assert (lot.kind, lot.original_amount, lot.price_paid, lot.metric_ids) == (
        "reserved",
        Decimal(1000),
        Decimal(600),
        [tokens.pk],
    )
    assert lot.purchase_invoice_ref == invoice.pk

    # 1,500 tokens = 1,000 × 0.01 + 500 × 0.005 = $12.50, drawn from the reserved lot
    send(customer, 1500)
    lot.refresh_from_db()
    assert lot.remaining == Decimal("987.50")
    assert balance(customer) == Decimal("987.50")


def test_reserved_capacity_needs_a_metric_and_a_top_up_names_none(customer, subscription, tokens):
    with pytest.raises(InvalidAmount):
        credit_purchase_create(
            customer=customer,
            kind=CreditPurchaseKind.RESERVED,
            currency="USD",
            amount=Decimal("10"),
            price=Decimal("6"),
            idempotency_key="rc-x",
            now=NOW,
        )
    with pytest.raises(InvalidAmount):
        _top_up(customer, metric_ids=[tokens.pk])
    assert not Invoice.objects.filter(kind=InvoiceKind.CREDIT_PURCHASE).exists()


def test_a_price_finer_than_a_cent_or_a_discount_of_100_percent_is_refused(customer, subscription, tokens):
    with pytest.raises(CreditPurchaseRefused) as refused:
        _top_up(customer, price="9.999")
    assert refused.value.field == "price"
    with pytest.raises(CreditPurchaseRefused):
        reserved_capacity_price(
            amount=Decimal(10), discount_percent=Decimal(100), currency="USD", rounding="ROUND_HALF_UP"
        )


def test_reserved_capacity_price_is_rounded_once_to_the_cent():
    # 333.33 × 0.6 = 199.998 → 200.00
    assert reserved_capacity_price(
        amount=Decimal("333.33"), discount_percent=Decimal(40), currency="USD", rounding="ROUND_HALF_UP"
    ) == Decimal("200.00")


def test_commitment_shortfall_is_billed_once_on_an_adjustment_invoice(customer, subscription):
    fund(customer, "100")
    send(customer, 1000)  # $10 drawn
    commitment, _ = commitment_create(
        customer=customer, currency="USD", amount=Decimal(25), term_start=MARCH, term_end=APRIL
    )

    later = APRIL + timedelta(hours=1)
    [invoice] = commitment_true_ups_bill(now=later)
    assert commitment_true_ups_bill(now=later) == []

    [line] = invoice.lines.all()
    assert (invoice.kind, invoice.status, invoice.total) == (
        InvoiceKind.ADJUSTMENT,
        InvoiceStatus.ISSUED,
        Decimal("15.00"),
    )
    assert line.kind == LineKind.COMMITMENT
    commitment.refresh_from_db()
    assert (commitment.shortfall, commitment.billed_invoice_ref) == (Decimal(15), invoice.pk)

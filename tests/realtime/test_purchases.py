"""Paid top-ups are invoiced (credit_purchase) and credited; commitment shortfalls billed once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind
from invoicing.one_off_invoices import commitment_true_ups_bill, credit_purchase
from wallets.models import CreditLot, EntryKind, LedgerEntry
from wallets.services import commitment_create

from .conftest import APRIL, MARCH, NOW, balance, fund, send

pytestmark = pytest.mark.django_db


def test_credit_purchase_issues_an_invoice_and_credits_the_balance_once(customer, subscription):
    # when $100 of credit is sold for $90, twice with the same key
    first = credit_purchase(
        customer=customer, currency="USD", amount=Decimal(100), price_paid=Decimal(90), idempotency_key="po-1", now=NOW
    )
    again = credit_purchase(
        customer=customer, currency="USD", amount=Decimal(100), price_paid=Decimal(90), idempotency_key="po-1", now=NOW
    )

    # then one issued invoice of $90 (untaxed prepayment) and one top-up referencing it
    invoice = first.invoice
    assert (again.replayed, again.invoice.pk) == (True, invoice.pk)
    assert Invoice.objects.filter(kind=InvoiceKind.CREDIT_PURCHASE).count() == 1
    assert (invoice.status, invoice.number is not None) == (InvoiceStatus.ISSUED, True)
    assert (invoice.total, invoice.amount_due, invoice.tax) == (Decimal("90.00"), Decimal("90.00"), Decimal("0.00"))
    [line] = invoice.lines.all()
    assert (line.kind, line.description) == (LineKind.FEE, "Prepaid credit: 100 USD")
    [top_up] = LedgerEntry.objects.filter(kind=EntryKind.TOP_UP)
    assert (top_up.amount, top_up.reference) == (Decimal(100), invoice.pk)
    assert CreditLot.objects.get(pk=top_up.lot_id).purchase_invoice_ref == invoice.pk
    assert balance(customer) == Decimal(100)


def test_commitment_shortfall_is_billed_once_on_an_adjustment_invoice(customer, subscription):
    fund(customer, "100")
    send(customer, 1000)  # $10 drawn
    commitment = commitment_create(
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

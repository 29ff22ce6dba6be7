"""Receivables reconcile to the cent whatever finance does (hypothesis).

For any sequence of issue, one-off invoices of manual lines (negative ones included), pay (partial, over,
unallocated), credit (customer credit / refund), refund (full, partial), void (and reissue), credit-note void and
top-up purchase (trusted or not) operations, per customer and currency:

    Σ invoice totals − Σ payments − Σ credit notes + Σ refunded = Σ amounts due − Σ customer credit

(the issue's "Σ totals − payments − credits − refunds = Σ amounts due + customer credit balances" with its
signs made explicit: a refund is a credit note whose money goes back to the customer, so it counts once as a
credit note and once as money paid out; customer credit is what the merchant owes, so it is subtracted from
what is receivable). No amount due and no credit balance is ever negative; each invoice's amount due is
exactly its total less applied credit, payments allocated and credit notes applied; a paid invoice's amounts
never change; bought credit is credited once, when paid or at once for a trusted customer.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.models import (
    CreditNote,
    Invoice,
    InvoiceError,
    InvoiceStatus,
    LineKind,
    PaymentMethod,
)
from invoicing.one_off_invoices import credit_purchase_create, one_off_invoice_create
from invoicing.receivables import payment_record
from invoicing.services import (
    credit_note_issue,
    credit_note_void,
    invoice_issue,
    invoice_refund_create,
    invoice_void,
)
from invoicing.services.manual_lines import ManualLineInput
from tests.factories import MerchantFactory
from tests.invoicing.receivables import JAN_1, account, issued, receivables_check
from wallets.models import CreditPurchase, CreditPurchaseKind, EntryKind, LedgerEntry

CENT = Decimal("0.01")
cents = st.integers(min_value=1, max_value=50_000)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.lists(st.integers(-20_000, 40_000).filter(bool), min_size=1, max_size=3)),
        st.tuples(st.just("pay"), st.integers(0, 20), cents),
        st.tuples(st.just("pay_unallocated"), cents),
        st.tuples(st.just("credit"), st.integers(0, 20), st.one_of(st.none(), cents), st.booleans()),
        st.tuples(st.just("refund"), st.integers(0, 20), st.one_of(st.none(), cents)),
        st.tuples(st.just("void"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("void_note"), st.integers(0, 20)),
        # a one-off invoice of manual lines (set-up work, add-ons, SLA credits: negative lines)
        st.tuples(st.just("one_off"), st.lists(st.integers(-20_000, 40_000).filter(bool), min_size=1, max_size=3)),
        # a top-up sold on a one-off invoice (price, credit bought = price + bonus), the customer trusted or not
        st.tuples(st.just("purchase"), cents, st.integers(0, 5_000), st.booleans()),
    ),
    min_size=1,
    max_size=10,
)


class Rollback(Exception):
    pass


def money(value: int) -> Decimal:
    return Decimal(value) * CENT


def pick(rows, index):
    return rows[index % len(rows)] if rows else None


def apply(op, subscription, now, day):
    invoices = list(Invoice.objects.filter(customer=subscription.customer).order_by("created_at", "pk"))
    kind = op[0]
    if kind == "issue":
        issued(subscription, *(str(money(a)) for a in op[1]), tax_rate="7.5", day=day, now=now)
    elif kind == "pay":
        invoice = pick([i for i in invoices if i.is_open], op[1])
        if invoice is not None:
            payment_record(
                customer=subscription.customer,
                currency="USD",
                amount=money(op[2]),
                method=PaymentMethod.BANK_TRANSFER,
                received_at=now,
                now=now,
                invoice_ids=[invoice.pk],
            )
    elif kind == "pay_unallocated":
        payment_record(
            customer=subscription.customer,
            currency="USD",
            amount=money(op[1]),
            method=PaymentMethod.CASH,
            received_at=now,
            now=now,
        )
    elif kind == "credit":
        invoice = pick([i for i in invoices if i.is_open or i.status == InvoiceStatus.PAID], op[1])
        if invoice is not None:
            amounts = None
            if op[2] is not None:
                line = invoice.lines.filter(kind__in=[LineKind.FEE, LineKind.MANUAL], amount__gt=0).first()
                amounts = {line.id: money(op[2])} if line else {}
            settlement = "refund" if op[3] else "customer_credit"
            credit_note_issue(invoice=invoice, now=now, amounts=amounts, settlement=settlement)
    elif kind == "refund":
        invoice = pick([i for i in invoices if i.status == InvoiceStatus.PAID], op[1])
        if invoice is not None:
            amount = None if op[2] is None else money(op[2])
            invoice_refund_create(invoice=invoice, now=now, amount=amount)
    elif kind == "void":
        invoice = pick([i for i in invoices if i.status != InvoiceStatus.VOID], op[1])
        if invoice is not None:
            replacement = invoice_void(invoice=invoice, now=now, reissue=op[2] and not invoice.is_draft)
            if replacement is not None:
                replacement = Invoice.objects.select_related("merchant", "subscription").get(pk=replacement.pk)
                invoice_issue(replacement, now=now)
    elif kind == "one_off":
        lines = [
            ManualLineInput(display_name=f"Line {n}", currency="USD", quantity=Decimal(1), unit_price=money(a))
            for n, a in enumerate(op[1])
        ]
        one_off_invoice_create(
            customer=subscription.customer, currency="USD", lines=lines, idempotency_key=f"op{day}", now=now
        )
    elif kind == "purchase":
        customer = subscription.customer
        customer.credit_before_payment = op[3]
        customer.save(update_fields=["credit_before_payment"])
        credit_purchase_create(
            customer=customer,
            kind=CreditPurchaseKind.TOP_UP,
            currency="USD",
            amount=money(op[1] + op[2]),
            price=money(op[1]),
            idempotency_key=f"purchase-{day}",
            now=now,
        )
    elif kind == "void_note":
        note = pick(list(CreditNote.objects.filter(customer=subscription.customer, status="issued")), op[1])
        if note is not None:
            credit_note_void(credit_note=note, now=now)


def purchases_check(subscription) -> None:
    """Bought credit is credited once: one top-up entry per credited purchase and none for the others; a
    purchase is credited when its customer was trusted at the sale or its invoice was paid by payments and
    customer credit alone (a credit note settling it is not a payment)."""
    purchases = list(CreditPurchase.objects.filter(customer=subscription.customer))
    credited = [p for p in purchases if p.lot_id]
    entries = LedgerEntry.objects.filter(wallet__customer=subscription.customer, kind=EntryKind.TOP_UP)
    assert sorted(entries.values_list("lot_id", flat=True)) == sorted(p.lot_id for p in credited)
    for purchase in purchases:
        invoice = Invoice.objects.get(pk=purchase.invoice_ref)
        if invoice.status == InvoiceStatus.PAID and not invoice.credit_notes.exists():
            assert purchase.lot_id is not None, (purchase, invoice)
        if purchase.lot_id:
            assert (purchase.lot.original_amount, purchase.lot.purchase_invoice_ref) == (purchase.amount, invoice.pk)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_receivables_reconcile_to_the_cent(ops):
    try:
        with transaction.atomic():
            subscription = account(MerchantFactory(), payment_term_days=10)
            frozen: dict = {}
            for day, op in enumerate(ops):
                try:
                    apply(op, subscription, JAN_1.replace(day=1 + day, hour=1), day)
                except InvoiceError:
                    pass  # a refused operation changes nothing
                receivables_check(subscription, frozen)
                purchases_check(subscription)
            raise Rollback
    except Rollback:
        pass


@pytest.mark.django_db
def test_a_purchase_in_a_sequence_is_invoiced_then_credited_when_paid():
    # the operations the generated sequences draw from, once by hand: a $40.00 top-up (+ $5.00 bonus credit)
    subscription = account(MerchantFactory(), payment_term_days=10)
    apply(("purchase", 4_000, 500, False), subscription, JAN_1.replace(hour=1), 0)
    purchase = CreditPurchase.objects.get()
    assert (purchase.amount, purchase.price, purchase.lot_id) == (Decimal("45"), Decimal("40"), None)

    apply(("pay", 0, 4_000), subscription, JAN_1.replace(day=2, hour=1), 1)

    purchase.refresh_from_db()
    assert purchase.lot.original_amount == Decimal("45")
    receivables_check(subscription, {})
    purchases_check(subscription)

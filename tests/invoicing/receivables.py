"""Builders for receivables tests: issued invoices of chosen amounts for one customer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction

from invoicing.calculation import LineDraft, finish_lines
from invoicing.models import CreditNote, CreditNoteStatus, Invoice, InvoiceKind, InvoiceStatus, LineKind, Payment
from invoicing.receivables import customer_credit_balance
from invoicing.services import invoice_insert, invoice_issue
from tests.invoicing.factories import CustomerFactory, PlanFactory, SubscriptionFactory

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


def account(merchant, *, payment_term_days=14, tax_rate="0"):
    """A customer with one subscription (its payment term) on a plan taxed at ``tax_rate`` percent."""
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, default_tax_rate=Decimal(tax_rate))
    customer = CustomerFactory(merchant=merchant)
    subscription = SubscriptionFactory(
        merchant=merchant, customer=customer, plan=plan, started_at=JAN_1, payment_term_days=payment_term_days
    )
    return subscription


def draft(subscription, *amounts: str, tax_rate: str = "0", day: int = 0) -> Invoice:
    """A draft adjustment invoice with one line per amount (a negative amount is a credit line)."""
    start = JAN_1 + timedelta(days=day)
    lines = [
        LineDraft(kind=LineKind.FEE if Decimal(a) >= 0 else LineKind.CREDIT, description=f"Line {n}", amount=Decimal(a))
        for n, a in enumerate(amounts, start=1)
    ]
    composed = finish_lines(
        kind=InvoiceKind.ADJUSTMENT,
        lines=lines,
        currency="USD",
        rounding=subscription.merchant.rounding_mode,
        tax_rate=Decimal(tax_rate),
        tax_behavior="exclusive",
        discount_percent=None,
        minimum=None,
        period_start=start,
        period_end=start + timedelta(days=1),
    )
    with transaction.atomic():
        return invoice_insert(composed, subscription=subscription, plan=subscription.plan)


def issued(subscription, *amounts: str, now: datetime = JAN_1, tax_rate: str = "0", day: int = 0) -> Invoice:
    """An issued invoice of ``amounts`` (see ``draft``), issued at ``now``."""
    invoice = draft(subscription, *amounts, tax_rate=tax_rate, day=day)
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("merchant", "subscription").get(pk=invoice.pk)
        invoice_issue(invoice, now=now)
    return Invoice.objects.get(pk=invoice.pk)


def receivables_check(subscription, frozen: dict) -> None:
    """The receivables invariant of invoicing/RECEIVABLES.md for the subscription's customer in USD, to the cent:
    Σ totals − Σ payments − Σ credit notes + Σ refunded = Σ amounts due − Σ customer credit; no amount due or
    credit balance negative; each invoice's amount due is its total less applied credit, payments and credit
    notes applied; a paid invoice's amounts (recorded in ``frozen``) never change."""
    customer = subscription.customer
    live = Invoice.objects.filter(customer=customer, currency="USD").exclude(
        status__in=(InvoiceStatus.DRAFT, InvoiceStatus.VOID)
    )
    notes = CreditNote.objects.filter(customer=customer, currency="USD", status=CreditNoteStatus.ISSUED)

    def total(queryset, field):  # in Python: SQLite's SUM of decimals is a float
        return sum(queryset.values_list(field, flat=True), Decimal(0))

    balance = customer_credit_balance(customer_id=customer.pk, currency="USD")
    receivable = (
        total(live, "total")
        - total(Payment.objects.filter(customer=customer, currency="USD"), "amount")
        - total(notes, "total")
        + total(notes, "refunded")
    )
    assert receivable == total(live, "amount_due") - balance
    assert balance >= 0
    for invoice in live:
        assert invoice.amount_due >= 0
        applied = total(invoice.lines.filter(kind=LineKind.APPLIED_CREDIT), "amount")
        paid = total(invoice.payment_allocations.all(), "amount")
        credited = total(invoice.credit_notes.filter(status=CreditNoteStatus.ISSUED), "applied_to_due")
        assert invoice.amount_due == max(invoice.total + applied, Decimal(0)) - paid - credited
        # paid exactly when nothing is due of a positive total (a negative one is carried forward instead);
        # an invoice of no positive total is issued with nothing due and is paid only when marked so ("Mark
        # paid", ``invoice_pay_in_full``), which moves no money
        if invoice.total > 0:
            assert (invoice.status == InvoiceStatus.PAID) == (invoice.amount_due == 0)
        else:
            assert invoice.status in (InvoiceStatus.ISSUED, InvoiceStatus.PAID) and paid == 0
        amounts = (invoice.subtotal, invoice.tax, invoice.total, invoice.lines.count())
        if invoice.status == InvoiceStatus.PAID:
            assert frozen.setdefault(invoice.pk, amounts) == amounts

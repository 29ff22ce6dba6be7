"""Exactly once under concurrent writers (PostgreSQL; skipped on SQLite): two requests selling the same top-up
at the same moment make one purchase and one invoice; paying the invoice while a trusted-style fulfilment runs
credits the lot once; and the database itself refuses a second lot for a purchase."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from invoicing.models import Invoice, InvoiceKind
from invoicing.one_off_invoices import credit_purchase_create
from invoicing.receivables import invoice_pay_in_full
from tests.factories import CustomerFactory, MerchantFactory, PlanFactory, SubscriptionFactory
from tests.invoicing.test_receivables_concurrency import at_once
from wallets.models import CreditLot, CreditPurchase, CreditPurchaseKind, EntryKind, LedgerEntry, LotKind, Wallet
from wallets.services import credit_purchase_fulfil

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _customer():
    merchant = MerchantFactory()
    customer = CustomerFactory(merchant=merchant, currency="USD")
    SubscriptionFactory(plan=PlanFactory(merchant=merchant), merchant=merchant, customer=customer)
    return customer


def _sell(customer, key="k"):
    return lambda: credit_purchase_create(
        customer=customer,
        kind=CreditPurchaseKind.TOP_UP,
        currency="USD",
        amount=Decimal("100"),
        price=Decimal("90"),
        idempotency_key=key,
        now=NOW,
    )


def test_two_requests_selling_the_same_top_up_make_one_invoice():
    customer = _customer()
    first, second = at_once(_sell(customer), _sell(customer))

    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert first.invoice.pk == second.invoice.pk
    assert Invoice.objects.filter(kind=InvoiceKind.CREDIT_PURCHASE).count() == 1
    assert CreditPurchase.objects.count() == 1


def test_paying_while_the_purchase_is_fulfilled_credits_once():
    customer = _customer()
    sale = _sell(customer)()

    results = at_once(
        lambda: invoice_pay_in_full(invoice=sale.invoice, at=NOW),
        lambda: credit_purchase_fulfil(invoice_ref=sale.invoice.pk, now=NOW),
    )

    assert not any(isinstance(r, Exception) for r in results), results
    assert LedgerEntry.objects.filter(kind=EntryKind.TOP_UP).count() == 1
    assert Wallet.objects.get(customer=customer).balance == Decimal(100)


def test_the_database_refuses_a_second_lot_or_entry_for_a_purchase():
    customer = _customer()
    sale = _sell(customer)()
    invoice_pay_in_full(invoice=sale.invoice, at=NOW)
    purchase = CreditPurchase.objects.get()
    wallet = Wallet.objects.get(customer=customer)

    # a second purchase row pointing at the same lot (one-to-one)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditPurchase.objects.create(
            customer=customer,
            kind=CreditPurchaseKind.TOP_UP,
            currency="USD",
            amount=Decimal(1),
            price=Decimal(1),
            idempotency_key="other",
            invoice_ref="inv_other",
            lot=purchase.lot,
            credited_at=NOW,
        )
    # a second top-up entry with the purchase's ledger key
    with pytest.raises(IntegrityError), transaction.atomic():
        lot = CreditLot.objects.create(
            wallet=wallet, kind=LotKind.TOP_UP, original_amount=1, remaining=1, created_at=NOW
        )
        LedgerEntry.objects.create(
            wallet=wallet,
            sequence=99,
            kind=EntryKind.TOP_UP,
            amount=1,
            balance_after=101,
            lot=lot,
            idempotency_key=f"purchase:{purchase.pk}",
            occurred_at=NOW,
        )
    # credited without a lot (or a lot without the moment) is refused
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditPurchase.objects.filter(pk=purchase.pk).update(credited_at=None)
    assert LedgerEntry.objects.filter(kind=EntryKind.TOP_UP).count() == 1

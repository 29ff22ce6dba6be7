"""A credit purchase's invoice voided and reissued (the admin's "Void and reissue"): the reissue bills the
purchase on the terms it was sold at, and paying it credits what was bought, once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from invoicing.models import Invoice, InvoiceStatus
from invoicing.one_off_invoices import credit_purchase_create
from invoicing.services import invoice_finalize, invoice_mark_paid, invoice_void
from tests.factories import MerchantFactory
from tests.invoicing.receivables import JAN_1, account
from wallets.models import CreditPurchase, CreditPurchaseKind, LedgerEntry

pytestmark = pytest.mark.django_db

JAN_2 = JAN_1 + timedelta(days=1)
JAN_3 = JAN_1 + timedelta(days=2)


def _top_up(*, trusted: bool):
    # a $40.00 top-up crediting $45.00, sold to a customer whose subscription is taxed at 7.5 %
    subscription = account(MerchantFactory(), tax_rate="7.5")
    customer = subscription.customer
    customer.credit_before_payment = trusted
    customer.save(update_fields=["credit_before_payment"])
    return credit_purchase_create(
        customer=customer,
        kind=CreditPurchaseKind.TOP_UP,
        currency="USD",
        amount=Decimal("45"),
        price=Decimal("40"),
        idempotency_key="top-up-1",
        now=JAN_1,
    )


def _void_and_reissue(invoice: Invoice) -> Invoice:
    replacement = invoice_void(invoice=invoice, now=JAN_2, reason="wrong address", reissue=True)
    return invoice_finalize(invoice=replacement, now=JAN_2)


def test_the_reissue_is_untaxed_and_paying_it_credits_the_purchase_once():
    sale = _top_up(trusted=False)
    assert (sale.invoice.total, sale.invoice.tax) == (Decimal("40.00"), Decimal("0.00"))

    reissue = _void_and_reissue(sale.invoice)

    # untaxed like the sale: 40.00 + 0 % = 40.00 (not 40.00 × 1.075 = 43.00 at the subscription's rate)
    assert (reissue.subtotal, reissue.tax, reissue.total, reissue.amount_due) == (
        Decimal("40.00"),
        Decimal("0.00"),
        Decimal("40.00"),
        Decimal("40.00"),
    )
    purchase = CreditPurchase.objects.get()
    assert (purchase.invoice_ref, purchase.lot_id) == (reissue.pk, None)

    invoice_mark_paid(invoice=reissue, now=JAN_3)

    purchase.refresh_from_db()
    assert (purchase.lot.original_amount, purchase.lot.purchase_invoice_ref) == (Decimal("45"), reissue.pk)
    assert list(LedgerEntry.objects.filter(lot=purchase.lot).values_list("amount", flat=True)) == [Decimal("45")]
    assert Invoice.objects.get(pk=sale.invoice.pk).status == InvoiceStatus.VOID


def test_a_trusted_customers_lot_names_the_reissue_and_is_not_credited_again():
    sale = _top_up(trusted=True)
    lot = CreditPurchase.objects.get().lot

    reissue = _void_and_reissue(sale.invoice)
    invoice_mark_paid(invoice=reissue, now=JAN_3)

    purchase = CreditPurchase.objects.get()
    assert (purchase.invoice_ref, purchase.lot_id, purchase.lot.purchase_invoice_ref) == (
        reissue.pk,
        lot.pk,
        reissue.pk,
    )
    assert LedgerEntry.objects.filter(wallet__customer=purchase.customer, lot__isnull=False).count() == 1

"""Invoice settlement: overage moves to the invoice, credit can pay the rest, once per invoice."""

from decimal import Decimal

import pytest

from wallets.errors import InvalidAmount
from wallets.models import EntryKind, LedgerEntry, Wallet
from wallets.services import (
    credit_grant,
    credit_top_up,
    invoice_settlement_record,
    reserved_capacity_purchase,
    usage_debit,
)

from .conftest import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_settlement_clears_the_billed_overage_and_is_idempotent_per_invoice(customer, now):
    # given $12.50 of overage
    credit_top_up(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="t", now=now)
    usage_debit(customer=customer, currency="USD", amount=Decimal("22.5"), now=now)

    # when the invoice that bills it is settled, twice
    first = invoice_settlement_record(
        customer=customer, currency="USD", invoice_ref="inv_001", overage_billed=Decimal("12.5"), now=now
    )
    again = invoice_settlement_record(
        customer=customer, currency="USD", invoice_ref="inv_001", overage_billed=Decimal("12.5"), now=now
    )

    # then one entry brings the balance back to zero
    assert (first.overage_settled, first.drawn_from_balance, first.replayed) == (Decimal("12.5"), Decimal("0"), False)
    assert (again.entry.pk, again.overage_settled, again.replayed) == (first.entry.pk, Decimal("12.5"), True)
    assert LedgerEntry.objects.filter(kind=EntryKind.INVOICE_SETTLEMENT).count() == 1
    wallet = assert_ledger_consistent(Wallet.objects.get())
    assert (wallet.balance, wallet.overage_outstanding) == (Decimal("0"), Decimal("0"))


def test_settlement_draws_general_credit_but_not_reserved_capacity(customer, now):
    from tests.factories import BillableMetricFactory

    # given $30 general credit and $500 reserved compute credit
    compute = BillableMetricFactory(merchant=customer.merchant)
    credit_grant(customer=customer, currency="USD", amount=Decimal("30"), idempotency_key="g", now=now)
    reserved_capacity_purchase(
        customer=customer,
        currency="USD",
        credit_amount=Decimal("500"),
        price_paid=Decimal("300"),
        metric_ids=[compute.pk],
        idempotency_key="rc",
        now=now,
    )

    # when a $49 platform fee invoice asks to be paid from the balance
    outcome = invoice_settlement_record(
        customer=customer, currency="USD", invoice_ref="inv_fee", draw_from_balance=Decimal("49"), now=now
    )

    # then only the $30 of general credit pays; $19 stays due on the invoice
    assert (outcome.drawn_from_balance, outcome.entry.amount) == (Decimal("30"), Decimal("-30"))
    replay = invoice_settlement_record(
        customer=customer, currency="USD", invoice_ref="inv_fee", draw_from_balance=Decimal("49"), now=now
    )
    assert (replay.drawn_from_balance, replay.replayed) == (Decimal("30"), True)
    wallet = assert_ledger_consistent(Wallet.objects.get())
    assert (wallet.balance, wallet.reserved_credit, wallet.available) == (Decimal("500"), Decimal("500"), Decimal("0"))


def test_settlement_cannot_bill_more_overage_than_is_outstanding(customer, now):
    usage_debit(customer=customer, currency="USD", amount=Decimal("5"), now=now)

    with pytest.raises(InvalidAmount):
        invoice_settlement_record(
            customer=customer, currency="USD", invoice_ref="inv_x", overage_billed=Decimal("5.01"), now=now
        )
    assert not LedgerEntry.objects.filter(kind=EntryKind.INVOICE_SETTLEMENT).exists()


def test_a_replayed_usage_debit_writes_nothing(customer, now):
    first = usage_debit(customer=customer, currency="USD", amount=Decimal("5"), idempotency_key="evt-1", now=now)
    again = usage_debit(customer=customer, currency="USD", amount=Decimal("5"), idempotency_key="evt-1", now=now)

    assert (again.replayed, again.entry.pk, again.amount, again.overage) == (
        True,
        first.entry.pk,
        Decimal("5"),
        Decimal("5"),
    )
    assert LedgerEntry.objects.count() == 1

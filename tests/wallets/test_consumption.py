"""Credit is consumed in a fixed order: reserved capacity for the metric, grants (soonest expiry
first), then paid credit (soonest expiry first, then oldest)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.factories import BillableMetricFactory
from wallets.errors import InvalidAmount
from wallets.models import LedgerAllocation, Wallet
from wallets.services import credit_grant, credit_top_up, reserved_capacity_purchase, usage_debit

from .conftest import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def _remaining(result):
    result.lot.refresh_from_db()
    return result.lot.remaining


def test_grants_are_used_before_paid_credit_soonest_expiry_first(customer, now):
    # given paid credit, a grant without expiry and two expiring grants
    paid = credit_top_up(customer=customer, currency="USD", amount=Decimal("100"), idempotency_key="paid", now=now)
    forever = credit_grant(customer=customer, currency="USD", amount=Decimal("10"), idempotency_key="g0", now=now)
    late = credit_grant(
        customer=customer,
        currency="USD",
        amount=Decimal("10"),
        idempotency_key="g2",
        expires_at=now + timedelta(days=60),
        now=now,
    )
    soon = credit_grant(
        customer=customer,
        currency="USD",
        amount=Decimal("10"),
        idempotency_key="g1",
        expires_at=now + timedelta(days=7),
        now=now,
    )

    # when $35 of usage arrives
    outcome = usage_debit(customer=customer, currency="USD", amount=Decimal("35"), now=now)

    # then
    assert [(a.lot_id, a.amount) for a in LedgerAllocation.objects.filter(entry=outcome.entry)] == [
        (soon.lot.pk, Decimal("-10")),
        (late.lot.pk, Decimal("-10")),
        (forever.lot.pk, Decimal("-10")),
        (paid.lot.pk, Decimal("-5")),
    ]
    assert [_remaining(r) for r in (soon, late, forever, paid)] == [0, 0, 0, Decimal("95")]
    assert_ledger_consistent(Wallet.objects.get())


def test_reserved_capacity_is_drawn_first_and_only_for_its_metrics(customer, now):
    # given $1,000 of compute credit bought for $600, and $50 of general credit
    compute = BillableMetricFactory(merchant=customer.merchant, name="Compute seconds")
    storage = BillableMetricFactory(merchant=customer.merchant, name="Storage GB")
    reserved = reserved_capacity_purchase(
        customer=customer,
        currency="USD",
        credit_amount=Decimal("1000"),
        price_paid=Decimal("600"),
        metric_ids=[compute.pk],
        idempotency_key="rc-2026",
        purchase_invoice_ref="inv_rc",
        now=now,
    )
    general = credit_top_up(customer=customer, currency="USD", amount=Decimal("50"), idempotency_key="t", now=now)

    # when compute and storage usage arrive
    compute_debit = usage_debit(customer=customer, currency="USD", amount=Decimal("30"), metric_id=compute.pk, now=now)
    storage_debit = usage_debit(customer=customer, currency="USD", amount=Decimal("20"), metric_id=storage.pk, now=now)
    untagged = usage_debit(customer=customer, currency="USD", amount=Decimal("40"), now=now)

    # then compute drew reserved credit; storage and untagged usage drew general credit, then overage
    assert [a.lot_id for a in compute_debit.entry.allocations.all()] == [reserved.lot.pk]
    assert [a.lot_id for a in storage_debit.entry.allocations.all()] == [general.lot.pk]
    assert (untagged.covered_by_credit, untagged.overage) == (Decimal("30"), Decimal("10"))
    assert (_remaining(reserved), _remaining(general)) == (Decimal("970"), Decimal("0"))
    assert reserved.lot.price_paid == Decimal("600")
    wallet = assert_ledger_consistent(Wallet.objects.get())
    assert (wallet.balance, wallet.reserved_credit, wallet.available) == (Decimal("960"), Decimal("970"), Decimal("0"))


def test_reserved_capacity_needs_metrics_of_the_merchant(customer, now):
    foreign = BillableMetricFactory()
    for metric_ids in ([], [foreign.pk]):
        with pytest.raises(InvalidAmount):
            reserved_capacity_purchase(
                customer=customer,
                currency="USD",
                credit_amount=Decimal("1000"),
                price_paid=Decimal("600"),
                metric_ids=metric_ids,
                idempotency_key="rc",
                now=now,
            )

"""Committed usage: a minimum spend over a term, trued up once at its end."""

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.factories import BillableMetricFactory
from wallets.models import Commitment
from wallets.selectors import commitment_true_ups_unbilled
from wallets.services import commitment_create, commitment_true_up_due, commitment_true_up_mark_billed, usage_debit

pytestmark = pytest.mark.django_db


def test_true_up_bills_the_shortfall_of_the_committed_metrics_exactly_once(customer, now):
    # given a $1,000 commitment on compute over [now, now + 365 days)
    compute = BillableMetricFactory(merchant=customer.merchant)
    storage = BillableMetricFactory(merchant=customer.merchant)
    term_end = now + timedelta(days=365)
    commitment, _ = commitment_create(
        customer=customer,
        currency="USD",
        amount=Decimal("1000"),
        term_start=now,
        term_end=term_end,
        metric_ids=[compute.pk],
    )
    # and usage during the term (compute $400 + $250.25, storage $90) and after it (compute $80)
    usage_debit(customer=customer, currency="USD", amount=Decimal("400"), metric_id=compute.pk, now=now)
    usage_debit(
        customer=customer, currency="USD", amount=Decimal("250.25"), metric_id=compute.pk, now=now + timedelta(days=100)
    )
    usage_debit(
        customer=customer, currency="USD", amount=Decimal("90"), metric_id=storage.pk, now=now + timedelta(days=5)
    )
    usage_debit(customer=customer, currency="USD", amount=Decimal("80"), metric_id=compute.pk, now=term_end)

    # when the true-up runs before the end, at it, and again
    assert commitment_true_up_due(now=term_end - timedelta(seconds=1)) == []
    true_ups = commitment_true_up_due(now=term_end)
    assert commitment_true_up_due(now=term_end + timedelta(days=1)) == []

    # then
    assert [(t.commitment.pk, t.committed, t.drawn, t.shortfall) for t in true_ups] == [
        (commitment.pk, Decimal("1000"), Decimal("650.25"), Decimal("349.75"))
    ]
    commitment.refresh_from_db()
    assert (commitment.trued_up_at, commitment.shortfall) == (term_end, Decimal("349.75"))
    assert list(commitment_true_ups_unbilled()) == [commitment]
    assert commitment_true_up_mark_billed(commitment=commitment, invoice_ref="inv_9") is True
    assert commitment_true_up_mark_billed(commitment=commitment, invoice_ref="inv_10") is False
    assert list(commitment_true_ups_unbilled()) == []
    assert Commitment.objects.get().billed_invoice_ref == "inv_9"


def test_a_commitment_on_all_metrics_met_by_usage_has_no_shortfall(customer, now):
    commitment_create(
        customer=customer, currency="USD", amount=Decimal("100"), term_start=now, term_end=now + timedelta(days=30)
    )
    usage_debit(
        customer=customer,
        currency="USD",
        amount=Decimal("60"),
        metric_id=BillableMetricFactory(merchant=customer.merchant).pk,
        now=now,
    )
    usage_debit(customer=customer, currency="USD", amount=Decimal("60"), now=now)

    [true_up] = commitment_true_up_due(now=now + timedelta(days=30))

    assert (true_up.drawn, true_up.shortfall) == (Decimal("120"), Decimal("0"))
    assert list(commitment_true_ups_unbilled()) == []

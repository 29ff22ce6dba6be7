"""A commitment may buy lower rates: $0.001 instead of $0.002 per 1K tokens (0.000001 instead of 0.000002 per
token) while committed. ``commitment_create`` writes them as the customer's negotiated rates windowed on the term,
so usage in the term is rated at them (real-time debits and post-paid invoices alike) and draws the commitment
down as today; after the term the plan rate applies; the true-up's shortfall is on the discounted spend."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import BillingMode, Price, PriceModel
from invoicing.models import Invoice, InvoiceKind
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MeteredPriceFactory, PlanFactory, SubscriptionFactory
from tests.invoicing.factories import CustomerFactory, metered_price, record_usage
from tests.realtime.conftest import APRIL, MARCH, fund, send
from wallets.errors import InvalidAmount
from wallets.models import Commitment, CommitmentRate, EntryKind, LedgerEntry
from wallets.services import CommittedRate, commitment_create, commitment_true_up_due

pytestmark = pytest.mark.django_db

TEN_MILLION = 10_000_000
LIST_RATE = Decimal("0.000002")  # $0.002 per 1K tokens
COMMITTED_RATE = Decimal("0.000001")  # $0.001 per 1K tokens


def _commit(customer, plan_price, *, start, end, amount="15", rate=COMMITTED_RATE) -> Commitment:
    commitment, _ = commitment_create(
        customer=customer,
        currency="USD",
        amount=Decimal(amount),
        term_start=start,
        term_end=end,
        rates=[CommittedRate(plan_price=plan_price, unit_price=rate)],
    )
    return commitment


@pytest.fixture
def real_time(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, billing_mode=BillingMode.REAL_TIME)
    price = MeteredPriceFactory(
        plan=plan,
        unit_price=LIST_RATE,
        billable_metric__event_type="tokens.used",
        billable_metric__value_property="$.tokens",
    )
    customer = CustomerFactory(merchant=merchant, name="Acme AI", currency="USD", time_zone="UTC")
    SubscriptionFactory(plan=plan, merchant=merchant, customer=customer, started_at=MARCH, billing_anchor=MARCH)
    return customer, price


def test_real_time_usage_in_the_term_is_debited_at_the_committed_rate_and_trued_up_on_it(real_time):
    customer, price = real_time
    commitment = _commit(customer, price, start=MARCH, end=APRIL)
    rate = CommitmentRate.objects.get(commitment=commitment).price
    assert (rate.customer_id, rate.overrides_id, rate.unit_price) == (customer.pk, price.pk, COMMITTED_RATE)
    assert (rate.effective_from, rate.effective_until) == (MARCH, APRIL)
    fund(customer, "100")

    send(customer, TEN_MILLION)  # March 10: 10,000,000 × 0.000001 = 10.00
    (true_up,) = commitment_true_up_due(now=APRIL)
    # drawn on the discounted spend: 15.00 − 10.00 = 5.00 short
    assert (true_up.drawn, true_up.shortfall) == (Decimal("10"), Decimal("5"))

    april = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
    send(customer, TEN_MILLION, now=april, at=april)  # after the term: 10,000,000 × 0.000002 = 20.00
    debits = LedgerEntry.objects.filter(wallet__customer=customer, kind=EntryKind.USAGE_DEBIT).order_by("sequence")
    assert [(-e.amount, e.period_start) for e in debits] == [(Decimal("10"), MARCH), (Decimal("20"), APRIL)]


def test_post_paid_usage_in_the_term_is_invoiced_at_the_committed_rate(merchant):
    jan, feb, mar = (datetime(2026, month, 1, tzinfo=UTC) for month in (1, 2, 3))
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Enterprise")
    price = metered_price(plan, str(LIST_RATE), name="Input tokens", event_type="llm.input")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    subscription = subscription_start(customer=customer, plan=plan, started_at=jan, now=jan)
    _commit(customer, price, start=jan, end=feb)

    totals = []
    for start, end in ((jan, feb), (feb, mar)):
        record_usage(customer, price.billable_metric, start.replace(day=9), TEN_MILLION)
        billing_run_execute(as_of=end)
        invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=start)
        invoice_finalize(invoice=invoice, now=end)
        totals.append(invoice.total)
    # 10,000,000 × 0.000001 = 10.00 in the term; 10,000,000 × 0.000002 = 20.00 after it
    assert totals == [Decimal("10.00"), Decimal("20.00")]


def test_a_committed_rate_that_overlaps_a_negotiated_rate_refuses_the_whole_commitment(real_time):
    customer, price = real_time
    _commit(customer, price, start=MARCH, end=APRIL)
    with pytest.raises(InvalidAmount, match="Rate 1"):
        _commit(customer, price, start=datetime(2026, 3, 15, tzinfo=UTC), end=datetime(2026, 5, 1, tzinfo=UTC))
    assert Commitment.objects.count() == 1
    assert Price.objects.filter(customer=customer).count() == 1


def test_only_a_per_unit_or_per_package_plan_price_takes_a_committed_rate(real_time):
    customer, price = real_time
    price.model, price.unit_price = PriceModel.GRADUATED, None
    price.save(update_fields=["model", "unit_price"])
    with pytest.raises(InvalidAmount, match="per-unit or per-package"):
        _commit(customer, price, start=MARCH, end=APRIL)
    assert not Commitment.objects.exists()


def test_the_admin_creates_a_commitment_with_its_committed_rate_through_the_service(billing_admin_client, real_time):
    from django.urls import reverse

    customer, price = real_time
    body = {
        "customer": customer.pk,
        "currency": "USD",
        "amount": "15",
        "term_start_0": "2026-03-01",
        "term_start_1": "00:00:00",
        "term_end_0": "2026-04-01",
        "term_end_1": "00:00:00",
        "metric_ids": "[]",
        "description": "Committed use",
    }
    # a rate without its price is refused on the form
    response = billing_admin_client.post(
        reverse("admin:wallets_commitment_add"), {**body, "committed_unit_price": "0.000001"}
    )
    assert response.status_code == 200 and not Commitment.objects.exists()

    response = billing_admin_client.post(
        reverse("admin:wallets_commitment_add"),
        {**body, "committed_price": price.pk, "committed_unit_price": "0.000001"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rate = CommitmentRate.objects.get(commitment=Commitment.objects.get()).price
    assert (rate.overrides_id, rate.unit_price, rate.effective_from, rate.effective_until) == (
        price.pk,
        COMMITTED_RATE,
        MARCH,
        APRIL,
    )
    page = billing_admin_client.get(
        reverse("admin:wallets_commitment_change", args=[rate.commitment_rate.commitment_id])
    )
    assert page.status_code == 200
    shown = page.content.decode().lower()
    assert "committed rates" in shown and "0.000001" in shown

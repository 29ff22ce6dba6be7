"""A subscription whose usage cannot be rated fails alone, with a readable error, in the billing run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catalog.models import PaymentTerm
from invoicing.models import BillingRun, BillingRunError, BillingRunStatus, Invoice, InvoiceKind
from invoicing.services import billing_run_execute, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Pro")
    fee_price(plan, "10.00", term=PaymentTerm.IN_ARREARS, name="Support")
    metered_price(plan, "0.000002", name="Input tokens")
    return plan


BEYOND = "is beyond the largest number Meterline rates (at most 15 digits before the decimal point and 12 after it)"


@pytest.mark.parametrize(
    "poison, reason",
    [
        # SQLite sums in double precision (1e400 is infinite there); PostgreSQL's numeric sum is a 401-digit number.
        ("1e400", ("Quantity must be a finite number, got Infinity", "Quantity 1.000000e+400 " + BEYOND)),
        ("1" * 40, ("Quantity 1.111111e+39 " + BEYOND, "Quantity 1.111111e+39 " + BEYOND)),
    ],
)
def test_a_poison_quantity_fails_its_subscription_alone_with_a_readable_error(seller, plan, poison, reason):
    # given two subscriptions, one of whose January usage was stored with an absurd value (bypassing the API)
    honest = subscription_start(
        customer=CustomerFactory(merchant=seller, name="Honest"), plan=plan, started_at=JAN_1, now=JAN_1
    )
    poisoned = subscription_start(
        customer=CustomerFactory(merchant=seller, name="Poisoned"), plan=plan, started_at=JAN_1, now=JAN_1
    )
    tokens_price = plan.prices.get(billable_metric__isnull=False)
    tokens = tokens_price.billable_metric
    record_usage(honest.customer, tokens, datetime(2026, 1, 10, tzinfo=UTC), 1_000_000)
    record_usage(poisoned.customer, tokens, datetime(2026, 1, 10, tzinfo=UTC), 1_000_000)
    record_usage(poisoned.customer, tokens, datetime(2026, 1, 11, tzinfo=UTC), poison)

    # when January closes
    run = billing_run_execute(as_of=FEB_1 + timedelta(minutes=5), clock=lambda: FEB_1)

    # then the honest subscription is invoiced, the poisoned one is recorded as failed, readably
    run = BillingRun.objects.get(pk=run.pk)
    assert run.status == BillingRunStatus.PARTIAL
    assert (run.invoices_created, run.invoices_failed) == (1, 1)
    assert Invoice.objects.filter(subscription=honest, kind=InvoiceKind.RECURRING).count() == 1
    assert not Invoice.objects.filter(subscription=poisoned, kind=InvoiceKind.RECURRING).exists()
    [error] = BillingRunError.objects.filter(run=run)
    assert error.subscription_id == poisoned.pk
    assert error.period_start == JAN_1
    prefix = f"InvalidUsageError: Price 'Input tokens' ({tokens_price.pk}): "
    assert error.message in {prefix + text for text in reason}

"""Negotiated rates with an effective window (``Price.effective_from`` / ``effective_until``): a period is rated
at the customer's rate only when it starts inside the window, at the plan price otherwise; windows of one line
never overlap; an end inside a period keeps the rate for that whole period; invoiced periods are never re-rated.

The plan prices input tokens at $3.00 per 1M (0.000003 per token); each month the customer uses 1,000,000 tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from catalog.models import Price
from catalog.selectors import plan_prices_for_customer, subscription_prices
from catalog.services import price_create
from invoicing.intervals import subscription_timeline
from invoicing.models import Invoice, InvoiceKind
from invoicing.services import (
    IntervalConflict,
    IntervalEdit,
    IntervalError,
    billing_run_execute,
    invoice_finalize,
    subscription_intervals_edit,
    subscription_start,
)
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)
APR_1 = datetime(2026, 4, 1, tzinfo=UTC)
MAY_1 = datetime(2026, 5, 1, tzinfo=UTC)
MONTHS = [JAN_1, FEB_1, MAR_1, APR_1, MAY_1]


@pytest.fixture
def enterprise(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Enterprise")
    inputs = metered_price(plan, "0.000003", name="Input tokens", event_type="llm.input", plan_line_key="input_tokens")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    return subscription, inputs


def _add(unit_price: str, start: datetime, end: datetime | None = None) -> dict:
    return {
        "priceKey": "input_tokens",
        "unitPrice": unit_price,
        "baseQuantity": "1",
        "billingCadence": "P1M",
        "billingMode": "arrears",
        "startDate": start,
        "endDate": end,
    }


def _edit(subscription, *, now=JAN_1, **ops):
    return subscription_intervals_edit(subscription=subscription, edit=IntervalEdit(**ops), now=now)


def _bill_month(subscription, inputs, start: datetime, end: datetime) -> Decimal:
    """1,000,000 tokens on the 9th of the month, billed and issued at the end of it: the invoice's total."""
    record_usage(subscription.customer, inputs.billable_metric, start.replace(day=9), 1_000_000)
    billing_run_execute(as_of=end)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=start)
    invoice_finalize(invoice=invoice, now=end)
    return invoice.total


def test_a_two_dollar_rate_until_march_then_the_three_dollar_plan_price(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1, MAR_1)])
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    assert (rate.effective_from, rate.effective_until) == (JAN_1, MAR_1)

    totals = [_bill_month(subscription, inputs, start, end) for start, end in zip(MONTHS, MONTHS[1:4], strict=False)]
    # 1,000,000 × 0.000002 = 2.00 in January and February; 1,000,000 × 0.000003 = 3.00 from March
    assert totals == [Decimal("2.00"), Decimal("2.00"), Decimal("3.00")]
    march = Invoice.objects.get(subscription=subscription, period_start=MAR_1).lines.get()
    assert march.price_id == inputs.pk


def test_a_sequence_of_windows_bills_each_rate_in_its_own_periods(enterprise):
    subscription, inputs = enterprise
    # Jan–Mar at $2.00, from April at $1.50, written in one edit
    _edit(subscription, add=[_add("0.000002", JAN_1, APR_1), _add("0.0000015", APR_1)])

    intervals = subscription_timeline(subscription=subscription).intervals
    assert [(i.unit_price, i.start_date, i.end_date) for i in intervals] == [
        (Decimal("0.000002"), JAN_1, APR_1),
        (Decimal("0.0000015"), APR_1, None),
    ]
    totals = [_bill_month(subscription, inputs, start, end) for start, end in zip(MONTHS, MONTHS[1:], strict=False)]
    assert totals == [Decimal("2.00"), Decimal("2.00"), Decimal("2.00"), Decimal("1.50")]


def test_an_end_inside_a_period_keeps_the_rate_to_the_end_of_that_period(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1, datetime(2026, 2, 15, tzinfo=UTC))])
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    assert rate.effective_until == MAR_1  # the end of February's period

    intervals = subscription_timeline(subscription=subscription).intervals
    # the override ends and the plan line resumes, an interval of its own
    assert [(i.id, i.unit_price, i.start_date, i.end_date) for i in intervals] == [
        (rate.pk, Decimal("0.000002"), JAN_1, MAR_1),
        (f"{inputs.pk}:{rate.pk}", None, MAR_1, None),
    ]
    totals = [_bill_month(subscription, inputs, start, end) for start, end in zip(MONTHS, MONTHS[1:4], strict=False)]
    assert totals == [Decimal("2.00"), Decimal("2.00"), Decimal("3.00")]


def test_windows_of_one_line_never_overlap(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1, APR_1)])
    with pytest.raises(IntervalConflict) as overlap:
        _edit(subscription, add=[_add("0.0000015", MAR_1)])
    assert overlap.value.code == "INTERVAL_OVERLAP"
    # the catalog's service refuses it too (the admin's price page writes through it)
    fields = {
        "plan": inputs.plan,
        "billable_metric": inputs.billable_metric,
        "invoice_display_name": "Input tokens",
        "unit_price": Decimal("0.0000015"),
        "customer": subscription.customer,
        "overrides": inputs,
        "effective_from": MAR_1,
    }
    with pytest.raises(ValidationError) as refused:
        price_create(merchant=subscription.merchant, fields=fields)
    assert "effective_from" in refused.value.message_dict
    # from April it starts where the first ends
    price_create(merchant=subscription.merchant, fields={**fields, "effective_from": APR_1})
    assert Price.objects.filter(customer=subscription.customer).count() == 2


def test_a_start_inside_a_period_or_an_end_not_after_the_start_is_refused(enterprise):
    subscription, _ = enterprise
    with pytest.raises(IntervalError) as inside:
        _edit(subscription, add=[_add("0.000002", datetime(2026, 2, 10, tzinfo=UTC))])
    assert inside.value.field == "add[0].startDate"
    with pytest.raises(IntervalError) as backwards:
        _edit(subscription, add=[_add("0.000002", FEB_1, JAN_1)])
    assert backwards.value.field == "add[0].endDate"


def test_an_end_is_closed_moved_and_reopened_but_never_before_the_open_start(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1)])
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    assert _bill_month(subscription, inputs, JAN_1, FEB_1) == Decimal("2.00")

    # January is invoiced: an end on January 15 would close it inside that period (February 1) — allowed;
    # an end before the open start (February 1) is not
    _edit(subscription, now=FEB_1, edit=[{"id": rate.pk, "endDate": datetime(2026, 3, 10, tzinfo=UTC)}])
    rate.refresh_from_db()
    assert rate.effective_until == APR_1
    _edit(subscription, now=FEB_1, edit=[{"id": rate.pk, "endDate": FEB_1}])
    rate.refresh_from_db()
    assert rate.effective_until == FEB_1
    assert _bill_month(subscription, inputs, FEB_1, MAR_1) == Decimal("3.00")

    # the rate ended on February 1, in invoiced history: re-opening it would re-rate February
    with pytest.raises(IntervalConflict) as billed:
        _edit(subscription, now=MAR_1, edit=[{"id": rate.pk, "endDate": None}])
    assert billed.value.code == "INTERVAL_BILLED"
    # a new rate from the open start (March 1) instead
    _edit(subscription, now=MAR_1, add=[_add("0.0000025", MAR_1)])
    assert _bill_month(subscription, inputs, MAR_1, APR_1) == Decimal("2.50")


def test_an_edit_reopens_an_end_not_yet_reached(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1, MAR_1)])
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    result = _edit(subscription, edit=[{"id": rate.pk, "endDate": None}])
    assert [(i.id, i.end_date) for i in result.intervals] == [(rate.pk, None)]
    entry = next(e for e in result.change.entries if e["intervalId"] == rate.pk)
    assert (entry["before"]["endDate"], entry["after"]["endDate"]) == ("2026-03-01T00:00:00Z", None)
    with pytest.raises(IntervalError) as backwards:
        _edit(subscription, edit=[{"id": rate.pk, "endDate": datetime(2025, 12, 1, tzinfo=UTC)}])
    assert backwards.value.field == "edit[0].endDate"


def test_an_end_before_the_open_start_is_refused_as_billed(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1)])
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    assert _bill_month(subscription, inputs, JAN_1, FEB_1) == Decimal("2.00")
    assert _bill_month(subscription, inputs, FEB_1, MAR_1) == Decimal("2.00")
    # February was billed at $2.00: an end on February 1 would make it a plan-price period
    with pytest.raises(IntervalConflict) as billed:
        _edit(subscription, now=MAR_1, edit=[{"id": rate.pk, "endDate": FEB_1}])
    assert billed.value.code == "INTERVAL_BILLED"
    rate.refresh_from_db()
    assert rate.effective_until is None


def test_the_selectors_resolve_the_rate_of_the_period_they_are_asked_for(enterprise):
    subscription, inputs = enterprise
    _edit(subscription, add=[_add("0.000002", JAN_1, MAR_1)])

    def unit_prices(prices):
        return [p.unit_price for p in prices]

    assert unit_prices(subscription_prices(subscription, at=FEB_1)) == [Decimal("0.000002")]
    assert unit_prices(subscription_prices(subscription, at=MAR_1)) == [Decimal("0.000003")]
    # no period given: the prices after every window has started (this one has ended)
    assert unit_prices(subscription_prices(subscription)) == [Decimal("0.000003")]
    plan, customer = subscription.plan, subscription.customer
    assert unit_prices(plan_prices_for_customer(plan=plan, customer=customer, at=JAN_1)) == [Decimal("0.000002")]
    assert unit_prices(plan_prices_for_customer(plan=plan, at=JAN_1)) == [Decimal("0.000003")]


def test_on_postgresql_the_database_refuses_overlapping_windows_written_past_the_services(enterprise):
    from django.db import IntegrityError, connection, transaction

    from tests.factories import MeteredPriceFactory

    if connection.vendor != "postgresql":
        pytest.skip("the exclusion constraint is PostgreSQL's (migration catalog 0019)")
    subscription, inputs = enterprise
    common = {
        "plan": inputs.plan,
        "billable_metric": inputs.billable_metric,
        "customer": subscription.customer,
        "overrides": inputs,
    }
    MeteredPriceFactory(**common, unit_price=Decimal("0.000002"), effective_from=JAN_1, effective_until=APR_1)
    with pytest.raises(IntegrityError), transaction.atomic():
        MeteredPriceFactory(**common, unit_price=Decimal("0.0000015"), effective_from=MAR_1)
    # touching windows do not overlap ([Jan, Apr) and [Apr, …))
    MeteredPriceFactory(**common, unit_price=Decimal("0.0000015"), effective_from=APR_1)
    assert Price.objects.filter(customer=subscription.customer).count() == 2

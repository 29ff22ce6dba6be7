"""Subscription-only intervals billed: a $300/month platform add-on added mid-term is prorated for the rest of its
first period and billed whole after, on the same invoice as the plan's lines; closed mid-period it bills the
part up to its end; a metered add-on bills the usage inside its window at its own rate; a plan version move
keeps it. April 2026 has 30 days, so the day fractions are exact."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.models import PaymentTerm
from catalog.services import VersionLine, plan_version_mint
from invoicing.intervals import subscription_timeline
from invoicing.models import Invoice, InvoiceKind, LineKind, SubscriptionIntervalChange, SubscriptionPriceInterval
from invoicing.services import (
    IntervalConflict,
    IntervalEdit,
    IntervalError,
    billing_run_execute,
    invoice_finalize,
    subscription_intervals_edit,
    subscription_start,
)
from invoicing.services.plan_versions import VersionMigrationConflict, subscription_version_migrate
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

APR_1 = datetime(2026, 4, 1, tzinfo=UTC)
APR_11 = datetime(2026, 4, 11, tzinfo=UTC)
APR_21 = datetime(2026, 4, 21, tzinfo=UTC)
MAY_1 = datetime(2026, 5, 1, tzinfo=UTC)
MAY_16 = datetime(2026, 5, 16, tzinfo=UTC)
JUN_1 = datetime(2026, 6, 1, tzinfo=UTC)
JUN_16 = datetime(2026, 6, 16, tzinfo=UTC)
JUL_1 = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture
def setup(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    base = fee_price(plan, "49", name="Pro plan", plan_line_key="pro")
    # the catalog's add-ons live on a plan of their own: the subscription's plan has no such line
    addons = PlanFactory(merchant=merchant, product=plan.product, name="Add-ons")
    addon = fee_price(addons, "300", name="Dedicated support")
    arrears_addon = fee_price(addons, "300", name="Private cluster", term=PaymentTerm.IN_ARREARS)
    images = metered_price(addons, "0.04", name="Image generations", unit="images", event_type="image.generated")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    subscription = subscription_start(customer=customer, plan=plan, started_at=APR_1, now=APR_1)
    for invoice in Invoice.objects.filter(subscription=subscription, status="draft"):
        invoice_finalize(invoice=invoice, now=APR_1)
    return {
        "subscription": subscription,
        "base": base,
        "addon": addon,
        "arrears_addon": arrears_addon,
        "images": images,
    }


def _add(price, key, start, *, unit_price=None, end=None, mode="advance", quantity="1"):
    op = {
        "priceKey": key,
        "priceId": price.pk,
        "unitPrice": unit_price,
        "baseQuantity": quantity,
        "billingCadence": "P1M",
        "billingMode": mode,
        "startDate": start,
    }
    if end is not None:
        op["endDate"] = end
    return op


def _edit(subscription, now, **ops):
    return subscription_intervals_edit(subscription=subscription, edit=IntervalEdit(**ops), now=now)


def _recurring(subscription, period_start):
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=period_start)


def _lines(invoice):
    return [
        (line.description.split(" (")[0], line.amount, line.explanation.get("proration", {}).get("covered_days"))
        for line in invoice.lines.order_by("position")
        if line.kind != LineKind.TAX
    ]


@pytest.mark.django_db
def test_an_add_on_from_day_11_bills_200_for_its_first_period_and_300_the_next(setup):
    sub, addon = setup["subscription"], setup["addon"]
    result = _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_11)], change_reason="commercial")
    row = SubscriptionPriceInterval.objects.get(subscription=sub)
    # unitPrice null saves today's catalog rate
    assert (row.price_key, row.unit_price, row.start_date, row.end_date) == (
        "platform-addon",
        Decimal(300),
        APR_11,
        None,
    )
    owned = [i for i in result.intervals if i.kind == "subscription_owned"]
    assert [(i.id, i.price_id, i.unit_price, i.billing_mode) for i in owned] == [
        (row.pk, addon.pk, Decimal(300), "advance")
    ]
    assert result.change.entries == [
        {"intervalId": row.pk, "before": None, "after": owned[0].copy()},
    ]

    billing_run_execute(as_of=MAY_1)
    april = _recurring(sub, APR_1)
    # the plan's May fee ahead, the add-on's April 11–30 (20 of 30 days: 300 × 20/30 = 200.00), its May ahead
    assert _lines(april) == [
        ("Pro plan", Decimal("49.00"), 31),
        ("Dedicated support", Decimal("200.00"), 20),
        ("Dedicated support", Decimal("300.00"), 31),
    ]
    first = april.lines.get(amount=Decimal("200.00"))
    assert first.explanation["subscriptionIntervalId"] == row.pk
    assert first.explanation["proration"]["period_days"] == 30
    assert first.explanation["proration"]["description"] == "Prorated 20 of 30 days: $300.00 × 20/30 = $200.00"
    assert (first.quantity, first.unit_price) == (Decimal(1), Decimal(300))
    assert april.total == Decimal("549.00")


@pytest.mark.django_db
def test_an_add_on_closed_mid_period_bills_the_days_up_to_its_end(setup):
    sub, addon = setup["subscription"], setup["addon"]
    _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_11)])
    billing_run_execute(as_of=MAY_1)
    invoice_finalize(invoice=_recurring(sub, APR_1), now=MAY_1)
    row = SubscriptionPriceInterval.objects.get(subscription=sub)

    # May was billed ahead on April's invoice: an end inside May would change it
    with pytest.raises(IntervalError) as early:
        _edit(sub, MAY_16, edit=[{"id": row.pk, "endDate": MAY_16}])
    assert early.value.field == "edit[0].endDate"
    # billed: its rate is history now
    with pytest.raises(IntervalConflict) as billed:
        _edit(sub, MAY_16, edit=[{"id": row.pk, "unitPrice": "250"}])
    assert billed.value.code == "INTERVAL_BILLED"
    with pytest.raises(IntervalConflict):
        _edit(sub, MAY_16, remove=[{"id": row.pk}])

    _edit(sub, MAY_16, edit=[{"id": row.pk, "endDate": JUN_16}])
    billing_run_execute(as_of=JUN_1)
    may = _recurring(sub, MAY_1)
    # June 1–15: 15 of 30 days, 300 × 15/30 = 150.00
    assert _lines(may) == [("Pro plan", Decimal("49.00"), 30), ("Dedicated support", Decimal("150.00"), 15)]
    invoice_finalize(invoice=may, now=JUN_1)
    billing_run_execute(as_of=JUL_1)
    assert _lines(_recurring(sub, JUN_1)) == [("Pro plan", Decimal("49.00"), 31)]


@pytest.mark.django_db
def test_an_in_arrears_add_on_with_an_end_bills_its_window_on_the_period_close(setup):
    sub = setup["subscription"]
    # 2 units at a negotiated 150 from April 11 to April 21: 300 × 10/30 = 100.00
    _edit(
        sub,
        APR_11,
        add=[
            _add(setup["arrears_addon"], "cluster", APR_11, unit_price="150", end=APR_21, mode="arrears", quantity="2")
        ],
    )
    billing_run_execute(as_of=MAY_1)
    april = _recurring(sub, APR_1)
    # the plan's May fee ahead, then the add-on's window
    assert _lines(april) == [("Pro plan", Decimal("49.00"), 31), ("Private cluster", Decimal("100.00"), 10)]
    line = april.lines.get(description__startswith="Private cluster")
    assert (line.quantity, line.unit_price) == (Decimal(2), Decimal(150))
    assert line.explanation["text"].startswith("2 ")


@pytest.mark.django_db
def test_a_metered_add_on_bills_the_usage_inside_its_window_at_its_rate(setup):
    sub, images = setup["subscription"], setup["images"]
    metric = images.billable_metric
    record_usage(sub.customer, metric, datetime(2026, 4, 5, tzinfo=UTC), 100)  # before it starts: not billed
    _edit(sub, APR_11, add=[_add(images, "images", APR_11, unit_price="0.03", end=APR_21, mode="arrears")])
    record_usage(sub.customer, metric, datetime(2026, 4, 15, tzinfo=UTC), 1000)
    record_usage(sub.customer, metric, datetime(2026, 4, 25, tzinfo=UTC), 500)  # after it ends: not billed
    billing_run_execute(as_of=MAY_1)
    april = _recurring(sub, APR_1)
    usage = april.lines.get(kind=LineKind.USAGE)
    # 1,000 images × 0.03 = 30.00 (the catalog's 0.04 would be 40.00)
    assert (usage.quantity, usage.unit_price, usage.amount) == (Decimal(1000), Decimal("0.03"), Decimal("30.00"))
    assert (usage.service_start, usage.service_end) == (APR_11, APR_21)
    assert april.total == Decimal("79.00")
    # late usage inside the window, known when the draft is finalized: re-rated at the interval's rate
    record_usage(sub.customer, metric, datetime(2026, 4, 16, tzinfo=UTC), 200)
    invoice_finalize(invoice=april, now=datetime(2026, 5, 2, tzinfo=UTC))
    usage = april.lines.get(kind=LineKind.USAGE)
    # 1,200 images × 0.03 = 36.00
    assert (usage.quantity, usage.amount) == (Decimal(1200), Decimal("36.00"))
    assert usage.explanation["subscriptionIntervalId"] == SubscriptionPriceInterval.objects.get().pk


@pytest.mark.django_db
def test_an_unbilled_interval_is_edited_and_removed_and_the_change_log_keeps_both(setup):
    sub, addon = setup["subscription"], setup["addon"]
    _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_21)])
    row = SubscriptionPriceInterval.objects.get(subscription=sub)
    _edit(sub, datetime(2026, 4, 12, tzinfo=UTC), edit=[{"id": row.pk, "unitPrice": "250", "endDate": JUN_1}])
    row.refresh_from_db()
    assert (row.unit_price, row.end_date) == (Decimal(250), JUN_1)
    with pytest.raises(IntervalConflict) as again:
        _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_21)])
    assert again.value.code == "INTERVAL_OVERLAP"
    _edit(sub, datetime(2026, 4, 13, tzinfo=UTC), remove=[{"id": row.pk}])
    assert not SubscriptionPriceInterval.objects.exists()
    changes = list(SubscriptionIntervalChange.objects.filter(subscription=sub).order_by("created_at", "pk"))
    entries = [change.entries[0] for change in changes]
    assert [(e["before"] is None, e["after"] is None) for e in entries] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    assert entries[1]["after"]["unitPrice"] == "250" and entries[1]["after"]["endDate"] == "2026-06-01T00:00:00Z"


@pytest.mark.django_db
def test_a_version_move_keeps_the_interval_and_a_version_with_its_key_waits_for_its_end(setup):
    sub, addon, base = setup["subscription"], setup["addon"], setup["base"]
    plan = sub.plan
    plan_version_mint(plan=plan, lines=[VersionLine(base.pk, "pro")], now=APR_1)
    _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_11)])
    v2 = plan_version_mint(plan=plan, lines=[VersionLine(base.pk, "pro")], now=APR_11)
    subscription_version_migrate(subscription=sub, target_version_number=v2.number, now=APR_11)
    timeline = subscription_timeline(subscription=sub)
    assert [(i.price_key, i.kind) for i in timeline.intervals] == [
        ("pro", "plan_line"),
        ("platform-addon", "subscription_owned"),
    ]
    support = fee_price(plan, "300", name="Support")
    clash = plan_version_mint(
        plan=plan, lines=[VersionLine(base.pk, "pro"), VersionLine(support.pk, "platform-addon")], now=APR_11
    )
    with pytest.raises(VersionMigrationConflict) as refused:
        subscription_version_migrate(subscription=sub, target_version_number=clash.number, now=APR_11)
    assert refused.value.code == "INTERVAL_KEY_CONFLICT"
    _edit(sub, APR_11, edit=[{"id": timeline.intervals[1].id, "endDate": MAY_1}])
    subscription_version_migrate(subscription=sub, target_version_number=clash.number, now=APR_11)


@pytest.mark.django_db
def test_a_real_time_subscription_bills_a_fee_interval_on_its_period_close(setup):
    sub, addon = setup["subscription"], setup["addon"]
    sub.billing_mode = "real_time"
    sub.save(update_fields=["billing_mode"])
    _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_11)])
    billing_run_execute(as_of=MAY_1)
    april = _recurring(sub, APR_1)
    # no usage to settle from the prepaid balance: the fees are due as on a post-paid invoice
    assert _lines(april)[:3] == [
        ("Pro plan", Decimal("49.00"), 31),
        ("Dedicated support", Decimal("200.00"), 20),
        ("Dedicated support", Decimal("300.00"), 31),
    ]
    assert april.amount_due == Decimal("549.00")


@pytest.mark.django_db
def test_a_termination_inside_a_period_billed_ahead_credits_the_add_on_days_not_used(setup):
    from invoicing.services import subscription_terminate

    sub, addon = setup["subscription"], setup["addon"]
    _edit(sub, APR_11, add=[_add(addon, "platform-addon", APR_11)])
    billing_run_execute(as_of=MAY_1)
    invoice_finalize(invoice=_recurring(sub, APR_1), now=MAY_1)
    subscription_terminate(subscription=sub, now=MAY_16)
    final = Invoice.objects.get(subscription=sub, kind=InvoiceKind.RECURRING, period_start=MAY_1)
    credits = {
        line.description.split(":")[1].split(" (")[0].strip(): line.amount
        for line in final.lines.filter(kind=LineKind.CREDIT)
    }
    # May 16–31 unused, 16 of 31 days: 300 × 16/31 = 154.84 and the plan's 49 × 16/31 = 25.29
    assert credits == {"Dedicated support": Decimal("-154.84"), "Pro plan": Decimal("-25.29")}


def _owned_row(subscription, price, key, start, end, rate):
    return SubscriptionPriceInterval.objects.create(
        merchant=subscription.merchant,
        subscription=subscription,
        price=price,
        price_key=key,
        unit_price=Decimal(rate),
        quantity=Decimal(1),
        start_date=start,
        end_date=end,
        created_at=start,
        updated_at=start,
    )


@pytest.mark.django_db
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    days=st.lists(st.integers(min_value=1, max_value=30), min_size=3, max_size=3, unique=True).map(sorted),
    rate=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2),
)
def test_an_add_on_split_in_two_bills_what_one_interval_bills_within_a_cent(merchant, days, rate):
    """An in-arrears add-on over April days [a, c) bills, to the cent, what the same add-on closed at day b and
    continued under another key from b bills (each line rounded once), and never more than the whole month."""

    class Rollback(Exception):
        pass

    first, split, last = (datetime(2026, 4, day, tzinfo=UTC) for day in days)
    try:
        with transaction.atomic():
            plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
            addon = fee_price(plan, "1", name="Add-on", term=PaymentTerm.IN_ARREARS)
            other = PlanFactory(merchant=merchant, product=plan.product, name="Base")
            customer = CustomerFactory(merchant=merchant, tax_rate=Decimal("0"))
            whole = subscription_start(customer=customer, plan=other, started_at=APR_1, now=APR_1)
            halves = subscription_start(customer=customer, plan=other, started_at=APR_1, now=APR_1)
            _owned_row(whole, addon, "addon", first, last, rate)
            _owned_row(halves, addon, "addon", first, split, rate)
            _owned_row(halves, addon, "addon-2", split, last, rate)
            billing_run_execute(as_of=MAY_1, clock=lambda: MAY_1)
            one = _recurring(whole, APR_1).total
            two = _recurring(halves, APR_1).total
            assert abs(one - two) <= Decimal("0.01")
            assert Decimal(0) <= one <= rate
            raise Rollback
    except Rollback:
        pass

"""The demo activity command (invoicing/demo.py) gives the demo customers weeks of usage and invoices last month;
running it again changes nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, Min
from django.utils import timezone

from catalog.demo import demo_catalog_build, first_of_previous_month
from catalog.models import BillableMetric, Subscription
from invoicing.models import BillingRun, Invoice
from metering.models import UsageEvent
from wallets.models import CreditPurchase

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 17, 9, 30, tzinfo=UTC)
FEBRUARY, MARCH = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
# Fixed by the seeds (customer, event type, day): February 1 to NOW, every 2 to 9 hours per event type.
EVENTS = 2619
LAST_WEEK = {
    "acme-ai": 59,
    "fintech-ledger": 88,
    "global-logistics": 92,
    "hobby-hacker": 26,
    "retail-insights": 87,
    "startup-studio": 64,
}


@pytest.fixture
def demo_catalog(db):
    """The catalog as `make run` builds it on NOW: subscriptions from the first of last month."""
    return demo_catalog_build(now=first_of_previous_month(NOW), with_api_keys=False)


def run(now: datetime = NOW) -> str:
    out = io.StringIO()
    call_command("demo_activity", now=now.isoformat(), stdout=out)
    return out.getvalue()


def invoices() -> dict[tuple[str, str], tuple[str, str, datetime]]:
    return {
        (i.customer.external_id, i.kind): (i.status, i.number or "", i.period_start)
        for i in Invoice.objects.select_related("customer")
    }


def test_running_twice_adds_nothing_the_second_time(demo_catalog):
    first_output = run()
    events, invoice_rows, runs = UsageEvent.objects.count(), invoices(), BillingRun.objects.count()

    second_output = run()

    assert (UsageEvent.objects.count(), invoices(), BillingRun.objects.count()) == (events, invoice_rows, runs)
    assert (events, len(invoice_rows), runs) == (EVENTS, 7, 1)
    assert first_output.startswith(f"Demo usage: {EVENTS} events added, 0 already there.\n")
    assert second_output == (
        f"Demo usage: 0 events added, {EVENTS} already there.\nDemo billing: already run this month, nothing to do.\n"
    )


def test_last_month_is_invoiced_and_every_other_draft_issued(demo_catalog):
    run()

    assert invoices() == {
        ("acme-ai", "opening"): ("issued", "NLE-2026-000001", FEBRUARY),
        ("acme-ai", "recurring"): ("issued", "NLE-2026-000002", FEBRUARY),
        ("fintech-ledger", "recurring"): ("issued", "CA-2026-000001", FEBRUARY),
        ("fintech-ledger", "credit_purchase"): ("paid", "CA-2026-000002", NOW),
        ("hobby-hacker", "recurring"): ("draft", "", FEBRUARY),
        ("retail-insights", "recurring"): ("draft", "", FEBRUARY),
        ("startup-studio", "recurring"): ("issued", "NLE-2026-000003", FEBRUARY),
    }
    assert set(Invoice.objects.filter(status="issued").values_list("issued_at", flat=True)) == {NOW}
    assert set(Invoice.objects.filter(kind="recurring").values_list("period_end", flat=True)) == {MARCH}
    run_row = BillingRun.objects.get()
    assert (run_row.trigger, run_row.as_of, run_row.status, run_row.invoices_created) == ("demo", NOW, "succeeded", 6)


def test_every_demo_customer_has_usage_through_the_last_weeks(demo_catalog):
    run()

    span = UsageEvent.objects.aggregate(first=Min("timestamp"), last=Max("timestamp"))
    assert FEBRUARY <= span["first"] < FEBRUARY + timedelta(hours=9)
    assert NOW - timedelta(hours=9) < span["last"] <= NOW
    last_week = UsageEvent.objects.filter(timestamp__gt=NOW - timedelta(days=7)).values("customer__external_id")
    assert {row["customer__external_id"]: row["n"] for row in last_week.annotate(n=Count("id"))} == LAST_WEEK
    assert set(UsageEvent.objects.values_list("event_type", flat=True)) == {
        "llm.completion",
        "llm.finetune",
        "warehouse.query",
        "warehouse.storage",
        "warehouse.egress",
    }


def test_a_later_run_the_same_month_adds_only_the_newer_events(demo_catalog):
    run()
    before = set(UsageEvent.objects.values_list("idempotency_key", "timestamp"))

    output = run(NOW + timedelta(days=1))

    after = set(UsageEvent.objects.values_list("idempotency_key", "timestamp"))
    added = after - before
    assert before < after
    assert all(NOW < timestamp <= NOW + timedelta(days=1) for _, timestamp in added)
    assert output.endswith("Demo billing: already run this month, nothing to do.\n")
    assert Invoice.objects.count() == 7  # 6 of the billing run, 1 reserved compute sale


def test_the_next_month_bills_the_month_that_ended(demo_catalog):
    run()

    run(datetime(2026, 4, 2, 8, tzinfo=UTC))

    march = Invoice.objects.filter(kind="recurring", period_start=MARCH)
    assert march.count() == 5
    assert BillingRun.objects.filter(trigger="demo").count() == 2


def test_the_demo_catalog_command_starts_subscriptions_on_the_first_of_last_month(db):
    call_command("demo_catalog", "--no-api-keys", stdout=io.StringIO())

    assert set(Subscription.objects.values_list("started_at", flat=True)) == {first_of_previous_month(timezone.now())}


def test_without_the_demo_catalog_the_command_says_what_to_run(db):
    with pytest.raises(CommandError, match="run `manage.py demo_catalog` first"):
        run()


def test_now_must_be_aware(demo_catalog):
    with pytest.raises(CommandError, match="not an aware ISO 8601 datetime"):
        call_command("demo_activity", now="2026-03-17T09:30:00")


def test_the_reserved_plan_sells_compute_at_40_percent_off_invoiced_and_paid(demo_catalog):
    output = run()

    # 12,000 of query compute credit × (100 − 40) / 100 = $7,200.00 on one paid one-off invoice
    invoice = Invoice.objects.get(kind="credit_purchase")
    [line] = invoice.lines.all()
    assert (invoice.customer.external_id, invoice.subscription.plan.name) == ("fintech-ledger", "Reserved")
    assert (invoice.total, invoice.amount_due, invoice.status) == (Decimal("7200.00"), Decimal("0.00"), "paid")
    assert line.description == "Reserved capacity: 12000 USD"
    purchase = CreditPurchase.objects.get()
    lot = purchase.lot
    assert (lot.kind, lot.original_amount, lot.price_paid, lot.purchase_invoice_ref) == (
        "reserved",
        Decimal(12000),
        Decimal(7200),
        invoice.pk,
    )
    assert lot.metric_ids == [BillableMetric.objects.get(name="Query compute", merchant=invoice.merchant).pk]
    assert f"bought query compute on {invoice.number} ($7,200.00, paid)" in output
    run()
    assert CreditPurchase.objects.count() == 1


def test_the_enterprise_negotiated_rates_are_set_through_the_price_intervals_api_once(demo_catalog):
    from catalog.models import Price
    from invoicing.models import SubscriptionIntervalChange

    output = run()
    assert "Demo negotiated rates (price intervals API): Acme AI · Enterprise" in output
    rates = {
        p.plan_line_key: (p.unit_price, p.overrides.unit_price)
        for p in Price.objects.filter(customer__external_id="acme-ai").select_related("overrides")
    }
    assert rates == {
        "input_tokens": (Decimal("0.0000015"), Decimal("0.000002")),
        "output_tokens": (Decimal("0.0000045"), Decimal("0.000006")),
    }
    change = SubscriptionIntervalChange.objects.get()
    assert (change.change_reason, change.subscription.customer.external_id) == ("commercial", "acme-ai")
    assert "Demo negotiated rates" not in run()
    assert SubscriptionIntervalChange.objects.count() == 1

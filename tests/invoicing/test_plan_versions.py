"""Plan versions: minting (the complete price set, keys decide), the default, and which version rates a period.

The LLM Pro plan: a $49.00 platform fee in advance and output tokens at $0.002 per 1K (0.000002 a token).
Version 2 raises output tokens to $0.003 per 1K. A floating subscription pays v1 for its current period and
v2 from the next; a pinned one stays on v1; a migration moves it at its period's end (or, immediate, for the
whole current period) and never re-rates a closed one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from catalog.models import PaymentTerm, Price, Subscription
from catalog.selectors import subscription_version_at
from catalog.services import CatalogConflict, VersionLine, plan_version_make_default, plan_version_mint, price_update
from invoicing.models import Invoice, InvoiceKind, LineKind
from invoicing.services import billing_run_execute, subscription_start
from invoicing.services.lifecycle import subscription_update
from invoicing.services.plan_versions import (
    VersionMigrationConflict,
    VersionNotFound,
    subscription_version_migrate,
)
from tests.factories import MeteredPriceFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_15 = datetime(2026, 1, 15, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
FEB_10 = datetime(2026, 2, 10, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)
APR_1 = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.fixture
def plan(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="LLM Pro")
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee", plan_line_key="platform")
    metered_price(plan, "0.000002", name="Output tokens", plan_line_key="output", rate_per=1000)
    plan_version_mint(
        plan=plan,
        lines=[VersionLine(p.pk, p.plan_line_key) for p in plan.prices.order_by("plan_line_key")],
        now=JAN_1 - timedelta(days=30),
    )
    plan.refresh_from_db()
    return plan


def output_v2(plan) -> Price:
    """A new price for the output-tokens line: $0.003 per 1K."""
    metric = plan.prices.get(plan_line_key="output").billable_metric
    return MeteredPriceFactory(
        plan=None,
        merchant=plan.merchant,
        billable_metric=metric,
        invoice_display_name="Output tokens",
        unit_price=Decimal("0.000003"),
        rate_per=1000,
    )


def mint_v2(plan, now=JAN_15):
    platform = plan.prices.get(plan_line_key="platform")
    return plan_version_mint(
        plan=plan,
        lines=[VersionLine(platform.pk, "platform"), VersionLine(output_v2(plan).pk, "output")],
        based_on_version_id=plan.default_version_id,
        now=now,
    )


def usage_lines(subscription, period_start):
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=period_start)
    return [(line.description.split(":")[0], line.amount) for line in invoice.lines.filter(kind=LineKind.USAGE)]


def start(plan, name, policy="floating"):
    customer = CustomerFactory(merchant=plan.merchant, name=name)
    return subscription_start(
        customer=customer, plan=plan, started_at=JAN_1, now=JAN_1, extra_fields={"version_policy": policy}
    )


def tokens(subscription, when, count):
    metric = Price.objects.get(plan_line_key="output", plan=subscription.plan).billable_metric
    record_usage(subscription.customer, metric, when, count)


# --- minting ---------------------------------------------------------------------------------------


def test_minting_replaces_the_keyed_line_and_becomes_the_default(plan):
    v1 = plan.default_version
    v2 = mint_v2(plan)
    plan.refresh_from_db()
    assert (v1.number, v2.number, v2.based_on_id) == (1, 2, v1.pk)
    assert plan.default_version_id == v2.pk
    assert dict(v1.lines.values_list("key", "price__unit_price")) == {
        "output": Decimal("0.000002000000"),
        "platform": Decimal("49.000000000000"),
    }
    assert dict(v2.lines.values_list("key", "price__unit_price")) == {
        "output": Decimal("0.000003000000"),
        "platform": Decimal("49.000000000000"),
    }
    # the plan's lines are the default's: v1's output price is detached but still billed by v1
    assert set(plan.prices.values_list("plan_line_key", "unit_price")) == {
        ("output", Decimal("0.000003000000")),
        ("platform", Decimal("49.000000000000")),
    }


def test_an_omitted_key_removes_its_line_and_a_new_key_adds_one(plan):
    platform = plan.prices.get(plan_line_key="platform")
    support = fee_price(plan, "10.00", term=PaymentTerm.IN_ARREARS, name="Support")
    support.plan = None
    support.save()
    v2 = plan_version_mint(
        plan=plan, lines=[VersionLine(platform.pk, "platform"), VersionLine(support.pk, "support")], now=JAN_15
    )
    assert sorted(v2.lines.values_list("key", flat=True)) == ["platform", "support"]


def test_a_line_without_a_key_gets_a_generated_one(plan):
    platform = plan.prices.get(plan_line_key="platform")
    v2 = plan_version_mint(plan=plan, lines=[VersionLine(platform.pk)], now=JAN_15)
    [line] = v2.lines.all()
    assert line.key == "platform_fee"  # never matched to the "platform" line by its price


def test_a_stale_based_on_version_is_refused_with_a_conflict(plan):
    v1 = plan.default_version
    mint_v2(plan)
    platform = plan.prices.get(plan_line_key="platform")
    with pytest.raises(CatalogConflict) as refused:
        plan_version_mint(plan=plan, lines=[VersionLine(platform.pk, "platform")], based_on_version_id=v1.pk, now=FEB_1)
    assert refused.value.code == "VERSION_STALE"
    assert plan.versions.count() == 2


def test_an_empty_set_unknown_price_and_bad_key_are_field_errors(plan):
    with pytest.raises(ValidationError) as empty:
        plan_version_mint(plan=plan, lines=[], now=JAN_15)
    assert "prices" in empty.value.message_dict
    with pytest.raises(ValidationError) as bad:
        plan_version_mint(
            plan=plan, lines=[VersionLine("price_nope"), VersionLine("price_nope2", "Bad Key")], now=JAN_15
        )
    assert set(bad.value.message_dict) == {"prices[0].priceId", "prices[1].priceId", "prices[1].key"}


# --- which version rates a period -------------------------------------------------------------------


def test_floating_pays_v1_for_its_current_period_and_v2_from_the_next_pinned_stays_on_v1(plan):
    floating, pinned = start(plan, "Floating"), start(plan, "Pinned", policy="pinned")
    mint_v2(plan, now=JAN_15)
    for subscription in (floating, pinned):
        tokens(subscription, datetime(2026, 1, 20, tzinfo=UTC), 1_000_000)
        tokens(subscription, FEB_10, 2_000_000)

    billing_run_execute(as_of=FEB_1 + timedelta(minutes=5), clock=lambda: FEB_1)
    billing_run_execute(as_of=MAR_1 + timedelta(minutes=5), clock=lambda: MAR_1)

    # January began on v1 for both: 1,000,000 × $0.000002 = $2.00
    assert usage_lines(floating, JAN_1) == [("Output tokens", Decimal("2.0000"))]
    assert usage_lines(pinned, JAN_1) == [("Output tokens", Decimal("2.0000"))]
    # February: the floating one on v2, 2,000,000 × $0.000003 = $6.00; the pinned one on v1, $4.00
    assert usage_lines(floating, FEB_1) == [("Output tokens", Decimal("6.0000"))]
    assert usage_lines(pinned, FEB_1) == [("Output tokens", Decimal("4.0000"))]


def test_a_rollback_reaches_floating_subscriptions_at_their_next_period(plan):
    floating = start(plan, "Floating")
    v1 = plan.default_version
    mint_v2(plan, now=JAN_15)
    plan_version_make_default(version=v1, now=FEB_10)
    floating = Subscription.objects.select_related("plan").get(pk=floating.pk)
    assert subscription_version_at(floating, JAN_1) == v1.pk
    assert subscription_version_at(floating, FEB_1) != v1.pk  # v2, default when February began
    assert subscription_version_at(floating, MAR_1) == v1.pk
    # idempotent on the default: no new change
    plan_version_make_default(version=v1, now=MAR_1)
    assert plan.default_changes.count() == 3  # v1 (minted), v2, back to v1


def test_next_period_migration_moves_a_pinned_subscription_at_its_period_end(plan):
    pinned = start(plan, "Pinned", policy="pinned")
    mint_v2(plan, now=JAN_15)
    tokens(pinned, FEB_10, 2_000_000)
    tokens(pinned, datetime(2026, 3, 10, tzinfo=UTC), 2_000_000)

    migration = subscription_version_migrate(subscription=pinned, target_version_number=2, now=FEB_10)

    assert (migration.from_version_number, migration.to_version_number, migration.changed) == (1, 2, True)
    assert migration.effective_at == MAR_1
    billing_run_execute(as_of=APR_1 + timedelta(minutes=5), clock=lambda: APR_1)
    assert usage_lines(pinned, FEB_1) == [("Output tokens", Decimal("4.0000"))]  # v1
    assert usage_lines(pinned, MAR_1) == [("Output tokens", Decimal("6.0000"))]  # v2
    # the same request again changes nothing
    again = subscription_version_migrate(subscription=pinned, target_version_number=2, now=FEB_10)
    assert again.changed is False and again.effective_at is None


def test_immediate_migration_rates_the_current_period_and_never_a_closed_one(plan):
    floating = start(plan, "Floating")
    mint_v2(plan, now=JAN_15)
    tokens(floating, datetime(2026, 1, 20, tzinfo=UTC), 1_000_000)
    billing_run_execute(as_of=FEB_1 + timedelta(minutes=5), clock=lambda: FEB_1)
    january = usage_lines(floating, JAN_1)
    tokens(floating, FEB_10, 2_000_000)
    v1_number = 1

    migration = subscription_version_migrate(
        subscription=floating, target_version_number=v1_number, timing="immediate", now=FEB_10
    )

    assert (migration.from_version_number, migration.to_version_number) == (2, 1)
    assert migration.entitlements_effective_at == FEB_10 and migration.effective_at == MAR_1
    floating.refresh_from_db()
    assert floating.version_policy == "pinned"
    billing_run_execute(as_of=MAR_1 + timedelta(minutes=5), clock=lambda: MAR_1)
    assert usage_lines(floating, JAN_1) == january == [("Output tokens", Decimal("2.0000"))]
    assert usage_lines(floating, FEB_1) == [("Output tokens", Decimal("4.0000"))]  # all of February on v1


def test_a_second_migration_before_the_boundary_replaces_the_first(plan):
    pinned = start(plan, "Pinned", policy="pinned")
    mint_v2(plan, now=JAN_15)
    subscription_version_migrate(subscription=pinned, target_version_number=2, now=JAN_15)
    subscription_version_migrate(subscription=pinned, target_version_number=1, now=JAN_15)
    pinned = Subscription.objects.select_related("plan").get(pk=pinned.pk)
    assert subscription_version_at(pinned, FEB_1) == plan.versions.get(number=1).pk
    assert pinned.version_changes.count() == 2  # pinned from the start to v1, then v1 from February 1st


def test_migration_refusals(plan):
    pinned = start(plan, "Pinned", policy="pinned")
    with pytest.raises(VersionNotFound):
        subscription_version_migrate(subscription=pinned, target_version_number=7, now=JAN_15)
    Subscription.objects.filter(pk=pinned.pk).update(ending_at=FEB_1)
    with pytest.raises(VersionMigrationConflict) as refused:
        subscription_version_migrate(subscription=pinned, target_version_number=1, now=JAN_15)
    assert refused.value.code == "ENDS_BEFORE_BOUNDARY"


def test_floating_again_follows_the_default_from_the_next_period(plan):
    pinned = start(plan, "Pinned", policy="pinned")
    v2 = mint_v2(plan, now=JAN_15)
    subscription_update(subscription=pinned, changes={"version_policy": "floating"}, now=JAN_15)
    pinned = Subscription.objects.select_related("plan").get(pk=pinned.pk)
    assert subscription_version_at(pinned, JAN_1) == plan.versions.get(number=1).pk
    assert subscription_version_at(pinned, FEB_1) == v2.pk


def test_the_running_period_is_answered_from_the_rows_without_reading_the_logs(plan, django_assert_num_queries):
    floating, pinned = start(plan, "Floating"), start(plan, "Pinned", policy="pinned")
    v1 = plan.default_version
    v2 = mint_v2(plan, now=JAN_15)
    subscription_version_migrate(subscription=pinned, target_version_number=2, now=JAN_15)
    floating = Subscription.objects.select_related("plan").get(pk=floating.pk)
    pinned = Subscription.objects.select_related("plan").get(pk=pinned.pk)

    with django_assert_num_queries(0):  # the real-time path asks this for the current period on every request
        assert subscription_version_at(floating, JAN_1) == v1.pk
        assert subscription_version_at(pinned, JAN_1) == v1.pk
        assert subscription_version_at(floating, FEB_1) == v2.pk
        assert subscription_version_at(pinned, FEB_1) == v2.pk


def test_a_price_only_an_older_version_holds_cannot_be_repriced_while_a_subscription_may_bill_it(plan):
    start(plan, "Pinned", policy="pinned")
    old_output = plan.prices.get(plan_line_key="output")
    mint_v2(plan, now=JAN_15)
    old_output.refresh_from_db()
    assert old_output.plan_id is None  # off the default's lines, still v1's

    with pytest.raises(CatalogConflict) as refused:
        price_update(price=old_output, changes={"unit_price": Decimal("0.000009")})

    assert refused.value.code == "PRICE_IN_USE"


def test_an_older_versions_prices_cost_what_the_default_lines_cost(plan, django_assert_num_queries):
    from django.db import connection

    from catalog.selectors import prices_for_subscriptions

    floating = start(plan, "Floating")
    mint_v2(plan, now=JAN_15)
    floating = Subscription.objects.select_related("plan", "customer").get(pk=floating.pk)
    on_default = prices_for_subscriptions([floating], at={floating.pk: FEB_1})

    statements = 1 if connection.vendor == "postgresql" else 3  # prices (with tiers, rates, filters) nested, or not
    with django_assert_num_queries(statements):
        january = prices_for_subscriptions([floating], at={floating.pk: JAN_1})  # v1, no longer the default
    assert {p.invoice_display_name: p.unit_price for p in january[floating.pk]}["Output tokens"] == Decimal("0.000002")
    assert {p.invoice_display_name: p.unit_price for p in on_default[floating.pk]}["Output tokens"] == Decimal(
        "0.000003"
    )


def test_a_plan_change_pins_a_pinned_subscription_to_the_new_plans_default(plan, seller):
    from invoicing.services import subscription_upgrade

    pinned = start(plan, "Pinned", policy="pinned")
    mint_v2(plan, now=JAN_15)
    subscription_version_migrate(subscription=pinned, target_version_number=2, now=JAN_15)
    enterprise = PlanFactory(merchant=seller, product=plan.product, name="LLM Enterprise")
    fee = fee_price(enterprise, "99.00", term=PaymentTerm.IN_ADVANCE, name="Enterprise fee")
    plan_version_mint(plan=enterprise, lines=[VersionLine(fee.pk, "platform")], now=JAN_1)
    enterprise.refresh_from_db()

    subscription_upgrade(subscription=pinned, new_plan=enterprise, now=FEB_10)

    pinned = Subscription.objects.select_related("plan").get(pk=pinned.pk)
    assert (pinned.plan_id, pinned.plan_version_id, pinned.plan_version_from) == (
        enterprise.pk,
        enterprise.default_version_id,
        None,
    )
    assert subscription_version_at(pinned, MAR_1) == enterprise.default_version_id
    assert not pinned.version_changes.exists()

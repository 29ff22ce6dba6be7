"""The data migration: every plan's prices become its version 1 (its default), pinned subscriptions are pinned
to it, floating ones follow the default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("catalog", "0012_customer_credit_before_payment")]
AFTER = [("catalog", "0014_plan_versions_backfill")]


@pytest.mark.django_db(transaction=True)
def test_existing_plans_get_version_one_and_pinned_subscriptions_are_pinned_to_it():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    at = datetime(2026, 1, 1, tzinfo=UTC)
    merchant = old.get_model("catalog", "Merchant").objects.create(id="org_a", name="Neural Labs")
    product = old.get_model("catalog", "Product").objects.create(id="prod_a", merchant=merchant, name="LLM")
    plan = old.get_model("catalog", "Plan").objects.create(
        id="plan_a", merchant=merchant, product=product, name="Pro", currency="USD"
    )
    fee = old.get_model("catalog", "Fee").objects.create(id="fee_a", merchant=merchant, product=product, name="Fee")
    Price = old.get_model("catalog", "Price")
    Price.objects.create(id="price_a", merchant=merchant, plan=plan, fee=fee, invoice_display_name="Platform fee")
    Price.objects.create(
        id="price_b", merchant=merchant, plan=plan, fee=fee, invoice_display_name="Support", plan_line_key="support"
    )
    customer = old.get_model("catalog", "Customer").objects.create(
        id="cus_a", merchant=merchant, name="Acme", email="a@example.com"
    )
    Subscription = old.get_model("catalog", "Subscription")
    for sid, policy in (("sub_f", "floating"), ("sub_p", "pinned")):
        Subscription.objects.create(
            id=sid, merchant=merchant, customer=customer, plan=plan, name=sid, started_at=at, version_policy=policy
        )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps

    version = new.get_model("catalog", "PlanVersion").objects.get(plan_id="plan_a")
    assert version.number == 1
    assert new.get_model("catalog", "Plan").objects.get(pk="plan_a").default_version_id == version.pk
    lines = new.get_model("catalog", "PlanVersionPrice").objects.filter(version=version)
    assert sorted(lines.values_list("key", "price_id")) == [("platform_fee", "price_a"), ("support", "price_b")]
    subscriptions = new.get_model("catalog", "Subscription").objects
    assert subscriptions.get(pk="sub_p").plan_version_id == version.pk
    assert subscriptions.get(pk="sub_f").plan_version_id is None  # floating: the default, version 1

    MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())

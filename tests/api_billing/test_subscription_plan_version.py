"""planVersionId and versionNumber on the subscription wire: the plan version that billed the subscription's first
period (the client's "pinned to this subscription at creation"), kept when the plan mints a newer default or the
subscription moves; read for a whole page in a fixed number of statements; parsed by the unmodified client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from paygentic_sdk import Paygentic

from catalog.models import PaymentTerm
from catalog.services import VersionLine, api_key_create, plan_version_mint
from invoicing.services import subscription_start
from invoicing.services.plan_versions import subscription_version_migrate
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2026, 3, 1, tzinfo=UTC)


def _versioned_plan(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    fee = fee_price(plan, "49", term=PaymentTerm.IN_ARREARS, name="Platform fee", plan_line_key="platform")
    v1 = plan_version_mint(plan=plan, lines=[VersionLine(fee.pk, "platform")], now=JAN_1)
    return plan, fee, v1


def _start(plan, name, at):
    customer = CustomerFactory(merchant=plan.merchant, name=name)
    return subscription_start(customer=customer, plan=plan, started_at=at, now=at)


def _listed(api_client):
    response = api_client.get("/v0/subscriptions")
    assert response.status_code == 200
    return {row["name"]: (row.get("planVersionId"), row.get("versionNumber")) for row in response.json()["data"]}


@pytest.mark.django_db
def test_each_subscription_shows_the_version_it_started_on_after_newer_defaults_and_moves(api_client, merchant):
    plan, fee, v1 = _versioned_plan(merchant)
    early = _start(plan, "Early", JAN_1)
    v2 = plan_version_mint(plan=plan, lines=[VersionLine(fee.pk, "platform")], now=FEB_1)
    late = _start(plan, "Late", MAR_1)
    # the early one moves to v2 later: it was still created on v1
    subscription_version_migrate(subscription=early, target_version_number=2, now=FEB_1)
    listed = _listed(api_client)
    assert {name: listed[name] for name in (early.name, late.name)} == {
        early.name: (v1.pk, 1),
        late.name: (v2.pk, 2),
    }
    single = api_client.get(f"/v0/subscriptions/{early.pk}").json()
    assert (single["planVersionId"], single["versionNumber"]) == (v1.pk, 1)


@pytest.mark.django_db
def test_a_plan_without_versions_leaves_both_fields_out(api_client, merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Legacy")
    fee_price(plan, "10", term=PaymentTerm.IN_ARREARS)
    subscription = _start(plan, "Legacy customer", JAN_1)
    body = api_client.get(f"/v0/subscriptions/{subscription.pk}").json()
    assert "planVersionId" not in body and "versionNumber" not in body


@pytest.mark.django_db
def test_the_list_reads_versions_in_the_same_statements_for_one_or_many(api_client, merchant):
    plan, fee, _ = _versioned_plan(merchant)
    _start(plan, "One", JAN_1)
    with CaptureQueriesContext(connection) as one:
        _listed(api_client)
    plan_version_mint(plan=plan, lines=[VersionLine(fee.pk, "platform")], now=FEB_1)
    for index in range(4):
        _start(plan, f"More {index}", MAR_1)
    with CaptureQueriesContext(connection) as five:
        listed = _listed(api_client)
    assert sorted(number for _, number in listed.values()) == [1, 2, 2, 2, 2]
    assert len(five.captured_queries) == len(one.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_the_unmodified_client_reads_the_version(live_server):
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    plan, _, v1 = _versioned_plan(merchant)
    subscription = _start(plan, "Acme AI", JAN_1)
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        got = sdk.subscriptions.get(id=subscription.pk)
    assert (got.plan_version_id, got.version_number) == (v1.pk, 1)

"""Balances burned down across usage periods through /v1/entitlements: the allowance and grants carried over
resets with their rollover bounds, preserved overage, expiry mid-period, and one usage query for the whole walk."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from paygentic_sdk import models as pg
from pydantic import TypeAdapter

from metering.selectors import EVENTS_TABLE

pytestmark = pytest.mark.django_db

DETAIL = TypeAdapter(pg.EntitlementDetail)
JAN = "2025-01-01T00:00:00Z"
MONTHLY = {"interval": "P1M", "anchor": JAN}


def _metered(api_client, customer, feature, **template):
    body = {
        "customerId": customer.pk,
        "featureId": feature.pk,
        "activeFrom": JAN,
        "template": {"type": "metered", **template},
    }
    response = api_client.post("/v1/entitlements", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _grant(api_client, entitlement_id, amount, key, **extra):
    body = {"amount": amount, "idempotencyKey": key, "effectiveAt": JAN, **extra}
    response = api_client.post(f"/v1/entitlements/{entitlement_id}/grants", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _usage(api_client, customer, tokens, when):
    event = {
        "type": "llm.completion",
        "source": "app",
        "subject": customer.pk,
        "data": {"tokens": tokens},
        "timestamp": when,
        "idempotencyKey": f"{when}-{tokens}",
    }
    assert api_client.post("/v0/events", event, format="json").status_code == 202


def _at(api_client, entitlement_id, at):
    response = api_client.get(f"/v1/entitlements/{entitlement_id}", {"at": at})
    assert response.status_code == 200, response.json()
    detail = DETAIL.validate_python(response.json())
    assert isinstance(detail, pg.MeteredEntitlementDetail)
    return response.json()


def _figures(body):
    return body["balance"], body["usageInPeriod"], body["overage"], body["hasAccess"]


def test_grants_carry_what_the_allowance_did_not_cover_into_the_next_period(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod=MONTHLY, issueAfterReset=100)
    _grant(api_client, entitlement_id, 50, "g")
    _usage(api_client, customer, 130, "2025-01-10T00:00:00Z")  # allowance 100, grant 30
    _usage(api_client, customer, 90, "2025-02-05T00:00:00Z")  # a fresh allowance

    january = _at(api_client, entitlement_id, "2025-01-31T00:00:00Z")
    february = _at(api_client, entitlement_id, "2025-02-20T00:00:00Z")

    assert _figures(january) == (20, 130, 0, True)
    assert _figures(february) == (30, 90, 0, True)  # allowance 10 + grant 20
    assert (february["currentPeriodStart"], february["currentPeriodEnd"]) == (
        "2025-02-01T00:00:00Z",
        "2025-03-01T00:00:00Z",
    )


def test_a_grants_max_rollover_bounds_what_it_keeps_at_the_reset(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod=MONTHLY)
    _grant(api_client, entitlement_id, 100, "capped", resetMaxRollover=25)
    _usage(api_client, customer, 40, "2025-01-10T00:00:00Z")
    _usage(api_client, customer, 5, "2025-02-05T00:00:00Z")

    assert _figures(_at(api_client, entitlement_id, "2025-02-20T00:00:00Z")) == (20, 5, 0, True)


def test_the_templates_rollover_carries_part_of_the_unused_allowance(api_client, customer, metered_feature):
    entitlement_id = _metered(
        api_client, customer, metered_feature, usagePeriod=MONTHLY, issueAfterReset=100, resetMaxRollover=30
    )
    _usage(api_client, customer, 40, "2025-01-10T00:00:00Z")

    assert _at(api_client, entitlement_id, "2025-02-20T00:00:00Z")["balance"] == 130


@pytest.mark.parametrize("preserve, february", [(False, (80, 20, 0, True)), (True, (50, 20, 0, True))])
def test_overage_is_carried_into_the_next_period_only_when_preserved(
    api_client, customer, metered_feature, preserve, february
):
    entitlement_id = _metered(
        api_client,
        customer,
        metered_feature,
        usagePeriod=MONTHLY,
        issueAfterReset=100,
        preserveOverageAtReset=preserve,
    )
    _usage(api_client, customer, 130, "2025-01-10T00:00:00Z")
    _usage(api_client, customer, 20, "2025-02-05T00:00:00Z")

    assert _figures(_at(api_client, entitlement_id, "2025-01-31T00:00:00Z")) == (-30, 130, 30, False)
    assert _figures(_at(api_client, entitlement_id, "2025-02-20T00:00:00Z")) == february


def test_usage_after_a_grant_expired_is_overage_not_a_draw_on_it(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod=MONTHLY)
    _grant(api_client, entitlement_id, 100, "expiring", expiresAt="2025-01-15T00:00:00Z")
    _usage(api_client, customer, 30, "2025-01-10T00:00:00Z")
    _usage(api_client, customer, 50, "2025-01-20T00:00:00Z")

    assert _figures(_at(api_client, entitlement_id, "2025-01-14T00:00:00Z")) == (70, 30, 0, True)
    assert _figures(_at(api_client, entitlement_id, "2025-01-25T00:00:00Z")) == (-50, 80, 50, False)


def test_priorities_decide_which_grant_is_left(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)
    _grant(api_client, entitlement_id, 40, "later", priority=5)
    _grant(api_client, entitlement_id, 40, "first", priority=-1)
    _usage(api_client, customer, 50, "2025-01-10T00:00:00Z")

    assert _at(api_client, entitlement_id, "2025-01-20T00:00:00Z")["balance"] == 30


def _event_queries(api_client, entitlement_id, at) -> int:
    with CaptureQueriesContext(connection) as queries:
        _at(api_client, entitlement_id, at)
    return sum(1 for q in queries.captured_queries if EVENTS_TABLE in q["sql"])


def test_the_whole_walk_is_one_usage_query(api_client, customer, metered_feature):
    # given usage in the months the walk covers
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod=MONTHLY, issueAfterReset=100)
    for month, amount in (("01", 30), ("02", 120), ("03", 5), ("04", 60)):
        _usage(api_client, customer, amount, f"2025-{month}-05T00:00:00Z")
    assert _event_queries(api_client, entitlement_id, "2025-04-10T00:00:00Z") == 1  # only April matters

    # when grants make the walk start in January and cut March in two
    _grant(api_client, entitlement_id, 10, "since-january")
    _grant(api_client, entitlement_id, 10, "mid-march", effectiveAt="2025-03-15T00:00:00Z")

    # then every period and phase is still aggregated by one query
    assert _event_queries(api_client, entitlement_id, "2025-04-10T00:00:00Z") == 1
    # January: 30 of the allowance; February: 100 + 10 of the grant, overage 10 dropped at reset; March: 5;
    # April: 60 of the allowance; the mid-March grant is untouched: 10 + 40 allowance left
    state = _at(api_client, entitlement_id, "2025-04-10T00:00:00Z")
    assert (Decimal(str(state["balance"])), Decimal(str(state["usageInPeriod"]))) == (Decimal(50), Decimal(60))


def test_a_walk_of_too_many_periods_is_a_400_naming_at(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod={"interval": "PT1M"})
    _grant(api_client, entitlement_id, 10, "g")

    response = api_client.get(f"/v1/entitlements/{entitlement_id}", {"at": "2025-03-01T00:00:00Z"})

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["at"]


def test_a_min_rollover_above_the_max_is_refused(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod=MONTHLY)

    grant = api_client.post(
        f"/v1/entitlements/{entitlement_id}/grants",
        {"amount": 5, "idempotencyKey": "k", "resetMinRollover": 3, "resetMaxRollover": 2},
        format="json",
    )
    template = api_client.post(
        "/v1/entitlements",
        {
            "customerId": customer.pk,
            "featureId": metered_feature.pk,
            "activeFrom": "2030-01-01T00:00:00Z",
            "template": {"type": "metered", "resetMinRollover": 3, "resetMaxRollover": 2},
        },
        format="json",
    )

    assert (grant.status_code, template.status_code) == (400, 400)
    assert [e["field"] for e in grant.json()["errors"]] == ["resetMinRollover"]
    assert [e["field"] for e in template.json()["errors"]] == ["template.resetMinRollover"]


def test_a_grant_without_priority_gets_the_clients_default_of_zero(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)
    grant_id = _grant(api_client, entitlement_id, 5, "k")

    grant = pg.Grant.model_validate(api_client.get(f"/v1/entitlements/{entitlement_id}/grants/{grant_id}").json())

    assert grant.priority == 0

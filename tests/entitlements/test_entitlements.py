"""/v1/entitlements and grants: status codes, required keys (parsed by the client's models), balance semantics,
idempotency, void, expiry and isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from paygentic_sdk import models as pg
from pydantic import TypeAdapter

from core.durations import Duration
from wallets.entitlements import usage_period_at

pytestmark = pytest.mark.django_db

DETAIL = TypeAdapter(pg.EntitlementDetail)


def _issue(api_client, customer, feature, template, **extra):
    body = {"customerId": customer.pk, "featureId": feature.pk, "template": template, **extra}
    return api_client.post("/v1/entitlements", body, format="json")


def _metered(api_client, customer, feature, **template):
    response = _issue(api_client, customer, feature, {"type": "metered", **template})
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _grant(api_client, entitlement_id, amount, key, **extra):
    body = {"amount": amount, "idempotencyKey": key, **extra}
    return api_client.post(f"/v1/entitlements/{entitlement_id}/grants", body, format="json")


def _usage(api_client, customer, tokens, key):
    event = {
        "type": "llm.completion",
        "source": "app",
        "subject": customer.pk,
        "data": {"tokens": tokens},
        "idempotencyKey": key,
    }
    assert api_client.post("/v0/events", event, format="json").status_code == 202


def _get(api_client, entitlement_id, **query):
    response = api_client.get(f"/v1/entitlements/{entitlement_id}", query)
    assert response.status_code == 200
    return response.json()


def test_boolean_entitlement_has_access(api_client, customer, boolean_feature):
    response = _issue(api_client, customer, boolean_feature, {"type": "boolean"}, metadata={"source": "crm"})

    assert response.status_code == 201
    detail = DETAIL.validate_python(response.json())
    assert isinstance(detail, pg.BooleanEntitlementDetail)
    assert (detail.has_access, detail.status, detail.feature_key, detail.config, detail.metadata) == (
        True,
        "active",
        "sso",
        None,
        {"source": "crm"},
    )
    assert response.json()["object"] == "entitlement"


def test_static_entitlement_carries_its_config(api_client, customer, static_feature):
    response = _issue(api_client, customer, static_feature, {"type": "static", "config": {"seats": 5}})

    detail = DETAIL.validate_python(response.json())
    assert isinstance(detail, pg.StaticEntitlementDetail)
    assert detail.config == {"seats": 5}


def test_the_template_type_must_be_the_features(api_client, customer, boolean_feature):
    response = _issue(api_client, customer, boolean_feature, {"type": "metered"})

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["template.type"]


def test_a_second_entitlement_in_force_is_a_409(api_client, customer, boolean_feature):
    _issue(api_client, customer, boolean_feature, {"type": "boolean"})

    response = _issue(api_client, customer, boolean_feature, {"type": "boolean"})

    assert response.status_code == 409
    assert response.json()["code"] == "ENTITLEMENT_EXISTS"


def test_an_ended_entitlement_is_expired_without_access(api_client, customer, boolean_feature):
    entitlement_id = _issue(
        api_client,
        customer,
        boolean_feature,
        {"type": "boolean"},
        activeFrom="2025-01-01T00:00:00Z",
        activeTo="2025-02-01T00:00:00Z",
    ).json()["id"]

    body = _get(api_client, entitlement_id)
    assert (body["status"], body["hasAccess"]) == ("expired", False)
    assert _get(api_client, entitlement_id, at="2025-01-15T00:00:00Z")["hasAccess"] is True


def test_metered_balance_is_grants_minus_usage_in_period(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, usagePeriod={"interval": "P1M"})
    assert _grant(api_client, entitlement_id, 100, "g-1").status_code == 201
    _usage(api_client, customer, 30, "e-1")

    detail = DETAIL.validate_python(_get(api_client, entitlement_id))

    assert isinstance(detail, pg.MeteredEntitlementDetail)
    assert (detail.balance, detail.usage_in_period, detail.overage, detail.has_access) == (70, 30, 0, True)
    assert detail.current_period_start is not None and detail.current_period_end is not None


def test_a_hard_limit_loses_access_at_zero_and_reports_overage(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)
    _grant(api_client, entitlement_id, 10, "g-1")
    _usage(api_client, customer, 25, "e-1")

    body = _get(api_client, entitlement_id)

    assert (body["balance"], body["overage"], body["hasAccess"]) == (-15, 15, False)


def test_a_soft_limit_keeps_access(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature, isSoftLimit=True)
    _usage(api_client, customer, 5, "e-1")

    body = _get(api_client, entitlement_id)

    assert (body["balance"], body["overage"], body["hasAccess"], body["isSoftLimit"]) == (-5, 5, True, True)


def test_issue_after_reset_is_a_per_period_allowance(api_client, customer, metered_feature):
    entitlement_id = _metered(
        api_client, customer, metered_feature, usagePeriod={"interval": "P1D"}, issueAfterReset=50
    )

    assert _get(api_client, entitlement_id)["balance"] == 50


def test_expired_and_future_grants_do_not_count(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)
    now = timezone.now()
    _grant(
        api_client,
        entitlement_id,
        100,
        "past",
        effectiveAt=(now - timedelta(days=3)).isoformat(),
        expiresAt=(now - timedelta(days=1)).isoformat(),
    )
    _grant(api_client, entitlement_id, 7, "future", effectiveAt=(now + timedelta(days=1)).isoformat())
    _grant(api_client, entitlement_id, 3, "now")

    assert _get(api_client, entitlement_id)["balance"] == 3
    assert _get(api_client, entitlement_id, at=(now - timedelta(days=2)).isoformat())["balance"] == 100


def test_grant_create_is_idempotent_per_entitlement(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)

    first = _grant(api_client, entitlement_id, 100, "key-1", priority=2)
    retry = _grant(api_client, entitlement_id, 100, "key-1", priority=2)
    other_amount = _grant(api_client, entitlement_id, 5, "key-1")

    assert (first.status_code, retry.status_code) == (201, 201)
    grant = pg.Grant.model_validate(first.json())
    assert (grant.amount, grant.idempotency_key, grant.priority, grant.object) == (100, "key-1", 2, "grant")
    assert retry.json() == first.json()
    assert other_amount.status_code == 409
    assert _get(api_client, entitlement_id)["balance"] == 100


@pytest.mark.parametrize(
    "body, field",
    [
        ({"amount": 0, "idempotencyKey": "k"}, "amount"),
        ({"amount": 1}, "idempotencyKey"),
        ({"amount": "1e30", "idempotencyKey": "k"}, "amount"),
        ({"amount": 1, "idempotencyKey": "k", "expiresAt": "2000-01-01T00:00:00Z"}, "expiresAt"),
    ],
)
def test_bad_grants_are_400s_naming_the_field(api_client, customer, metered_feature, body, field):
    entitlement_id = _metered(api_client, customer, metered_feature)

    response = api_client.post(f"/v1/entitlements/{entitlement_id}/grants", body, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_grants_only_on_metered_entitlements(api_client, customer, boolean_feature):
    entitlement_id = _issue(api_client, customer, boolean_feature, {"type": "boolean"}).json()["id"]

    response = _grant(api_client, entitlement_id, 1, "k")

    assert response.status_code == 409
    assert response.json()["code"] == "ENTITLEMENT_NOT_METERED"


def test_void_removes_the_grant_from_the_balance_and_the_default_list(api_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)
    grant_id = _grant(api_client, entitlement_id, 40, "a").json()["id"]
    _grant(api_client, entitlement_id, 2, "b")

    voided = api_client.delete(f"/v1/entitlements/{entitlement_id}/grants/{grant_id}")
    again = api_client.delete(f"/v1/entitlements/{entitlement_id}/grants/{grant_id}")

    assert voided.status_code == 200
    assert pg.Grant.model_validate(voided.json()).voided_at is not None
    assert again.json()["voidedAt"] == voided.json()["voidedAt"]
    assert _get(api_client, entitlement_id)["balance"] == 2
    listed = pg.ListEntitlementGrantsResponse.model_validate(
        api_client.get(f"/v1/entitlements/{entitlement_id}/grants").json()
    )
    assert [g.amount for g in listed.data] == [2]
    with_voided = api_client.get(f"/v1/entitlements/{entitlement_id}/grants?includeVoided=true").json()
    assert with_voided["pagination"] == {"limit": 20, "offset": 0, "total": 2}
    got = api_client.get(f"/v1/entitlements/{entitlement_id}/grants/{grant_id}")
    assert pg.Grant.model_validate(got.json()).id == grant_id


def test_list_by_customer_or_external_id(api_client, customer, metered_feature, boolean_feature, product):
    _metered(api_client, customer, metered_feature)
    _issue(api_client, customer, boolean_feature, {"type": "boolean"})

    page = pg.ListEntitlementsResponse.model_validate(
        api_client.get("/v1/entitlements", {"customerId": customer.pk}).json()
    )
    by_key = api_client.get(
        "/v1/entitlements", {"externalCustomerId": "acme-1", "productId": product.pk, "featureKey": "sso"}
    ).json()

    assert sorted(item.feature_type for item in page.data) == ["boolean", "metered"]
    assert page.pagination.total == 2
    assert [item["featureKey"] for item in by_key["data"]] == ["sso"]
    assert "entitlementId" in by_key["data"][0]


@pytest.mark.parametrize(
    "query, field",
    [({}, "customerId"), ({"customerId": "x", "externalCustomerId": "y"}, "customerId"), ({"featureKey": "a"}, None)],
)
def test_list_query_errors(api_client, customer, query, field):
    if field is None:
        query = {"customerId": customer.pk, **query}
        field = "featureKey"

    response = api_client.get("/v1/entitlements", query)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_another_merchants_objects_are_404(api_client, rival_client, customer, metered_feature):
    entitlement_id = _metered(api_client, customer, metered_feature)
    grant_id = _grant(api_client, entitlement_id, 1, "k").json()["id"]

    assert rival_client.get(f"/v1/entitlements/{entitlement_id}").status_code == 404
    assert rival_client.get(f"/v1/entitlements/{entitlement_id}/grants").status_code == 404
    assert _grant(rival_client, entitlement_id, 1, "k2").status_code == 404
    assert rival_client.get(f"/v1/entitlements/{entitlement_id}/grants/{grant_id}").status_code == 404
    assert rival_client.delete(f"/v1/entitlements/{entitlement_id}/grants/{grant_id}").status_code == 404
    assert rival_client.get("/v1/entitlements", {"customerId": customer.pk}).status_code == 404
    issued = _issue(rival_client, customer, metered_feature, {"type": "metered"})
    assert issued.status_code == 400
    assert {e["field"] for e in issued.json()["errors"]} == {"customerId", "featureId"}


def test_usage_periods_are_anchored_and_half_open():
    anchor = datetime(2025, 1, 31, tzinfo=UTC)
    month = Duration(months=1, exact=timedelta(0))

    assert usage_period_at(anchor=anchor, interval=month, at=datetime(2025, 3, 1, tzinfo=UTC)) == (
        datetime(2025, 2, 28, tzinfo=UTC),
        datetime(2025, 3, 31, tzinfo=UTC),
    )
    assert usage_period_at(anchor=anchor, interval=month, at=anchor) == (anchor, datetime(2025, 2, 28, tzinfo=UTC))
    day = Duration(months=0, exact=timedelta(days=1))
    assert usage_period_at(anchor=anchor, interval=day, at=anchor - timedelta(hours=1)) == (
        anchor - timedelta(days=1),
        anchor,
    )

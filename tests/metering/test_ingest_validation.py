"""Bad input is a 400 naming the field (413 for a too-large body), never a 500 or a silent drop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Aggregation
from metering.models import UsageEvent
from tests.factories import BillableMetricFactory, CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(customer, input_tokens):
    return {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {"input_tokens": 5}}


def _field_errors(response):
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["message"]
    return {e["field"]: e["message"] for e in body["errors"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": None}, "type"),
        ({"type": "llm.unknown"}, "type"),
        ({"type": "bad\ntype"}, "type"),
        ({"source": None}, "source"),
        ({"data": None}, "data"),
        ({"data": [1, 2]}, "data"),
        ({"data": "text"}, "data"),
        ({"data": {"input_tokens": "twelve"}}, "data.input_tokens"),
        ({"data": {"input_tokens": True}}, "data.input_tokens"),
        ({"data": {"input_tokens": {"n": 1}}}, "data.input_tokens"),
        ({"data": {"input_tokens": "1e5000"}}, "data.input_tokens"),
        ({"data": {"blob": "x" * (16 * 1024)}}, "data"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": 1735689600}, "timestamp"),
        ({"idempotencyKey": 12}, "idempotencyKey"),
        ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
        ({"externalId": "has space"}, "externalId"),
        ({"namespace": "org_someoneelse"}, "namespace"),
        ({"subject": "cus_doesnotexist"}, "subject"),
        ({"subject": None}, "subject"),
    ],
)
def test_rejection_names_the_field(api_client, event, change, field):
    body = {**event, **change}
    body = {k: v for k, v in body.items() if v is not None}

    response = api_client.post("/v0/events", body, format="json")

    assert response.status_code == 400
    assert field in _field_errors(response)
    assert UsageEvent.objects.count() == 0


def test_event_too_far_in_the_future_is_rejected(api_client, event):
    future = timezone.now() + timedelta(minutes=6)

    response = api_client.post("/v0/events", {**event, "timestamp": future.isoformat()}, format="json")

    assert response.status_code == 400
    assert "future" in _field_errors(response)["timestamp"]


def test_clock_skew_within_tolerance_is_accepted(api_client, event):
    soon = timezone.now() + timedelta(minutes=4)

    response = api_client.post("/v0/events", {**event, "timestamp": soon.isoformat()}, format="json")

    assert response.status_code == 202


def test_value_is_checked_for_every_metric_of_the_type(api_client, event, product, merchant):
    BillableMetricFactory(
        merchant=merchant,
        product=product,
        aggregation=Aggregation.MAX,
        event_type="llm.completion",
        value_property="$.latency_ms",
    )

    response = api_client.post(
        "/v0/events", {**event, "data": {"input_tokens": 5, "latency_ms": "slow"}}, format="json"
    )

    assert _field_errors(response) == {
        "data.latency_ms": 'data.latency_ms must be a number (or a numeric string such as "12.5").'
    }


def test_subject_of_another_merchant_is_rejected(api_client, event):
    stranger = CustomerFactory()

    response = api_client.post("/v0/events", {**event, "subject": stranger.pk}, format="json")

    assert response.status_code == 400
    assert _field_errors(response) == {"subject": f"No customer {stranger.pk} in your organization."}


def test_malformed_json_is_a_400(api_client, input_tokens):
    response = api_client.post("/v0/events", data=b'{"type": "llm', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"
    assert response.json()["message"].startswith("The body is not valid JSON")


def test_a_list_sent_to_the_single_endpoint_is_a_400(api_client, event):
    response = api_client.post("/v0/events", [event], format="json")

    assert response.status_code == 400
    assert "body" in _field_errors(response)


def test_oversize_body_is_a_413_in_the_error_shape(api_client, event):
    response = api_client.post("/v0/events", {**event, "data": {"blob": "x" * (1024 * 1024)}}, format="json")

    assert response.status_code == 413
    assert response.json() == {
        "message": "The request body is larger than 1 MiB.",
        "error": "payload_too_large",
        "code": "PAYLOAD_TOO_LARGE",
    }


def test_missing_value_is_accepted_and_not_counted(api_client, event):
    response = api_client.post("/v0/events", {**event, "data": {"model": "nle-1"}}, format="json")

    assert response.status_code == 202


def test_an_event_type_that_is_an_object_is_a_400_naming_type(api_client):
    # Found by fuzzing the documented schema: a dict "type" used to be hashed before it was checked.
    single = api_client.post("/v0/events", {"type": {}, "source": "s", "subject": "cus_x", "data": {}}, format="json")
    batch = api_client.post("/v0/events/batch", {"events": [{"type": {}, "source": "s", "data": {}}]}, format="json")

    assert single.status_code == 400
    assert single.json()["errors"][0]["field"] == "type"
    assert batch.status_code == 200
    assert batch.json()["results"][0]["status"] == "rejected"
    assert batch.json()["results"][0]["errors"][0]["field"] == "type"


@pytest.mark.parametrize(
    "field, event_patch",
    [
        ("subject", {"subject": "cus_\x00"}),
        ("externalSubject", {"subject": None, "externalSubject": "acme\x00"}),
        ("source", {"source": "app\x00"}),
        ("idempotencyKey", {"idempotencyKey": "k\x00"}),
        ("data", {"data": {"tokens": 1, "note": "a\x00b"}}),
    ],
)
def test_a_null_character_is_a_400_naming_its_field_not_a_database_error(api_client, field, event_patch):
    # Found by fuzzing on PostgreSQL, which cannot store U+0000 in text or jsonb.
    event = {"type": "llm.completion", "source": "app", "subject": "cus_x", "data": {"tokens": 1}, **event_patch}
    event = {key: value for key, value in event.items() if value is not None}

    batch = api_client.post("/v0/events/batch", {"events": [event]}, format="json")

    assert batch.status_code == 200
    (result,) = batch.json()["results"]
    assert result["status"] == "rejected"
    assert field in {error["field"] for error in result["errors"]}

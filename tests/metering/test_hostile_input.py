"""Hostile event input is a 400 naming the field (per item in a batch, good items kept), never a 500."""

from __future__ import annotations

import orjson
import pytest

from metering.models import UsageEvent
from metering.services import MAX_DATA_DEPTH

pytestmark = pytest.mark.django_db

BOUND = "at most 15 digits before the decimal point and 12 after it"


@pytest.fixture
def event(customer, input_tokens):
    return {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {"input_tokens": 5}}


def _post(api_client, path: str, raw: bytes):
    return api_client.generic("POST", path, raw, content_type="application/json")


def _nested(depth: int) -> orjson.Fragment:
    """``data`` nesting ``depth`` objects, as JSON text (orjson itself cannot write ~255 levels or more)."""
    return orjson.Fragment('{"input_tokens":1,"n":' * (depth - 1) + '{"input_tokens":1}' + "}" * (depth - 1))


@pytest.mark.parametrize(
    "raw_value",
    [
        '"1e400"',
        "1e308",
        '"' + "1" * 40 + '"',
        "1" * 40,  # read as a float by orjson
        "1000000000000000",  # 10^15: one past the bound
        '"-1000000000000000"',
        '"0.0000000000001"',  # 13 decimal places
    ],
)
def test_a_value_beyond_the_bound_is_refused_naming_the_property(api_client, event, raw_value):
    raw = orjson.dumps({**event, "data": {}}).replace(
        b'"data":{}', b'"data":{"input_tokens":' + raw_value.encode() + b"}"
    )

    response = _post(api_client, "/v0/events", raw)

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == [
        {"field": "data.input_tokens", "message": f"data.input_tokens must be a number with {BOUND}."}
    ]
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize("raw_value", ["999999999999999.999999999999", "-999999999999999", "1.500000000000000000"])
def test_the_largest_values_within_the_bound_are_accepted(api_client, event, raw_value):
    response = api_client.post("/v0/events", {**event, "data": {"input_tokens": raw_value}}, format="json")

    assert response.status_code == 202, response.content
    assert UsageEvent.objects.get().data == {"input_tokens": raw_value}


def test_nan_is_not_json(api_client, event):
    raw = orjson.dumps(event).replace(b'"input_tokens":5', b'"input_tokens":NaN')

    response = _post(api_client, "/v0/events", raw)

    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"


def test_a_deeply_nested_item_is_refused_alone_and_the_good_ones_are_kept(api_client, event):
    # given a batch whose middle event's data nests 260 levels (orjson parses it, but cannot serialize it)
    deep = {**event, "idempotencyKey": "deep", "data": _nested(260)}
    limit = {**event, "idempotencyKey": "at-limit", "data": _nested(MAX_DATA_DEPTH)}
    beyond = {**event, "idempotencyKey": "beyond", "data": _nested(MAX_DATA_DEPTH + 1)}
    body = {"events": [{**event, "idempotencyKey": "a"}, deep, limit, beyond, {**event, "idempotencyKey": "b"}]}

    response = _post(api_client, "/v0/events/batch", orjson.dumps(body))

    assert response.status_code == 200, response.content
    assert response.json()["counts"] == {"accepted": 3, "duplicate": 0, "rejected": 2}
    message = f"data is nested more than {MAX_DATA_DEPTH} levels deep."
    rejected = {r["index"]: r["errors"] for r in response.json()["results"] if r["status"] == "rejected"}
    assert rejected == {1: [{"field": "data", "message": message}], 3: [{"field": "data", "message": message}]}
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == {"a", "at-limit", "b"}


def test_a_deeply_nested_single_event_is_a_400(api_client, event):
    response = _post(api_client, "/v0/events", orjson.dumps({**event, "data": _nested(300)}))

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["data"]


def test_an_unknown_top_level_field_is_refused_naming_it(api_client, event):
    response = api_client.post("/v0/events", {**event, "time": "2026-01-01T00:00:00Z", "Data": {}}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "Data", "message": "Unknown field “Data”."},
        {"field": "time", "message": "Unknown field “time”."},
    ]
    assert UsageEvent.objects.count() == 0


def test_an_unknown_field_in_a_batch_refuses_that_item_only(api_client, event):
    body = {"events": [{**event, "idempotencyKey": "a"}, {**event, "idempotencyKey": "b", "quantity": 3}]}

    response = api_client.post("/v0/events/batch", body, format="json")

    assert response.json()["counts"] == {"accepted": 1, "duplicate": 0, "rejected": 1}
    assert response.json()["results"][1]["errors"] == [{"field": "quantity", "message": "Unknown field “quantity”."}]


@pytest.mark.parametrize("timestamp", ["2026-01-01T00:00:00\x00", "2026-01-01T00:00:00Z\x00", "2026-01-01\t00:00:00"])
def test_a_timestamp_with_a_control_character_is_refused(api_client, event, timestamp):
    response = api_client.post("/v0/events", {**event, "timestamp": timestamp}, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["timestamp"]
    assert UsageEvent.objects.count() == 0

"""GET /v0/billableMetrics/{id}/meter and /events in the Paygentic shapes (checked with the SDK models)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from paygentic_sdk.models import MeterEventList, UsageResponse

from tests.factories import CustomerFactory
from tests.metering.factories import UsageEventFactory

pytestmark = pytest.mark.django_db
RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


@pytest.fixture
def usage(customer, merchant):
    other = CustomerFactory(merchant=merchant, name="Globex")
    rows = [
        (customer, datetime(2026, 1, 2, 5, tzinfo=UTC), {"input_tokens": 100, "model": "nle-1"}),
        (customer, datetime(2026, 1, 2, 9, tzinfo=UTC), {"input_tokens": 50, "model": "nle-2"}),
        (customer, datetime(2026, 1, 3, 9, tzinfo=UTC), {"input_tokens": "0.5", "model": "nle-1"}),
        (other, datetime(2026, 1, 3, 9, tzinfo=UTC), {"input_tokens": 1000, "model": "nle-1"}),
    ]
    return other, [UsageEventFactory(customer=c, timestamp=t, data=d) for c, t, d in rows]


def test_total_for_a_subject(api_client, input_tokens, customer, usage):
    response = api_client.get(f"/v0/billableMetrics/{input_tokens.pk}/meter", {**RANGE, "subject": customer.pk})

    assert response.status_code == 200
    assert response.json() == {"billableMetricId": input_tokens.pk, "totalValue": 150.5, "object": "meter"}
    assert UsageResponse.model_validate(response.json()).total_value == 150.5


def test_windowed_and_grouped_values_are_index_aligned(api_client, input_tokens, customer, usage):
    response = api_client.get(
        f"/v0/billableMetrics/{input_tokens.pk}/meter",
        {**RANGE, "subject": customer.pk, "windowSize": "DAY", "groupBy": "model"},
    )

    body = response.json()
    assert body["totalValue"] == 150.5
    assert body["windowedValues"] == [
        {"windowStart": "2026-01-02T00:00:00Z", "windowEnd": "2026-01-03T00:00:00Z", "value": 100},
        {"windowStart": "2026-01-02T00:00:00Z", "windowEnd": "2026-01-03T00:00:00Z", "value": 50},
        {"windowStart": "2026-01-03T00:00:00Z", "windowEnd": "2026-01-04T00:00:00Z", "value": 0.5},
    ]
    assert body["groupedValues"] == [
        {"groupBy": {"model": "nle-1"}, "value": 100, "eventCount": 1},
        {"groupBy": {"model": "nle-2"}, "value": 50, "eventCount": 1},
        {"groupBy": {"model": "nle-1"}, "value": 0.5, "eventCount": 1},
    ]
    UsageResponse.model_validate(body)


def test_group_by_subject_with_limit_and_filter(api_client, input_tokens, customer, usage):
    other, _ = usage

    response = api_client.get(
        f"/v0/billableMetrics/{input_tokens.pk}/meter",
        {**RANGE, "groupBy": "subject", "filterGroupBy": '{"model": "nle-1"}', "groupLimit": "1"},
    )

    assert response.json() == {
        "billableMetricId": input_tokens.pk,
        "totalValue": 1100.5,
        "object": "meter",
        "groupCount": 2,
        "groupedValues": [{"groupBy": {"subject": other.pk}, "value": 1000, "eventCount": 1}],
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-01-01T00:00:00Z"}, "to"),
        ({**RANGE, "from": "soon"}, "from"),
        ({**RANGE, "windowSize": "WEEK"}, "windowSize"),
        ({**RANGE, "groupBy": "colour"}, "groupBy"),
        ({**RANGE, "filterGroupBy": "[1]"}, "filterGroupBy"),
        ({**RANGE, "filterGroupBy": '{"colour": "red"}'}, "filterGroupBy"),
        ({**RANGE, "groupLimit": "0"}, "groupLimit"),
        ({**RANGE, "groupOffset": "1"}, "groupOffset"),
    ],
)
def test_bad_meter_query_is_a_400_naming_the_field(api_client, input_tokens, params, field):
    response = api_client.get(f"/v0/billableMetrics/{input_tokens.pk}/meter", params)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field


def test_events_newest_first_with_paging(api_client, input_tokens, customer, usage):
    _, events = usage

    response = api_client.get(
        f"/v0/billableMetrics/{input_tokens.pk}/events", {**RANGE, "subject": customer.pk, "limit": "2"}
    )

    body = response.json()
    assert response.status_code == 200
    assert body["pagination"] == {"limit": 2, "offset": 0, "total": 3}
    assert body["events"][0] == {
        "id": f"evt_{events[2].pk}",
        "object": "meterEvent",
        "type": "llm.completion",
        "source": "https://api.example.com",
        "subject": customer.pk,
        "time": "2026-01-03T09:00:00Z",
        "idempotencyKey": events[2].idempotency_key,
        "data": {"input_tokens": "0.5", "model": "nle-1"},
    }
    assert [e["id"] for e in body["events"]] == [f"evt_{events[2].pk}", f"evt_{events[1].pk}"]
    assert MeterEventList.model_validate(body).billable_metric_id == input_tokens.pk


def test_unlinked_event_lists_with_an_empty_subject(api_client, input_tokens, merchant):
    UsageEventFactory(
        customer=None,
        merchant=merchant,
        external_subject="later-1",
        data={"input_tokens": 1},
        timestamp=datetime(2026, 1, 5, tzinfo=UTC),
    )

    body = api_client.get(
        f"/v0/billableMetrics/{input_tokens.pk}/events", {**RANGE, "externalSubject": "later-1"}
    ).json()

    assert [(e["subject"], e["externalSubject"]) for e in body["events"]] == [("", "later-1")]

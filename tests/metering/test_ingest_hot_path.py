"""The ingestion hot path: cached key look-up and metric routing, and one statement per single event.

The caches are per process and short-lived; these tests pin what must never be stale: a revoked key
is refused (in every process sharing Django's cache), a metric created (or changed) a moment ago is
routed, and a single event costs one query once the caches are warm.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.cache import cache

from catalog.api import auth
from catalog.models import Aggregation, ApiKey, BillableMetric
from catalog.services import api_key_create, api_key_revoke, billable_metric_update
from metering import selectors
from metering.models import UsageEvent
from tests.factories import BillableMetricFactory

pytestmark = pytest.mark.django_db


def _event(customer, key, **overrides):
    return {
        "type": "llm.completion",
        "source": "app",
        "subject": customer.pk,
        "data": {"input_tokens": 7},
        "idempotencyKey": key,
        **overrides,
    }


def test_warm_single_event_is_one_query(api_client, input_tokens, customer, django_assert_num_queries):
    # given: the key and the routing table are cached by a first request
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202

    # when / then: resolve the customer, check it has no real-time subscription (invoicing's event
    # endpoint debits those) and insert, in one statement
    with django_assert_num_queries(1):
        response = api_client.post("/v0/events", _event(customer, "k-2"), format="json")
    assert response.status_code == 202
    assert list(UsageEvent.objects.order_by("id").values_list("idempotency_key", "customer_id")) == [
        ("k-1", customer.pk),
        ("k-2", customer.pk),
    ]


def test_cold_single_event_reads_key_and_routing_once(api_client, input_tokens, customer, django_assert_num_queries):
    auth._key_cache.clear()
    selectors.metric_routes_forget()

    with django_assert_num_queries(3):  # key, routing, insert (with the real-time check)
        response = api_client.post("/v0/events", _event(customer, "k-1"), format="json")

    assert response.status_code == 202


def test_revoked_key_is_refused_although_it_was_cached(api_client, merchant, input_tokens, customer):
    # given: the key is in this process's cache
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202
    api_key = ApiKey.objects.get(merchant=merchant)
    assert api_key.key_digest in auth._key_cache

    # when
    api_key_revoke(api_key=api_key, now=datetime(2026, 1, 2, tzinfo=UTC))

    # then
    single = api_client.post("/v0/events", _event(customer, "k-2"), format="json")
    batch = api_client.post("/v0/events/batch", [_event(customer, "k-3")], format="json")
    assert (single.status_code, batch.status_code) == (401, 401)
    assert single.json() == {"message": "This API key is not valid or has been revoked.", "error": "unauthorized"}
    assert UsageEvent.objects.count() == 1


def test_revoking_changes_the_shared_marker_now_and_again_on_commit(
    merchant, api_key_secret, django_capture_on_commit_callbacks
):
    api_key = ApiKey.objects.get(merchant=merchant)
    before = cache.get(auth.API_KEY_REVOCATIONS_CACHE_KEY)

    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=api_key, now=datetime(2026, 1, 2, tzinfo=UTC))
        at_once = cache.get(auth.API_KEY_REVOCATIONS_CACHE_KEY)
    committed = cache.get(auth.API_KEY_REVOCATIONS_CACHE_KEY)

    assert len({before, at_once, committed}) == 3
    assert at_once is not None


def test_key_revoked_by_another_process_is_refused_at_once(api_client, merchant, input_tokens, customer):
    # given: the key is in this process's cache
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202
    assert ApiKey.objects.get(merchant=merchant).key_digest in auth._key_cache

    # when: another process revokes it: the database row and the shared cache change, this process's
    # memory does not
    ApiKey.objects.filter(merchant=merchant).update(revoked_at=datetime(2026, 1, 2, tzinfo=UTC))
    cache.set(auth.API_KEY_REVOCATIONS_CACHE_KEY, "set-by-another-process", timeout=None)

    # then
    single = api_client.post("/v0/events", _event(customer, "k-2"), format="json")
    batch = api_client.post("/v0/events/batch", [_event(customer, "k-3")], format="json")
    assert (single.status_code, batch.status_code) == (401, 401)
    assert UsageEvent.objects.count() == 1


def test_other_keys_are_read_once_after_a_revocation(
    api_client, merchant, input_tokens, customer, django_assert_num_queries
):
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202
    other, _ = api_key_create(merchant=merchant, name="other")

    api_key_revoke(api_key=other, now=datetime(2026, 1, 2, tzinfo=UTC))

    with django_assert_num_queries(2):  # the key again, then the insert (with the real-time check)
        assert api_client.post("/v0/events", _event(customer, "k-2"), format="json").status_code == 202
    with django_assert_num_queries(1):
        assert api_client.post("/v0/events", _event(customer, "k-3"), format="json").status_code == 202


def test_without_a_working_shared_cache_the_key_is_read_every_time(
    api_client, merchant, input_tokens, customer, monkeypatch
):
    # given: the key is cached, then the shared cache stops answering
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202

    def down(*args, **kwargs):
        raise ConnectionError("cache server unreachable")

    monkeypatch.setattr(auth.cache, "get", down)
    assert api_client.post("/v0/events", _event(customer, "k-2"), format="json").status_code == 202

    # when: the key is revoked while no revocation marker can be read
    ApiKey.objects.filter(merchant=merchant).update(revoked_at=datetime(2026, 1, 2, tzinfo=UTC))

    # then: no cached key is trusted
    assert api_client.post("/v0/events", _event(customer, "k-3"), format="json").status_code == 401


def test_cached_key_expires_after_its_ttl(api_client, merchant, input_tokens, customer, monkeypatch):
    # given: a cached key revoked behind the cache's back (another process, a raw UPDATE)
    clock = [1000.0]
    monkeypatch.setattr(auth._key_cache, "clock", lambda: clock[0])
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202
    ApiKey.objects.filter(merchant=merchant).update(revoked_at=datetime(2026, 1, 2, tzinfo=UTC))

    # when / then: trusted until the TTL runs out, refused from then on
    assert api_client.post("/v0/events", _event(customer, "k-2"), format="json").status_code == 202
    clock[0] += auth.API_KEY_CACHE_SECONDS + 0.001
    assert api_client.post("/v0/events", _event(customer, "k-3"), format="json").status_code == 401


def test_other_endpoints_never_use_the_key_cache(api_client, merchant, input_tokens, customer):
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202
    ApiKey.objects.filter(merchant=merchant).update(revoked_at=datetime(2026, 1, 2, tzinfo=UTC))

    response = api_client.get("/v0/customers")

    assert response.status_code == 401


def test_metric_created_after_routing_was_cached_is_accepted_at_once(api_client, product, input_tokens, customer):
    # given: routing cached without the new event type
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202
    assert "gpu.seconds" not in selectors._routes_cache.get(customer.merchant_id)

    # when: a metric for a new event type appears (ORM write, as the admin or a factory does)
    BillableMetric.objects.create(
        merchant=product.merchant,
        product=product,
        name="GPU seconds",
        aggregation=Aggregation.SUM,
        event_type="gpu.seconds",
        value_property="$.seconds",
    )
    selectors._routes_cache.set(customer.merchant_id, {"llm.completion": []})  # even if not forgotten

    # then
    response = api_client.post(
        "/v0/events", _event(customer, "k-2", type="gpu.seconds", data={"seconds": 3}), format="json"
    )
    assert response.status_code == 202
    assert UsageEvent.objects.get(idempotency_key="k-2").event_type == "gpu.seconds"


def test_changing_a_metric_forgets_the_cached_routing(api_client, input_tokens, customer):
    # given: routing cached with valueProperty $.input_tokens (a number is required there)
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202

    # when
    billable_metric_update(metric=input_tokens, changes={"value_property": "$.tokens"})

    # then: the new property is the one checked, without waiting for the TTL
    response = api_client.post(
        "/v0/events", _event(customer, "k-2", data={"input_tokens": 1, "tokens": "many"}), format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "data.tokens", "message": 'data.tokens must be a number (or a numeric string such as "12.5").'}
    ]


def test_second_metric_on_a_known_type_is_routed_once_saved(api_client, product, input_tokens, customer):
    assert api_client.post("/v0/events", _event(customer, "k-1"), format="json").status_code == 202

    BillableMetricFactory(
        merchant=product.merchant,
        product=product,
        aggregation=Aggregation.MAX,
        event_type="llm.completion",
        value_property="$.latency_ms",
    )

    response = api_client.post(
        "/v0/events", _event(customer, "k-2", data={"input_tokens": 1, "latency_ms": "slow"}), format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "data.latency_ms"


def test_single_event_for_an_unknown_customer_or_a_resend_takes_the_full_path(api_client, input_tokens, customer):
    first = api_client.post("/v0/events", _event(customer, "k-1"), format="json")

    resend = api_client.post("/v0/events", _event(customer, "k-1"), format="json")
    stranger = api_client.post("/v0/events", _event(customer, "k-1", subject="cus_nobody"), format="json")

    assert resend.status_code == 202
    assert resend.json()["id"] == first.json()["id"]
    assert resend.json()["duplicate"] is True
    assert stranger.status_code == 400
    assert stranger.json()["errors"] == [
        {"field": "subject", "message": "No customer cus_nobody in your organization."}
    ]
    assert UsageEvent.objects.count() == 1

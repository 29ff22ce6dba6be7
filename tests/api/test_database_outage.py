"""A database that cannot be reached answers 503 with Retry-After (clients retry), never 500.

The faults are injected where the first statement of a request would fail: a selector, the API key
read, the ingestion call, a middleware running before DRF (core/api/errors.py).
"""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client, override_settings

from catalog import selectors
from catalog.api import auth
from invoicing import realtime
from metering.models import UsageEvent
from tests.factories import BillableMetricFactory, CustomerFactory, ProductFactory

pytestmark = pytest.mark.django_db

UNAVAILABLE = {
    "message": "The database is unavailable; nothing was recorded. Retry shortly.",
    "error": "service_unavailable",
}


@pytest.fixture
def customer(merchant):
    product = ProductFactory(merchant=merchant)
    BillableMetricFactory(product=product, merchant=merchant, event_type="llm.completion", value_property="$.n")
    return CustomerFactory(merchant=merchant)


def _refused(*args, **kwargs):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')


def test_a_refused_connection_in_a_view_is_503_with_retry_after(api_client, monkeypatch):
    monkeypatch.setattr(selectors, "product_list", _refused)

    response = api_client.get("/v0/products")

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json() == UNAVAILABLE


def test_a_lost_connection_is_503_too(api_client, monkeypatch):
    def lost(*args, **kwargs):
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(selectors, "product_list", lost)

    response = api_client.get("/v0/products")

    assert (response.status_code, response["Retry-After"], response.json()) == (503, "1", UNAVAILABLE)


def test_the_key_read_failing_is_503_not_401(api_client, customer, monkeypatch):
    monkeypatch.setattr(auth, "api_key_get_active", _refused)

    response = api_client.post(
        "/v0/events",
        {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {}, "idempotencyKey": "k-1"},
        format="json",
    )

    assert (response.status_code, response["Retry-After"], response.json()) == (503, "1", UNAVAILABLE)


def test_ingestion_failing_is_503_and_nothing_is_recorded(api_client, customer, monkeypatch):
    monkeypatch.setattr(realtime, "events_ingest_and_debit", _refused)
    event = {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {"n": 3}}

    single = api_client.post("/v0/events", {**event, "idempotencyKey": "k-1"}, format="json")
    batch = api_client.post("/v0/events/batch", [{**event, "idempotencyKey": "k-2"}], format="json")

    assert (single.status_code, batch.status_code) == (503, 503)
    assert (single["Retry-After"], batch["Retry-After"]) == ("1", "1")
    assert UsageEvent.objects.count() == 0


@override_settings(METERLINE_RETRY_AFTER_SECONDS=5)
def test_retry_after_follows_the_setting(api_client, monkeypatch):
    monkeypatch.setattr(selectors, "product_list", _refused)

    assert api_client.get("/v0/products")["Retry-After"] == "5"


def test_other_errors_stay_500(api_client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "product_list", broken)
    api_client.raise_request_exception = False

    response = api_client.get("/v0/products")

    assert response.status_code == 500
    assert response.json() == {"message": "Internal error; it has been logged.", "error": "internal_error"}
    assert "Retry-After" not in response


class DatabaseDownMiddleware:
    """Fails the way a middleware reading the database (sessions, authentication) fails in an outage."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        _refused()


@override_settings(MIDDLEWARE=["tests.api.test_database_outage.DatabaseDownMiddleware"])
def test_outside_drf_api_paths_get_503_json_and_other_paths_django_500():
    client = Client(raise_request_exception=False)

    api = client.get("/v0/products")
    admin = client.get("/admin/")

    assert (api.status_code, api["Retry-After"], api.json()) == (503, "1", UNAVAILABLE)
    assert (admin.status_code, admin["Content-Type"]) == (500, "text/html; charset=utf-8")

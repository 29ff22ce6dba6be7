"""The API's own request path (core.api.middleware.ApiRouteMiddleware): bearer-key routes skip the admin's
middleware (sessions, CSRF, auth, messages, clickjacking, admin history), the admin keeps all of it, and
what the API had from the stack (request id, security headers, Content-Length, JSON errors) stays."""

from __future__ import annotations

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client

pytestmark = pytest.mark.django_db


def test_an_api_request_skips_the_admin_middleware_and_keeps_its_own_headers(api_client, merchant, monkeypatch):
    calls = []
    original = SessionMiddleware.process_request
    monkeypatch.setattr(
        SessionMiddleware, "process_request", lambda self, request: calls.append(1) or original(self, request)
    )

    response = api_client.get(f"/v0/customers?organizationId={merchant.pk}", HTTP_X_REQUEST_ID="req-api-1")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-api-1"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert int(response["Content-Length"]) == len(response.content)
    assert "X-Frame-Options" not in response  # clickjacking's header: the admin's, not the API's
    assert "Cookie" not in response.get("Vary", "")  # no session touched
    assert not hasattr(response.wsgi_request, "session")
    assert response.wsgi_request.resolver_match.url_name == "customers"
    assert calls == []


def test_the_admin_keeps_the_whole_stack(superuser_client):
    response = superuser_client.get("/admin/")

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert hasattr(response.wsgi_request, "session")
    assert response.wsgi_request.user.is_authenticated


def test_api_paths_outside_the_api_table_go_down_the_full_stack(api_client):
    schema = Client().get("/v0/schema")
    unknown = api_client.get("/v0/no-such-thing", HTTP_X_REQUEST_ID="req-404")

    assert schema.status_code == 200
    assert (unknown.status_code, unknown["X-Request-ID"]) == (404, "req-404")
    assert unknown.json()["error"] == "not_found"


def test_an_api_request_without_a_key_is_a_json_401(anonymous_client):
    response = anonymous_client.post("/v0/events", {}, format="json")

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"] == 'Bearer realm="meterline"'

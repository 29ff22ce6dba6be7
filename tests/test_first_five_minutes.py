"""A newcomer's first clicks land somewhere: the root and "View site" open the billing home, the API docs
answer with a trailing slash too, and the admin says "Meterline" (billing_site/urls.py)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import resolve

pytestmark = pytest.mark.django_db


def test_the_root_redirects_to_the_billing_home():
    response = Client().get("/")

    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_the_root_keeps_no_query_string_and_accepts_head():
    response = Client().head("/?next=x")

    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_view_site_points_to_the_billing_home(superuser_client):
    response = superuser_client.get("/admin/")

    assert str(admin.site.site_url) == "/admin/"
    assert response.context["site_url"] == "/admin/"
    assert '<a href="/admin/">View site</a>' in response.text
    assert 'id="billing-home"' in response.text


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/v0/docs/", "/v0/docs"),
        ("/v0/schema/", "/v0/schema"),
        ("/v0/schema/?format=json", "/v0/schema?format=json"),
    ],
)
def test_docs_and_schema_with_a_trailing_slash_redirect_to_the_real_address(path, location):
    response = Client().get(path)

    assert (response.status_code, response["Location"]) == (301, location)


def test_docs_followed_from_the_trailing_slash_render_swagger_ui():
    response = Client().get("/v0/docs/", follow=True)

    assert response.redirect_chain == [("/v0/docs", 301)]
    assert response.status_code == 200
    assert "swagger-ui" in response.text


def test_the_api_routes_are_unchanged(anonymous_client):
    assert resolve("/v0/events").url_name == "realtime-event-ingest"
    assert resolve("/v0/products").url_name == "products"
    assert resolve("/v0/schema").url_name == "api-schema"
    unauthenticated = anonymous_client.get("/v0/products")
    missing = anonymous_client.get("/v0/no-such-thing/")
    assert (unauthenticated.status_code, missing.status_code) == (401, 404)
    assert missing["Content-Type"] == "application/json"  # still the API's JSON 404, not a redirect


def test_the_admin_is_branded_meterline(superuser_client):
    response = superuser_client.get("/admin/")

    assert '<div id="site-name"><a href="/admin/">Meterline</a></div>' in response.text
    assert "<title>Billing back office | Meterline</title>" in response.text
    assert "<h1>Billing back office</h1>" in response.text
    assert "Django administration" not in response.text


def test_the_login_page_is_branded_meterline():
    response = Client().get("/admin/login/")

    assert "<title>Log in | Meterline</title>" in response.text
    assert "Django administration" not in response.text

"""The webhook portal: pages reached by a signed, expiring link, scoped to one merchant, without a login."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from tests.factories import MerchantFactory
from wallets.models import DeliveryStatus, WebhookEndpoint, WebhookEventType
from wallets.portal import webhook_portal_link
from wallets.webhooks import webhook_delivery_attempt, webhook_event_emit

from .factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def portal(merchant):
    path, _ = webhook_portal_link(merchant=merchant, now=timezone.now())
    return path


@pytest.fixture
def browser():
    return Client(enforce_csrf_checks=True)


def _post(browser: Client, page: str, data: dict):
    """Post a form of ``page`` the way a browser does: with the CSRF token the page handed out."""
    html = browser.get(page).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    target = data.pop("_to", page)
    return browser.post(target, {**data, "csrfmiddlewaretoken": token})


def test_a_merchant_adds_an_endpoint_for_chosen_events(browser, portal, merchant):
    response = _post(
        browser,
        portal,
        {
            "url": "https://hooks.example/meterline",
            "description": "ERP",
            "event_types": ["invoice.paid.v0", "invoice.voided.v0"],
            "enabled": "on",
        },
    )

    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{portal}endpoints/{endpoint.pk}/"
    assert (endpoint.merchant, endpoint.url, endpoint.description, endpoint.enabled) == (
        merchant,
        "https://hooks.example/meterline",
        "ERP",
        True,
    )
    assert endpoint.event_types == ["invoice.paid.v0", "invoice.voided.v0"]
    assert endpoint.secret.startswith("whsec_")


def test_a_post_without_the_csrf_token_is_refused(browser, portal):
    response = browser.post(portal, {"url": "https://hooks.example/x"})

    assert response.status_code == 403
    assert not WebhookEndpoint.objects.exists()


def test_the_secret_is_masked_until_revealed_and_rotation_keeps_the_old_one_a_day(browser, portal, merchant):
    endpoint = WebhookEndpointFactory(merchant=merchant)
    page = f"{portal}endpoints/{endpoint.pk}/"

    masked = browser.get(page).content.decode()
    revealed = browser.get(page + "?reveal=1").content.decode()
    rotated = _post(browser, page, {"action": "rotate", "_to": page})

    old_secret = endpoint.secret
    endpoint.refresh_from_db()
    assert old_secret not in masked and old_secret[:10] in masked
    assert old_secret in revealed
    assert rotated.status_code == 302 and rotated["Location"].endswith("?reveal=1")
    assert (endpoint.previous_secret, endpoint.secret != old_secret) == (old_secret, True)
    assert endpoint.secret in browser.get(rotated["Location"]).content.decode()


def test_editing_and_deleting_an_endpoint(browser, portal, merchant):
    endpoint = WebhookEndpointFactory(merchant=merchant, url="https://old.example/h")
    page = f"{portal}endpoints/{endpoint.pk}/"

    saved = _post(
        browser,
        page,
        {"action": "save", "_to": page, "url": "https://new.example/h", "event_types": ["balance.low.v0"]},
    )
    endpoint.refresh_from_db()
    assert saved.status_code == 302
    assert (endpoint.url, endpoint.event_types, endpoint.enabled) == (
        "https://new.example/h",
        ["balance.low.v0"],
        False,
    )

    deleted = _post(browser, page, {"action": "delete", "_to": page})
    assert deleted.status_code == 302 and deleted["Location"] == portal
    assert not WebhookEndpoint.objects.exists()


def test_the_page_shows_the_attempts_and_replays_a_delivery(browser, portal, merchant):
    # given a delivery that failed once (nothing listens on the discard port)
    endpoint = WebhookEndpointFactory(merchant=merchant, url="http://127.0.0.1:9/closed")
    [delivery] = webhook_event_emit(
        merchant_id=merchant.pk, event_type=WebhookEventType.INVOICE_PAID, data={}, now=timezone.now()
    )
    webhook_delivery_attempt(delivery_id=delivery.pk, now=timezone.now())
    page = f"{portal}endpoints/{endpoint.pk}/"
    html = browser.get(page).content.decode()
    assert delivery.event_id in html and "invoice.paid.v0" in html

    # when the merchant replays it
    response = _post(browser, page, {"action": "replay", "_to": f"{portal}deliveries/{delivery.pk}/replay"})

    # then a second attempt is made and logged as a replay
    delivery.refresh_from_db()
    assert response.status_code == 302 and response["Location"] == page
    assert (delivery.attempts, delivery.status) == (2, DeliveryStatus.PENDING)
    assert [a.manual for a in delivery.attempt_log.order_by("id")] == [False, True]
    assert "(replay)" in browser.get(page).content.decode()


def test_another_merchants_endpoint_and_delivery_are_not_found(browser, portal):
    other = WebhookEndpointFactory(merchant=MerchantFactory())
    [delivery] = webhook_event_emit(
        merchant_id=other.merchant_id, event_type=WebhookEventType.INVOICE_PAID, data={}, now=timezone.now()
    )

    assert browser.get(f"{portal}endpoints/{other.pk}/").status_code == 404
    assert (
        _post(browser, portal, {"action": "replay", "_to": f"{portal}deliveries/{delivery.pk}/replay"}).status_code
        == 404
    )


def test_a_forged_link_is_404_and_an_expired_one_403(browser, merchant):
    path, _ = webhook_portal_link(merchant=merchant, now=timezone.now() - timedelta(hours=1, seconds=1))
    forged = signing.dumps({"m": merchant.pk, "e": 4_000_000_000}, salt="another-salt")

    expired = browser.get(path)

    assert expired.status_code == 403 and "expired" in expired.content.decode()
    assert browser.get(f"/webhooks/portal/{forged}/").status_code == 404
    assert browser.get(path[:-5] + "xxxx/").status_code == 404


def test_portal_pages_do_not_leak_the_link(browser, portal):
    response = browser.get(portal)

    assert (response["Referrer-Policy"], response["Cache-Control"]) == ("no-referrer", "no-store")

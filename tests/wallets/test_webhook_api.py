"""The client's webhook operations (GET/POST/PATCH/DELETE /v0/webhooks, GET /v0/webhooks/portal): the on/off
switch of a merchant's webhooks and the link to its portal, through DRF's client and the real paygentic-sdk."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from tests.factories import MerchantFactory
from wallets.models import WebhookEventType, WebhookSettings
from wallets.webhooks import webhook_event_emit

from .factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


def test_webhooks_are_404_until_enabled_then_enabled_once(api_client, merchant):
    # given nothing
    assert api_client.get("/v0/webhooks").status_code == 404
    assert api_client.patch("/v0/webhooks", {"enabled": True}, format="json").status_code == 404
    assert api_client.delete("/v0/webhooks").status_code == 404
    assert api_client.get("/v0/webhooks/portal").status_code == 404

    # when
    created = api_client.post("/v0/webhooks")
    again = api_client.post("/v0/webhooks")

    # then
    settings = WebhookSettings.objects.get()
    assert created.status_code == 201
    assert created.json() == {
        "object": "webhooks",
        "applicationId": settings.pk,
        "createdAt": created.json()["createdAt"],
        "enabled": True,
        "merchantId": merchant.pk,
        "updatedAt": created.json()["updatedAt"],
    }
    assert settings.pk.startswith("app_")
    assert (again.status_code, again.json()["code"]) == (400, "DUPLICATE_RESOURCE")
    assert api_client.get("/v0/webhooks").json() == created.json()


def test_pausing_stops_new_events_and_resuming_starts_them_again(api_client, merchant, now):
    # given
    api_client.post("/v0/webhooks")
    WebhookEndpointFactory(merchant=merchant)

    # when paused (DELETE), then resumed (PATCH)
    assert api_client.delete("/v0/webhooks").status_code == 204
    paused = webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now)
    body = api_client.get("/v0/webhooks").json()
    resumed = api_client.patch("/v0/webhooks", {"enabled": True}, format="json")
    after = webhook_event_emit(merchant_id=merchant.pk, event_type=WebhookEventType.BALANCE_LOW, data={}, now=now)

    # then
    assert (paused, body["enabled"]) == ([], False)
    assert (resumed.status_code, resumed.json()["enabled"]) == (200, True)
    assert len(after) == 1


def test_the_switch_refuses_a_missing_flag_and_another_merchant(api_client, merchant):
    api_client.post("/v0/webhooks")
    other = MerchantFactory()

    missing = api_client.patch("/v0/webhooks", {}, format="json")
    foreign = api_client.get(f"/v0/webhooks?merchantId={other.pk}")

    assert (missing.status_code, missing.json()["errors"][0]["field"]) == (400, "enabled")
    assert (foreign.status_code, foreign.json()["code"]) == (403, "FORBIDDEN_MERCHANT")
    assert api_client.get(f"/v0/webhooks?merchantId={merchant.pk}").status_code == 200


def test_the_portal_link_opens_the_merchants_portal_for_an_hour(api_client, merchant, client):
    api_client.post("/v0/webhooks")

    response = api_client.get("/v0/webhooks/portal")

    body = response.json()
    assert set(body) == {"object", "url", "expiresAt"} and body["object"] == "webhookPortal"
    assert body["url"].startswith("http://testserver/webhooks/portal/")
    page = client.get(body["url"].removeprefix("http://testserver"))
    assert page.status_code == 200
    assert merchant.name in page.content.decode()


def test_an_unauthenticated_call_is_401(anonymous_client):
    assert anonymous_client.get("/v0/webhooks").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_webhook_operations_work_through_the_paygentic_client(live_server):
    # given
    merchant = MerchantFactory()
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when
        with pytest.raises(errors.Error) as never:
            sdk.webhooks.get()
        enabled = sdk.webhooks.enable(request={"merchant_id": merchant.pk})
        with pytest.raises(errors.BadRequest) as twice:
            sdk.webhooks.enable()
        paused = sdk.webhooks.update(enabled=False, merchant_id=merchant.pk)
        sdk.webhooks.disable()
        fetched = sdk.webhooks.get(request={"merchant_id": merchant.pk})
        resumed = sdk.webhooks.update(enabled=True)
        portal = sdk.webhooks.get_portal()
        portal_answered = datetime.now(UTC)

    # then
    assert never.value.status_code == 404
    assert (enabled.object, enabled.merchant_id, enabled.enabled) == ("webhooks", merchant.pk, True)
    assert enabled.application_id.startswith("app_")
    assert twice.value.data.code == "DUPLICATE_RESOURCE"
    assert (paused.enabled, fetched.enabled, resumed.enabled) == (False, False, True)
    assert fetched.application_id == enabled.application_id
    assert portal.object == "webhookPortal"
    assert portal.url.startswith(live_server.url + "/webhooks/portal/")
    # an hour from the portal request, which falls between the last update and the answer (whole seconds)
    assert 3599 <= (portal.expires_at - resumed.updated_at).total_seconds()
    assert (portal.expires_at - portal_answered).total_seconds() <= 3600

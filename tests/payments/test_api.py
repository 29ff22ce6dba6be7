"""The client's merchantIntegrations and customer paymentMethods operations, through DRF's client and through
the unmodified paygentic-sdk 0.6.3 against a live server, with Stripe played by the local server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from payments.models import MerchantIntegration, PaymentMethod
from payments.services import integration_upsert, payment_method_save
from tests.factories import CustomerFactory, MerchantFactory

from .conftest import SECRET_KEY

pytestmark = pytest.mark.django_db

CONNECT = {
    "provider": "stripe",
    "externalId": "acct_1Meterline",
    "config": {"secretKey": SECRET_KEY, "webhookSecret": "whsec_abcdefgh1234", "publishableKey": "pk_test_abc"},
    "metadata": {"connectedBy": "ops"},
}


def test_connecting_stripe_answers_the_clients_shape_without_the_secrets(api_client, merchant):
    response = api_client.put("/v0/merchantIntegrations", {"merchantId": merchant.pk, **CONNECT}, format="json")

    body = response.json()
    integration = MerchantIntegration.objects.get()
    assert response.status_code == 200
    assert body == {
        "object": "merchantIntegration",
        "id": integration.pk,
        "merchantId": merchant.pk,
        "provider": "stripe",
        "capabilities": {"resolvesItemCodes": False, "sendsItemCodes": False},
        "externalId": "acct_1Meterline",
        "status": "active",
        "config": {
            "secretKeyHint": "sk_test_…6789",
            "webhookSecretHint": "whsec_…1234",
            "publishableKey": "pk_test_abc",
            "livemode": False,
        },
        "metadata": {"connectedBy": "ops"},
        "connectedAt": body["connectedAt"],
        "disconnectedAt": None,
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }
    assert SECRET_KEY not in response.content.decode() and "abcdefgh1234" not in response.content.decode()
    assert api_client.get(f"/v0/merchantIntegrations/{integration.pk}").json() == body
    assert SECRET_KEY not in api_client.get("/v0/merchantIntegrations").content.decode()


def test_upserting_again_keeps_one_row_and_the_stored_secret(api_client, merchant):
    first = api_client.put("/v0/merchantIntegrations", {"merchantId": merchant.pk, **CONNECT}, format="json").json()

    again = api_client.put(
        "/v0/merchantIntegrations", {"merchantId": merchant.pk, "provider": "stripe", "metadata": {}}, format="json"
    ).json()

    assert again["id"] == first["id"] and again["config"]["secretKeyHint"] == "sk_test_…6789"
    assert again["metadata"] == {} and MerchantIntegration.objects.count() == 1


def test_field_level_errors_name_the_wire_fields(api_client, merchant):
    def put(body):
        response = api_client.put("/v0/merchantIntegrations", {"merchantId": merchant.pk, **body}, format="json")
        return response.status_code, sorted(error["field"] for error in response.json().get("errors", []))

    assert put({"provider": "stripe"}) == (400, ["config.secretKey"])
    assert put({"provider": "stripe", "config": {"secretKey": "pk_test_123456789012"}}) == (400, ["config.secretKey"])
    assert put({"provider": "stripe", "config": {"secretKey": SECRET_KEY, "webhookSecret": "nope"}}) == (
        400,
        ["config.webhookSecret"],
    )
    assert put({"provider": "salesforce", "config": {"secretKey": SECRET_KEY}}) == (400, ["provider"])
    assert put({"provider": "stripe", "config": {"secretKey": SECRET_KEY, "password": "x"}}) == (
        400,
        ["config.password"],
    )
    assert put({"provider": "stripe", "status": "error", "config": {"secretKey": SECRET_KEY}}) == (400, ["status"])
    assert not MerchantIntegration.objects.exists()


def test_another_merchants_integration_is_403_by_id_in_the_body_and_404_by_path(api_client, merchant):
    other = MerchantFactory()
    theirs = integration_upsert(merchant=other, provider="stripe", now=datetime.now(UTC), secret_key=SECRET_KEY)

    forbidden = api_client.put("/v0/merchantIntegrations", {"merchantId": other.pk, **CONNECT}, format="json")

    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "FORBIDDEN_MERCHANT")
    assert api_client.get(f"/v0/merchantIntegrations/{theirs.pk}").status_code == 404
    assert api_client.patch(f"/v0/merchantIntegrations/{theirs.pk}/disconnect").status_code == 404
    assert api_client.get("/v0/merchantIntegrations").json()["data"] == []
    assert api_client.get(f"/v0/merchantIntegrations?merchantId={other.pk}").status_code == 403


def test_disconnect_erases_the_secrets(api_client, merchant):
    created = api_client.put("/v0/merchantIntegrations", {"merchantId": merchant.pk, **CONNECT}, format="json").json()

    response = api_client.patch(f"/v0/merchantIntegrations/{created['id']}/disconnect")

    body = response.json()
    assert (response.status_code, body["status"], body["config"]["secretKeyHint"]) == (200, "disconnected", None)
    assert body["disconnectedAt"] is not None
    assert MerchantIntegration.objects.get().secret_key_encrypted == ""


def test_payment_methods_are_an_empty_list_until_stripe_is_connected_and_setup_is_a_conflict(api_client, merchant):
    customer = CustomerFactory(merchant=merchant)

    listed = api_client.get(f"/v0/customers/{customer.pk}/paymentMethods")
    setup = api_client.post(f"/v0/customers/{customer.pk}/paymentMethods", {}, format="json")

    assert (listed.status_code, listed.json()) == (200, {"object": "list", "data": []})
    assert (setup.status_code, setup.json()["code"]) == (409, "PAYMENT_PROVIDER_NOT_CONNECTED")


def test_payment_methods_list_the_saved_cards_in_the_clients_shape(api_client, stripe_connected, now):
    customer = CustomerFactory(merchant=stripe_connected.merchant)
    visa = payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)

    body = api_client.get(f"/v0/customers/{customer.pk}/paymentMethods").json()

    assert body == {
        "object": "list",
        "data": [
            {
                "object": "paymentMethod",
                "id": visa.pk,
                "createdAt": body["data"][0]["createdAt"],
                "type": "card",
                "brand": "visa",
                "last4": "4242",
                "expMonth": 8,
                "expYear": 2030,
                "isDefault": True,
            }
        ],
    }


def test_setting_up_a_payment_method_answers_a_hosted_session(api_client, stripe_connected, stripe_server):
    customer = CustomerFactory(merchant=stripe_connected.merchant)

    response = api_client.post(
        f"/v0/customers/{customer.pk}/paymentMethods",
        {"successRedirectUrl": "https://app.example/done", "metadata": {"from": "signup"}},
        format="json",
    )
    past = api_client.post(
        f"/v0/customers/{customer.pk}/paymentMethods", {"expiresAt": "2020-01-01T00:00:00Z"}, format="json"
    )

    body = response.json()
    assert response.status_code == 201
    assert (body["object"], body["mode"], body["status"], body["completedAt"]) == (
        "paymentSession",
        "setup",
        "pending",
        None,
    )
    assert body["id"].startswith("ps_") and body["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert (body["successRedirectUrl"], body["failureRedirectUrl"], body["metadata"]) == (
        "https://app.example/done",
        None,
        {"from": "signup"},
    )
    assert (past.status_code, past.json()["errors"][0]["field"]) == (400, "expiresAt")
    assert len(stripe_server.calls("POST", "/v1/checkout/sessions")) == 1


def test_a_provider_outage_is_a_502_on_setup_and_the_last_known_list_on_read(
    api_client, stripe_connected, stripe_server, now, settings
):
    customer = CustomerFactory(merchant=stripe_connected.merchant)
    payment_method_save(customer=customer, payment_method="pm_card_visa", now=now)
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there

    listed = api_client.get(f"/v0/customers/{customer.pk}/paymentMethods")
    setup = api_client.post(f"/v0/customers/{customer.pk}/paymentMethods", {}, format="json")

    assert (listed.status_code, len(listed.json()["data"])) == (200, 1)
    assert (setup.status_code, setup.json()["code"]) == (502, "PAYMENT_PROVIDER_ERROR")
    assert setup.json()["details"] == {"providerCode": "api_connection_error", "retryable": True}


def test_another_merchants_customer_is_404(api_client, stripe_connected):
    stranger = CustomerFactory(merchant=MerchantFactory())

    assert api_client.get(f"/v0/customers/{stranger.pk}/paymentMethods").status_code == 404
    assert api_client.post(f"/v0/customers/{stranger.pk}/paymentMethods", {}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_operations_work_through_the_paygentic_client(live_server, stripe_server):
    # given
    merchant = MerchantFactory()
    customer = CustomerFactory(merchant=merchant, currency="EUR")
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when
        connected = sdk.merchant_integrations.upsert_merchant_integration(
            merchant_id=merchant.pk,
            provider="stripe",
            external_id="acct_1Meterline",
            config={"secretKey": SECRET_KEY, "webhookSecret": "whsec_abcdefgh1234"},
            metadata={"team": "finance"},
        )
        listed = sdk.merchant_integrations.list_merchant_integrations(request={"merchant_id": merchant.pk})
        fetched = sdk.merchant_integrations.get_merchant_integration(id=connected.id)
        empty = sdk.customers.list_customer_payment_methods(id=customer.pk)
        session = sdk.customers.create_customer_payment_method(
            id=customer.pk,
            success_redirect_url="https://app.example/done",
            expires_at=datetime.now(UTC) + timedelta(hours=2),
            metadata={"from": "sdk"},
        )
        # the customer saves a card on Stripe's hosted page
        stripe_customer = stripe_server.calls("POST", "/v1/checkout/sessions")[0].params["customer"]
        stripe_server.customer_completes_setup(customer=stripe_customer, card="pm_card_mastercard")
        methods = sdk.customers.list_customer_payment_methods(id=customer.pk)
        with pytest.raises(errors.BadRequest) as bad_key:
            sdk.merchant_integrations.upsert_merchant_integration(
                merchant_id=merchant.pk, provider="stripe", config={"secretKey": "nope"}
            )
        disconnected = sdk.merchant_integrations.disconnect_merchant_integration(id=connected.id)
        with pytest.raises(errors.PaygenticDefaultError) as refused:
            sdk.customers.create_customer_payment_method(id=customer.pk)

    # then
    assert (connected.object, connected.provider, connected.status, connected.merchant_id) == (
        "merchantIntegration",
        "stripe",
        "active",
        merchant.pk,
    )
    assert connected.config == {
        "secretKeyHint": "sk_test_…6789",
        "webhookSecretHint": "whsec_…1234",
        "publishableKey": None,
        "livemode": False,
    }
    assert connected.external_id == "acct_1Meterline" and connected.disconnected_at is None
    assert [row.id for row in listed.data] == [connected.id] and listed.pagination.total == 1
    assert fetched.id == connected.id and fetched.metadata == {"team": "finance"}
    assert (empty.object, empty.data) == ("list", [])
    assert (session.object, session.mode, session.status) == ("paymentSession", "setup", "pending")
    assert session.url.startswith("https://checkout.stripe.com/")
    assert session.success_redirect_url == "https://app.example/done"
    assert [(m.object, m.type, m.brand, m.last4) for m in methods.data] == [
        ("paymentMethod", "card", "mastercard", "4444")
    ]
    assert methods.data[0].id == PaymentMethod.objects.get().pk
    assert bad_key.value.data.errors[0].field == "config.secretKey"
    assert (disconnected.status, disconnected.config["secretKeyHint"]) == ("disconnected", None)
    assert disconnected.disconnected_at is not None
    assert (refused.value.status_code, "PAYMENT_PROVIDER_NOT_CONNECTED" in refused.value.body) == (409, True)


def test_the_schema_documents_the_operations_under_the_clients_ids_with_their_errors(client):
    schema = client.get("/v0/schema?format=json").json()

    operations = {
        operation["operationId"]: (path, method, set(operation["responses"]))
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if "Integration" in operation.get("operationId", "") or "PaymentMethod" in operation.get("operationId", "")
    }

    assert {name: (path, method) for name, (path, method, _) in operations.items()} == {
        "listMerchantIntegrations": ("/v0/merchantIntegrations", "get"),
        "upsertMerchantIntegration": ("/v0/merchantIntegrations", "put"),
        "getMerchantIntegration": ("/v0/merchantIntegrations/{id}", "get"),
        "disconnectMerchantIntegration": ("/v0/merchantIntegrations/{id}/disconnect", "patch"),
        "listCustomerPaymentMethods": ("/v0/customers/{id}/paymentMethods", "get"),
        "createCustomerPaymentMethod": ("/v0/customers/{id}/paymentMethods", "post"),
    }
    assert {"201", "400", "401", "403", "404", "409", "502"} <= operations["createCustomerPaymentMethod"][2]
    assert {"200", "400", "401", "403", "404"} <= operations["upsertMerchantIntegration"][2]
    config = schema["components"]["schemas"]["MerchantIntegrationConfigOutput"]["properties"]
    assert set(config) == {"secretKeyHint", "webhookSecretHint", "publishableKey", "livemode"}

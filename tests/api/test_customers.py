"""/v0/customers: create 201 / 200 when it exists, list with filters, get, PATCH, DELETE 204 / 409."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from catalog.models import Customer
from catalog.services import customer_create
from tests.factories import CustomerFactory, MerchantFactory, SubscriptionFactory

ACME = {
    "name": "Acme Inc",
    "email": "billing@acme.io",
    "address": {"line1": "1 Market St", "city": "San Francisco", "state": "CA", "country": "us", "zipCode": "94105"},
}


def test_create_answers_201_then_200_for_the_same_external_id(api, merchant):
    # when
    first = api.post(
        "/v0/customers",
        {"merchantId": merchant.id, "consumer": ACME, "externalId": "acme-001", "taxRates": {"default": 8.5}},
    )
    again = api.post(
        "/v0/customers", {"merchantId": merchant.id, "consumer": {**ACME, "name": "Renamed"}, "externalId": "acme-001"}
    )

    # then
    customer = Customer.objects.get()
    assert first == (201, {"customerId": customer.id, "validTaxAddress": {"valid": True}})
    assert again == (200, {"customerId": customer.id, "validTaxAddress": {"valid": True}})
    assert (customer.name, customer.country, customer.postal_code, customer.address_line1) == (
        "Acme Inc",
        "US",
        "94105",
        "1 Market St",
    )
    assert (customer.external_id, customer.tax_rate) == ("acme-001", Decimal("8.5"))


def test_without_external_id_the_email_identifies_the_customer(api, merchant):
    status_1, body_1 = api.post("/v0/customers", {"merchantId": merchant.id, "consumer": ACME})
    status_2, body_2 = api.post(
        "/v0/customers", {"merchantId": merchant.id, "consumer": {**ACME, "email": "BILLING@acme.io"}}
    )

    assert (status_1, status_2) == (201, 200)
    assert body_1["customerId"] == body_2["customerId"]


def test_consumer_id_names_an_existing_customer(api, merchant):
    customer = CustomerFactory(merchant=merchant)

    assert api.post("/v0/customers", {"merchantId": merchant.id, "consumerId": customer.id})[0] == 200
    status, body = api.post("/v0/customers", {"merchantId": merchant.id, "consumerId": "cus_nope"})
    assert status == 400 and body["errors"][0]["field"] == "consumerId"


def test_incomplete_tax_address_is_reported_not_refused(api, merchant):
    status, body = api.post(
        "/v0/customers", {"merchantId": merchant.id, "consumer": {**ACME, "address": {"country": "US"}}}
    )

    assert status == 201
    assert body["validTaxAddress"] == {
        "valid": False,
        "message": "Tax needs a complete address; missing: zipCode, state.",
    }


def test_create_needs_a_consumer(api, merchant):
    status, body = api.post("/v0/customers", {"merchantId": merchant.id})
    assert status == 400 and body["errors"][0]["field"] == "consumer"

    status, body = api.post("/v0/customers", {"merchantId": merchant.id, "consumer": {**ACME, "email": "not-an-email"}})
    assert status == 400 and body["errors"][0]["field"] == "consumer.email"

    status, body = api.post("/v0/customers", {"merchantId": merchant.id, "consumer": ACME, "taxRates": {"plan_x": 5}})
    assert status == 400 and body["errors"][0]["field"] == "taxRates"


def test_get_answers_the_customer(api, merchant):
    customer = CustomerFactory(
        merchant=merchant,
        name="Acme",
        email="a@acme.io",
        country="US",
        state="CA",
        postal_code="94105",
        external_id="acme",
        tax_rate=Decimal("7.25"),
    )

    status, body = api.get(f"/v0/customers/{customer.id}")

    assert status == 200
    assert body == {
        "id": customer.id,
        "object": "customer",
        "consumerId": customer.id,
        "merchantId": merchant.id,
        "validTaxAddress": {"valid": True},
        "organization": {
            "id": customer.id,
            "name": "Acme",
            "address": {"line1": "", "line2": "", "city": "", "state": "CA", "country": "US", "zipCode": "94105"},
            "billingEmails": ["a@acme.io"],
            "phone": "",
        },
        "taxId": None,
        "externalId": "acme",
        "taxRates": {"default": 7.25},
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
        "name": "Acme",
        "email": "a@acme.io",
        "currency": "USD",
        "timeZone": "UTC",
        "billingEmails": [],  # none set: documents go to the e-mail (organization.billingEmails)
        "creditBeforePayment": False,
    }


def test_list_requires_the_organization_and_filters(api, merchant):
    acme = CustomerFactory(merchant=merchant, name="Acme Inc", email="billing@acme.io", external_id="acme")
    CustomerFactory(merchant=merchant, name="Globex", email="ap@globex.com")
    CustomerFactory(name="Acme Elsewhere")

    status, body = api.get("/v0/customers")
    assert status == 400 and body["errors"][0]["field"] == "organizationId"

    status, body = api.get("/v0/customers", organizationId=merchant.id, name="acm")
    assert (status, body["object"], [c["id"] for c in body["data"]]) == (200, "list", [acme.id])
    assert body["pagination"] == {"limit": 10, "offset": 0, "total": 1}

    assert [c["id"] for c in api.get("/v0/customers", organizationId=merchant.id, email="acme.io")[1]["data"]] == [
        acme.id
    ]
    assert [c["id"] for c in api.get("/v0/customers", organizationId=merchant.id, externalId="acme")[1]["data"]] == [
        acme.id
    ]

    status, body = api.get("/v0/customers", organizationId=merchant.id, name="ac")
    assert status == 400 and body["errors"][0]["field"] == "name"


def test_patch_nullable_fields_and_tax_rate_number(api, merchant):
    customer = CustomerFactory(merchant=merchant, tax_id="VAT1", external_id="old")

    status, body = api.patch(f"/v0/customers/{customer.id}", {"taxId": None, "externalId": None, "taxRates": 19})

    assert status == 200
    assert (body["taxId"], body["externalId"], body["taxRates"]) == (None, None, {"default": 19})
    customer.refresh_from_db()
    assert (customer.tax_id, customer.external_id, customer.tax_rate) == ("", None, Decimal("19"))


def test_patch_to_a_taken_external_id_is_refused(api, merchant):
    CustomerFactory(merchant=merchant, external_id="taken")
    customer = CustomerFactory(merchant=merchant)

    status, body = api.patch(f"/v0/customers/{customer.id}", {"externalId": "taken"})

    assert status == 400
    assert body["errors"][0] == {
        "field": "externalId",
        "message": "Another customer of this merchant has this external ID.",
        "code": "invalid",
    }


def test_delete_answers_204_or_409_with_subscription_blockers(api, merchant):
    free = CustomerFactory(merchant=merchant)
    subscription = SubscriptionFactory(merchant=merchant, plan__product__merchant=merchant)

    assert api.delete(f"/v0/customers/{free.id}") == (204, None)
    status, body = api.delete(f"/v0/customers/{subscription.customer_id}")
    assert status == 409
    assert body["error"] == "conflict"
    assert body["details"]["blockers"] == [
        {"type": "subscriptions", "count": 1, "items": [{"id": subscription.id, "status": "active"}]}
    ]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_the_same_customer_make_one_row():
    # given
    merchant = MerchantFactory()
    barrier = threading.Barrier(2)
    created: list[bool] = []

    def create():
        barrier.wait()
        try:
            created.append(customer_create(merchant=merchant, name="Acme", email="a@acme.io", external_id="acme")[1])
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert sorted(created) == [False, True]
    assert Customer.objects.filter(merchant=merchant).count() == 1

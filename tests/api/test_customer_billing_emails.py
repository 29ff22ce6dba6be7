"""/v0/customers: the billing e-mails (where invoices, credit notes and reminders go) as a Meterline extension,
written as ``billingEmails`` (validated per address, at most 10) and read back as ``billingEmails`` and as the
client's own ``organization.billingEmails`` (with the consumer's e-mail as the fallback); the unmodified
client still parses the customer."""

from __future__ import annotations

import pytest
from paygentic_sdk.models import Customer as ClientCustomer

from catalog.models import Customer
from tests.factories import CustomerFactory

ACME = {
    "name": "Acme Inc",
    "email": "billing@acme.io",
    "address": {"line1": "1 Market St", "city": "San Francisco", "state": "CA", "country": "us", "zipCode": "94105"},
}

pytestmark = pytest.mark.django_db


def test_billing_emails_are_written_on_create_and_read_back(api, merchant):
    status, created = api.post(
        "/v0/customers",
        {"merchantId": merchant.id, "consumer": ACME, "billingEmails": ["ap@acme.io", "cfo@acme.io", "ap@acme.io"]},
    )

    assert status == 201
    assert Customer.objects.get().billing_emails == "ap@acme.io, cfo@acme.io"
    status, body = api.get(f"/v0/customers/{created['customerId']}")
    assert status == 200
    assert body["billingEmails"] == ["ap@acme.io", "cfo@acme.io"]
    assert body["organization"]["billingEmails"] == ["ap@acme.io", "cfo@acme.io"]
    parsed = ClientCustomer.model_validate(body)
    assert parsed.organization.billing_emails == ["ap@acme.io", "cfo@acme.io"]


def test_without_billing_emails_documents_go_to_the_consumer_email(api, merchant):
    customer = CustomerFactory(merchant=merchant, email="owner@acme.io", billing_emails="")

    status, body = api.get(f"/v0/customers/{customer.pk}")

    assert status == 200
    assert (body["billingEmails"], body["organization"]["billingEmails"]) == ([], ["owner@acme.io"])


@pytest.mark.parametrize("cleared", [[], None])
def test_patch_replaces_or_clears_the_billing_emails(api, merchant, cleared):
    customer = CustomerFactory(merchant=merchant, email="owner@acme.io", billing_emails="old@acme.io")

    status, body = api.patch(f"/v0/customers/{customer.pk}", {"billingEmails": ["new@acme.io"]})
    assert (status, body["billingEmails"]) == (200, ["new@acme.io"])
    untouched = api.patch(f"/v0/customers/{customer.pk}", {"timeZone": "UTC"})[1]
    assert untouched["billingEmails"] == ["new@acme.io"]  # left out: unchanged

    status, body = api.patch(f"/v0/customers/{customer.pk}", {"billingEmails": cleared})

    assert (status, body["billingEmails"], body["organization"]["billingEmails"]) == (200, [], ["owner@acme.io"])
    customer.refresh_from_db()
    assert customer.billing_emails == ""


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        (["ap@acme.io", "not-an-address"], "billingEmails[1]", "Not an e-mail address: “not-an-address”."),
        (["ap@acme.io", 7], "billingEmails[1]", "Not a string."),
        (['"a,b"@acme.io'], "billingEmails[0]", "An address cannot hold a comma, semicolon or space."),
        ("ap@acme.io", "billingEmails", "Send a list of e-mail addresses."),
        ([f"ap{n}@acme.io" for n in range(11)], "billingEmails", "At most 10 billing e-mail addresses."),
        (
            [f"{'a' * 60}{n}@{'b' * 60}.example" for n in range(9)],
            "billingEmails",
            "The addresses take more than 1000 characters together.",
        ),
    ],
)
def test_bad_billing_emails_are_a_400_naming_the_item(api, merchant, value, field, message):
    customer = CustomerFactory(merchant=merchant, billing_emails="kept@acme.io")

    status, body = api.patch(f"/v0/customers/{customer.pk}", {"billingEmails": value})
    created = api.post("/v0/customers", {"merchantId": merchant.id, "consumer": ACME, "billingEmails": value})

    assert status == 400
    assert [(error["field"], error["message"]) for error in body["errors"]] == [(field, message)]
    assert created[0] == 400 and created[1]["errors"][0]["field"] == field
    customer.refresh_from_db()
    assert customer.billing_emails == "kept@acme.io"
    assert Customer.objects.count() == 1


def test_the_list_carries_the_billing_emails(api, merchant):
    CustomerFactory(merchant=merchant, billing_emails="ap@acme.io")

    status, body = api.get("/v0/customers", organizationId=merchant.id)

    assert status == 200
    assert [item["billingEmails"] for item in body["data"]] == [["ap@acme.io"]]

"""The client's payments operations (list, create, get) on our receivables payments, through DRF's client and
through the unmodified paygentic-sdk 0.6.3 against a live server."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from invoicing.models import InvoiceStatus, Payment
from invoicing.receivables import customer_credit_balance
from tests.factories import CustomerFactory, MerchantFactory
from tests.invoicing.receivables import JAN_1, account, issued

pytestmark = pytest.mark.django_db


def fields(response) -> list[str]:
    return sorted(error["field"] for error in response.json().get("errors", []))


def test_creating_a_payment_records_it_out_of_band_on_the_oldest_open_invoices(api_client, merchant):
    subscription = account(merchant)
    older = issued(subscription, "60.00", day=0)
    newer = issued(subscription, "50.00", day=1, now=JAN_1 + timedelta(days=1))  # due a day later

    response = api_client.post(
        "/v0/payments",
        {
            "merchantId": merchant.pk,
            "customerId": subscription.customer_id,
            "amount": "80.00",
            "currency": "USD",
            "reference": "wire 42",
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    payment = Payment.objects.get()
    assert body == {
        "object": "payment",
        "id": payment.pk,
        "amount": "80.00",
        "currency": "USD",
        "status": "completed",
        "createdAt": body["createdAt"],
        "customerId": subscription.customer_id,
        "idempotencyKey": None,
        "reference": "wire 42",
        "method": "out_of_band",
        "receivedAt": body["receivedAt"],
        "allocations": [{"invoiceId": older.pk, "amount": "60.00"}, {"invoiceId": newer.pk, "amount": "20.00"}],
    }
    assert payment.id.startswith("pay_") and payment.method == "out_of_band"
    older.refresh_from_db(), newer.refresh_from_db()
    assert (older.status, newer.status, newer.amount_due) == (
        InvoiceStatus.PAID,
        InvoiceStatus.PARTIALLY_PAID,
        Decimal("30.00"),
    )
    assert api_client.get(f"/v0/payments/{payment.pk}").json() == body


def test_what_no_invoice_takes_is_customer_credit_and_invoice_ids_choose_the_invoices(api_client, merchant):
    subscription = account(merchant)
    older = issued(subscription, "60.00", day=0)
    newer = issued(subscription, "50.00", day=1, now=JAN_1 + timedelta(days=1))  # due a day later

    response = api_client.post(
        "/v0/payments",
        {"customerId": subscription.customer_id, "amount": "70", "currency": "usd", "invoiceIds": [newer.pk]},
        format="json",
    )

    assert response.json()["allocations"] == [{"invoiceId": newer.pk, "amount": "50.00"}]
    older.refresh_from_db()
    assert older.amount_due == Decimal("60.00")
    assert customer_credit_balance(customer_id=subscription.customer_id, currency="USD") == Decimal("20.00")


def test_an_idempotency_key_records_once_and_refuses_another_payment(api_client, merchant):
    customer = CustomerFactory(merchant=merchant)
    body = {"customerId": customer.pk, "amount": "10.00", "currency": "USD", "idempotencyKey": "k-1"}

    first = api_client.post("/v0/payments", body, format="json")
    again = api_client.post("/v0/payments", body, format="json")
    other = api_client.post("/v0/payments", {**body, "amount": "11.00"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json() and first.json()["idempotencyKey"] == "k-1"
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert Payment.objects.count() == 1


def test_bad_input_is_a_400_naming_each_field(api_client, merchant):
    customer = CustomerFactory(merchant=merchant)

    def post(body):
        response = api_client.post("/v0/payments", body, format="json")
        return response.status_code, fields(response)

    base = {"customerId": customer.pk, "amount": "10.00", "currency": "USD"}
    assert post({}) == (400, ["amount", "currency", "customerId"])
    assert post({**base, "amount": "-1"}) == (400, ["amount"])
    assert post({**base, "amount": "0.001"}) == (400, ["amount"])  # finer than a cent
    assert post({**base, "amount": "abc"}) == (400, ["amount"])
    assert post({**base, "currency": "XYZ"}) == (400, ["currency"])
    assert post({**base, "customerId": "cus_nope"}) == (400, ["customerId"])
    assert post({**base, "successRedirectUrl": "https://x.example", "expiresIn": "P1D"}) == (
        400,
        ["expiresIn", "successRedirectUrl"],
    )
    assert post({**base, "savePaymentMethod": True, "metadata": {"a": "b"}}) == (400, ["metadata", "savePaymentMethod"])
    assert post({**base, "nope": 1}) == (400, ["nope"])
    assert post({**base, "savePaymentMethod": False}) == (201, [])  # what the client sends by default


def test_invoices_that_cannot_take_a_payment_are_refused_by_the_service(api_client, merchant):
    subscription = account(merchant)
    invoice = issued(subscription, "10.00")
    body = {"customerId": subscription.customer_id, "amount": "10.00", "currency": "USD", "invoiceIds": [invoice.pk]}
    assert api_client.post("/v0/payments", body, format="json").status_code == 201

    paid = api_client.post("/v0/payments", body, format="json")
    stranger = issued(account(merchant), "5.00")
    foreign = api_client.post("/v0/payments", {**body, "invoiceIds": [stranger.pk]}, format="json")

    assert (paid.status_code, paid.json()["code"]) == (409, "INVOICE_ALREADY_PAID")
    assert (foreign.status_code, foreign.json()["code"]) == (422, "INVOICE_NOT_LINKABLE_STATUS")


def test_list_filters_pages_and_scopes_to_the_merchant(api_client, merchant):
    ada, bob = CustomerFactory(merchant=merchant), CustomerFactory(merchant=merchant)
    for customer, amount in ((ada, "1.00"), (bob, "2.00"), (ada, "3.00")):
        api_client.post("/v0/payments", {"customerId": customer.pk, "amount": amount, "currency": "USD"}, format="json")
    other = MerchantFactory()
    stranger = CustomerFactory(merchant=other)

    page = api_client.get("/v0/payments?limit=2&offset=0").json()
    rest = api_client.get("/v0/payments?limit=2&offset=2").json()
    adas = api_client.get(f"/v0/payments?customerId={ada.pk}&status=completed").json()
    pending = api_client.get("/v0/payments?status=pending").json()

    assert (page["object"], len(page["data"]), page["pagination"]) == ("list", 2, {"limit": 2, "offset": 0, "total": 3})
    assert len(rest["data"]) == 1
    assert sorted(row["amount"] for row in adas["data"]) == ["1.00", "3.00"]
    assert (pending["data"], pending["pagination"]["total"]) == ([], 0)
    assert fields(api_client.get("/v0/payments?status=paid")) == ["status"]
    assert fields(api_client.get("/v0/payments?limit=0")) == ["limit"]
    assert api_client.get(f"/v0/payments?merchantId={other.pk}").status_code == 403
    body = {"merchantId": other.pk, "customerId": stranger.pk, "amount": "1.00", "currency": "USD"}
    assert api_client.post("/v0/payments", body, format="json").status_code == 403
    mine = Payment.objects.filter(customer=ada).first()
    theirs = Payment.objects.create(
        merchant=other,
        customer=stranger,
        currency="USD",
        amount=1,
        method="out_of_band",
        received_at=mine.received_at,
        recorded_at=mine.recorded_at,
    )
    assert api_client.get(f"/v0/payments/{theirs.pk}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_operations_work_through_the_paygentic_client(live_server):
    merchant = MerchantFactory()
    subscription = account(merchant)
    invoice = issued(subscription, "25.00")
    _, key = api_key_create(merchant=merchant, name="sdk")

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        created = sdk.payments.create(
            amount="25.00",
            currency="USD",
            merchant_id=merchant.pk,
            customer_id=subscription.customer_id,
            idempotency_key="sdk-1",
            reference="wire 7",
        )
        replayed = sdk.payments.create(
            amount="25.00",
            currency="USD",
            customer_id=subscription.customer_id,
            idempotency_key="sdk-1",
            reference="wire 7",
        )
        listed = sdk.payments.list(request={"merchant_id": merchant.pk, "customer_id": subscription.customer_id})
        fetched = sdk.payments.get(id=created.id)
        with pytest.raises(errors.BadRequest) as bad:
            sdk.payments.create(amount="-5", currency="USD", customer_id=subscription.customer_id)

    assert (created.object, created.status, created.amount, created.currency) == (
        "payment",
        "completed",
        "25.00",
        "USD",
    )
    assert (created.customer_id, created.idempotency_key, created.reference) == (
        subscription.customer_id,
        "sdk-1",
        "wire 7",
    )
    assert created.id.startswith("pay_") and created.payment_url is None
    assert replayed.id == created.id
    assert [row.id for row in listed.data] == [created.id] and listed.pagination.total == 1
    assert fetched.id == created.id and fetched.created_at == created.created_at
    assert bad.value.data.errors[0].field == "amount"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_the_schema_documents_the_operations_under_the_clients_ids(client):
    schema = client.get("/v0/schema?format=json").json()

    operations = {
        operation["operationId"]: (path, method)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if operation.get("operationId") in ("listPayments", "createPayment", "getPayment")
    }

    assert operations == {
        "listPayments": ("/v0/payments", "get"),
        "createPayment": ("/v0/payments", "post"),
        "getPayment": ("/v0/payments/{id}", "get"),
    }

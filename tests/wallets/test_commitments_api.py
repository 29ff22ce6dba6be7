"""Commitments through the API (a Meterline extension): POST/GET /v0/customers/{id}/commitments and
GET /v0/commitments/{id}. A $15.00 commitment over January buys $0.001 instead of $0.002 per 1K tokens
(0.000001 instead of 0.000002 per token); usage in the term is invoiced at it, after the term at the plan's."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Price
from invoicing.models import Invoice, InvoiceKind
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MerchantFactory, PlanFactory
from tests.invoicing.factories import CustomerFactory, metered_price, record_usage
from wallets.models import Commitment

pytestmark = pytest.mark.django_db

JAN, FEB, MAR = (datetime(2026, month, 1, tzinfo=UTC) for month in (1, 2, 3))
TEN_MILLION = 10_000_000


@pytest.fixture
def setup(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Enterprise")
    price = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    return customer, price


def _body(price, **changes) -> dict:
    body = {
        "currency": "USD",
        "amount": "15",
        "termStart": "2026-01-01T00:00:00Z",
        "termEnd": "2026-02-01T00:00:00Z",
        "metricIds": [price.billable_metric_id],
        "description": "Committed use 2026-01",
        "rates": [{"priceId": price.pk, "unitPrice": "0.000001"}],
    }
    return {**body, **changes}


def _post(api_client, customer, body):
    return api_client.post(f"/v0/customers/{customer.pk}/commitments", body, format="json")


def _fields(response) -> dict[str, str]:
    return {error["field"]: error["message"] for error in response.json()["errors"]}


def test_create_list_and_get_a_commitment_with_its_committed_rate(api_client, setup):
    customer, price = setup

    created = _post(api_client, customer, _body(price))

    assert created.status_code == 201, created.json()
    body = created.json()
    negotiated = Price.objects.get(customer=customer)
    assert (negotiated.overrides_id, negotiated.unit_price) == (price.pk, Decimal("0.000001"))
    assert (negotiated.effective_from, negotiated.effective_until) == (JAN, FEB)
    assert body == {
        "object": "commitment",
        "id": body["id"],
        "customerId": customer.pk,
        "currency": "USD",
        "amount": "15",
        "termStart": "2026-01-01T00:00:00Z",
        "termEnd": "2026-02-01T00:00:00Z",
        "metricIds": [price.billable_metric_id],
        "description": "Committed use 2026-01",
        "drawn": "0",
        "truedUpAt": None,
        "shortfall": None,
        "rates": [{"priceId": price.pk, "negotiatedPriceId": negotiated.pk, "unitPrice": "0.000001"}],
    }
    assert body["id"].startswith("cmt_")

    listed = api_client.get(f"/v0/customers/{customer.pk}/commitments")
    assert listed.status_code == 200
    assert listed.json()["pagination"] == {"limit": 10, "offset": 0, "total": 1}
    # drawn is computed on the detail only (null in lists until the commitment is trued up)
    assert listed.json()["data"] == [{**body, "drawn": None}]

    fetched = api_client.get(f"/v0/commitments/{body['id']}")
    assert (fetched.status_code, fetched.json()) == (200, body)


def test_usage_in_the_term_is_invoiced_at_the_committed_rate(api_client, setup):
    customer, price = setup
    subscription = subscription_start(customer=customer, plan=price.plan, started_at=JAN, now=JAN)
    assert _post(api_client, customer, _body(price)).status_code == 201

    totals = []
    for start, end in ((JAN, FEB), (FEB, MAR)):
        record_usage(customer, price.billable_metric, start.replace(day=9), TEN_MILLION)
        billing_run_execute(as_of=end)
        invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=start)
        invoice_finalize(invoice=invoice, now=end)
        totals.append(invoice.total)
    # 10,000,000 × 0.000001 = 10.00 in the term; 10,000,000 × 0.000002 = 20.00 after it
    assert totals == [Decimal("10.00"), Decimal("20.00")]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"amount": "0"}, "amount", "Must be greater than 0."),
        ({"amount": "1e30"}, "amount", "Enter a number with at most 15 digits"),
        ({"termEnd": "2025-12-31T00:00:00Z"}, "termEnd", "The term must end after it starts."),
        ({"currency": "usd"}, "currency", "is not an ISO 4217 currency code"),
        ({"metricIds": ["bm_missing"]}, "metricIds.0", "No such object"),
        ({"description": "x" * 256}, "description", "no more than 255"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_client, setup, changes, field, message):
    customer, price = setup
    response = _post(api_client, customer, _body(price, **changes))
    assert response.status_code == 400
    assert message in _fields(response)[field]
    assert not Commitment.objects.exists()


@pytest.mark.parametrize(
    ("rate", "field", "message"),
    [
        ({"unitPrice": "0.00000l"}, "rates.0.unitPrice", "Enter a decimal number"),
        ({"unitPrice": "0.0000000000001"}, "rates.0.unitPrice", "12 after it"),
        ({"unitPrice": "-0.000001"}, "rates.0.unitPrice", "Must be at least 0"),
        ({"priceId": 42}, "rates.0.priceId", "Give the id as a string."),
    ],
)
def test_a_bad_rate_is_a_400_naming_it(api_client, setup, rate, field, message):
    customer, price = setup
    body = _body(price, rates=[{"priceId": price.pk, "unitPrice": "0.000001", **rate}])
    response = _post(api_client, customer, body)
    assert response.status_code == 400
    assert message in _fields(response)[field]
    assert not Commitment.objects.exists()


def test_another_merchants_price_is_a_400_on_its_price_id(api_client, setup):
    customer, _ = setup
    other = MerchantFactory(name="Other")
    foreign = metered_price(PlanFactory(merchant=other, product__merchant=other), "0.000002")
    response = _post(api_client, customer, _body(foreign, metricIds=[]))
    assert response.status_code == 400
    assert _fields(response) == {"rates.0.priceId": f"No such object: “{foreign.pk}”."}


def test_a_rate_overlapping_another_of_the_customers_rates_refuses_the_whole_commitment(api_client, setup):
    customer, price = setup
    assert _post(api_client, customer, _body(price)).status_code == 201

    other_rate = {"priceId": price.pk, "unitPrice": "0.0000015"}
    overlapping = _body(price, termStart="2026-01-15T00:00:00Z", termEnd="2026-03-01T00:00:00Z")
    response = _post(api_client, customer, {**overlapping, "rates": [other_rate]})

    assert response.status_code == 400
    assert list(_fields(response)) == ["rates.0.priceId"]
    assert _fields(response)["rates.0.priceId"].startswith("Rate 1:")
    assert Commitment.objects.count() == 1
    assert Price.objects.filter(customer=customer).count() == 1


def test_another_merchants_customer_and_commitment_are_404(api_client, setup):
    customer, price = setup
    other = MerchantFactory(name="Other")
    stranger = CustomerFactory(merchant=other, name="Stranger")
    response = _post(api_client, stranger, _body(price, rates=[], metricIds=[]))
    assert response.status_code == 404
    assert api_client.get(f"/v0/customers/{stranger.pk}/commitments").status_code == 404

    theirs = Commitment.objects.create(
        merchant=other, customer=stranger, currency="USD", amount=Decimal(5), term_start=JAN, term_end=FEB
    )
    assert api_client.get(f"/v0/commitments/{theirs.pk}").status_code == 404
    assert not Commitment.objects.filter(customer=customer).exists()


def test_the_same_price_twice_in_one_body_is_a_400_on_the_second_rate(api_client, setup):
    customer, price = setup
    twice = [{"priceId": price.pk, "unitPrice": "0.000001"}, {"priceId": price.pk, "unitPrice": "0.0000015"}]
    response = _post(api_client, customer, _body(price, rates=twice))
    assert response.status_code == 400
    assert list(_fields(response)) == ["rates.1.priceId"]
    assert _fields(response)["rates.1.priceId"].startswith("Rate 2:")
    assert not Commitment.objects.exists() and not Price.objects.filter(customer=customer).exists()

"""Grant and top-up amounts are bounded by the shared money bound (catalog.pricing.limits): 400, never 500."""

from decimal import Decimal

import pytest

from wallets.errors import InvalidAmount
from wallets.models import LedgerEntry
from wallets.services import credit_grant

pytestmark = pytest.mark.django_db

LARGEST = "999999999999999.999999999999"  # 15 digits before the point, 12 after it


@pytest.mark.parametrize("route", ["grants", "topUps"])
@pytest.mark.parametrize("amount", ["10000000000000000", "1000000000000000", 1e16])
def test_an_amount_beyond_the_bound_is_a_400_naming_amount(api_client, customer, route, amount):
    # when a credit of 10^16 (or exactly 10^15) is posted
    response = api_client.post(
        f"/v0/customers/{customer.pk}/{route}", {"amount": amount, "idempotencyKey": "big-1"}, format="json"
    )

    # then it is refused, naming the field, and nothing is written
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["field"] == "amount"
    assert error["message"] == "Ensure that there are no more than 15 digits before the decimal point."
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    "route", ["grants"]
)  # a top-up is invoiced first: tests/invoicing/test_credit_purchases_api.py
def test_the_largest_amount_within_the_bound_is_credited_exactly(api_client, customer, route):
    response = api_client.post(
        f"/v0/customers/{customer.pk}/{route}", {"amount": LARGEST, "idempotencyKey": "big-2"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert (response.json()["amount"], response.json()["balance"]) == (LARGEST, LARGEST)


def test_the_service_refuses_an_amount_beyond_the_bound(customer, now):
    with pytest.raises(InvalidAmount) as refused:
        credit_grant(customer=customer, currency="USD", amount=Decimal(10) ** 16, idempotency_key="k", now=now)

    assert str(refused.value) == "Amounts must have at most 15 digits before the decimal point and 12 after it."
    assert not LedgerEntry.objects.exists()

"""The prepaid-credit API: balance, ledger, grants, top-ups; other merchants' customers are 404."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import BillableMetricFactory, CustomerFactory
from wallets.models import BalancePolicy, LedgerEntry
from wallets.services import credit_top_up, reserved_capacity_purchase, usage_debit, wallet_policy_update

pytestmark = pytest.mark.django_db


def test_grant_then_balance_and_ledger(api_client, customer):
    # when a grant expiring in 30 days and a paid top-up are posted
    expires_at = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    grant = api_client.post(
        f"/v0/customers/{customer.pk}/grants",
        {"amount": "25.50", "expiresAt": expires_at.isoformat(), "idempotencyKey": "promo-1", "description": "Launch"},
        format="json",
    )
    # (top-ups are sold on an invoice through the API: tests/invoicing/test_credit_purchases_api.py)
    top_up = credit_top_up(
        customer=customer,
        currency="USD",
        amount=Decimal(100),
        idempotency_key="buy-1",
        purchase_invoice_ref="inv_42",
        now=timezone.now(),
    )

    # then
    assert grant.status_code == 201, grant.json()
    assert {k: grant.json()[k] for k in ("kind", "amount", "balanceAfter", "currency", "description", "sequence")} == {
        "kind": "grant",
        "amount": "25.5",
        "balanceAfter": "25.5",
        "currency": "USD",
        "description": "Launch",
        "sequence": 1,
    }
    assert (top_up.entry.reference, top_up.entry.balance_after) == ("inv_42", Decimal("125.5"))

    balance = api_client.get(f"/v0/customers/{customer.pk}/balance").json()
    assert balance["customerId"] == customer.pk
    [usd] = balance["balances"]
    assert {k: v for k, v in usd.items() if k not in ("id", "updatedAt")} == {
        "object": "balance",
        "currency": "USD",
        "balance": "125.5",
        "available": "125.5",
        "reserved": "0",
        "overage": "0",
        "pendingExpiry": "25.5",
        "nextExpiryAt": expires_at.isoformat().replace("+00:00", "Z"),
        "lowBalanceThreshold": None,
        "isLowBalance": False,
        "policy": {"type": "allow_overage", "autoTopUpThreshold": None, "autoTopUpAmount": None},
    }

    ledger = api_client.get(f"/v0/customers/{customer.pk}/ledger?currency=USD&limit=1&offset=0").json()
    assert ledger["pagination"] == {"limit": 1, "offset": 0, "total": 2}
    assert [(e["kind"], e["amount"], e["balanceAfter"]) for e in ledger["data"]] == [("top_up", "100", "125.5")]


def test_a_replayed_grant_answers_200_with_the_same_entry(api_client, customer):
    body = {"amount": "10", "idempotencyKey": "promo-1"}
    first = api_client.post(f"/v0/customers/{customer.pk}/grants", body, format="json")
    again = api_client.post(f"/v0/customers/{customer.pk}/grants", body, format="json")
    changed = api_client.post(f"/v0/customers/{customer.pk}/grants", {**body, "amount": "11"}, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert changed.status_code == 409
    assert changed.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "10"}, "idempotencyKey"),
        ({"amount": "0", "idempotencyKey": "k"}, "amount"),
        ({"amount": "-3", "idempotencyKey": "k"}, "amount"),
        ({"amount": "ten", "idempotencyKey": "k"}, "amount"),
        ({"amount": "10", "idempotencyKey": "k", "currency": "usd"}, "currency"),
        ({"amount": "10", "idempotencyKey": "k", "expiresAt": "tomorrow"}, "expiresAt"),
    ],
)
def test_a_bad_grant_is_a_400_naming_the_field(api_client, customer, body, field):
    response = api_client.post(f"/v0/customers/{customer.pk}/grants", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert LedgerEntry.objects.count() == 0


def test_a_grant_expiring_in_the_past_is_a_400(api_client, customer):
    response = api_client.post(
        f"/v0/customers/{customer.pk}/grants",
        {"amount": "10", "idempotencyKey": "k", "expiresAt": "2020-01-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["message"] == "The expiry must be in the future."


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "balance"), ("get", "ledger"), ("post", "grants"), ("post", "topUps")],
)
def test_another_merchants_customer_is_404(api_client, method, path):
    stranger = CustomerFactory()
    response = (
        getattr(api_client, method)(
            f"/v0/customers/{stranger.pk}/{path}", {"amount": "10", "idempotencyKey": "k"}, format="json"
        )
        if method == "post"
        else api_client.get(f"/v0/customers/{stranger.pk}/{path}")
    )

    assert response.status_code == 404
    assert response.json() == {"message": "No such object.", "error": "not_found"}
    assert LedgerEntry.objects.count() == 0


def test_the_api_needs_a_key(anonymous_client, customer):
    assert anonymous_client.get(f"/v0/customers/{customer.pk}/balance").status_code == 401


def test_balance_reads_the_cached_rows_in_a_fixed_number_of_queries(api_client, customer, django_assert_num_queries):
    # given balances in two currencies with reserved credit, overage and many ledger entries
    now = timezone.now()
    metric = BillableMetricFactory(merchant=customer.merchant)
    reserved_capacity_purchase(
        customer=customer,
        currency="USD",
        credit_amount=Decimal("1000"),
        price_paid=Decimal("600"),
        metric_ids=[metric.pk],
        idempotency_key="rc",
        now=now,
    )
    credit_top_up(customer=customer, currency="EUR", amount=Decimal("5"), idempotency_key="t", now=now)
    wallet_policy_update(
        customer=customer, currency="EUR", policy=BalancePolicy.BLOCK, low_balance_threshold=Decimal("2"), now=now
    )
    for index in range(20):
        usage_debit(
            customer=customer,
            currency="USD",
            amount=Decimal("1.5"),
            metric_id=metric.pk,
            now=now,
            idempotency_key=str(index),
        )

    # when / then: API key lookup, then the customer with its wallets in one statement — whatever the
    # number of entries
    with django_assert_num_queries(2):
        response = api_client.get(f"/v0/customers/{customer.pk}/balance")
    balances = {b["currency"]: b for b in response.json()["balances"]}
    assert (balances["USD"]["balance"], balances["USD"]["reserved"], balances["USD"]["available"]) == (
        "970",
        "970",
        "0",
    )
    assert (balances["EUR"]["policy"]["type"], balances["EUR"]["lowBalanceThreshold"]) == ("block", "2")

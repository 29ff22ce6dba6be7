"""A commitment is created exactly once per idempotency key (per customer), as POST /v2/invoices/lineItems is:
the Idempotency-Key header, else the body's idempotencyKey; a replay with the same body answers 200 with the
first commitment, another body 409 IDEMPOTENCY_KEY_REUSED; the database's unique constraint decides."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from catalog.models import Price
from tests.factories import MerchantFactory, PlanFactory
from tests.invoicing.factories import CustomerFactory, metered_price
from wallets.models import Commitment, CommitmentRate
from wallets.services import CommittedRate, commitment_create

pytestmark = pytest.mark.django_db

JAN, FEB = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def setup(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Enterprise")
    price = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    return customer, price


def _body(price=None, **changes) -> dict:
    body = {
        "currency": "USD",
        "amount": "15",
        "termStart": "2026-01-01T00:00:00Z",
        "termEnd": "2026-02-01T00:00:00Z",
        "description": "Committed use 2026-01",
    }
    if price is not None:
        body["rates"] = [{"priceId": price.pk, "unitPrice": "0.000001"}]
    return {**body, **changes}


def _post(api_client, customer, body, **headers):
    return api_client.post(f"/v0/customers/{customer.pk}/commitments", body, format="json", headers=headers)


def test_the_same_key_and_body_create_one_commitment_and_the_replay_answers_200_with_it(api_client, setup):
    customer, _ = setup

    first = _post(api_client, customer, _body(idempotencyKey="cmt-2026-01"))
    replay = _post(api_client, customer, _body(idempotencyKey="cmt-2026-01"))

    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    assert Commitment.objects.filter(customer=customer).count() == 1


def test_the_header_key_is_the_same_key_as_the_body_key(api_client, setup):
    customer, _ = setup

    first = _post(api_client, customer, _body(), **{"Idempotency-Key": "cmt-2026-01"})
    replay = _post(api_client, customer, _body(idempotencyKey="cmt-2026-01"))

    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == first.json()["id"]
    assert Commitment.objects.filter(customer=customer).count() == 1


def test_a_header_and_a_body_key_that_differ_are_a_400_writing_nothing(api_client, setup):
    customer, _ = setup

    response = _post(api_client, customer, _body(idempotencyKey="a"), **{"Idempotency-Key": "b"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "idempotencyKey"
    assert not Commitment.objects.filter(customer=customer).exists()


def test_the_same_key_with_another_body_is_a_409_writing_nothing(api_client, setup):
    customer, _ = setup
    _post(api_client, customer, _body(idempotencyKey="cmt-2026-01"))

    conflict = _post(api_client, customer, _body(amount="16", idempotencyKey="cmt-2026-01"))

    assert conflict.status_code == 409
    assert conflict.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert list(Commitment.objects.filter(customer=customer).values_list("amount", flat=True)) == [Decimal("15")]


def test_without_a_key_a_retry_creates_a_second_commitment(api_client, setup):
    # Documented: no key, no exactly-once (the admin creates this way).
    customer, _ = setup

    responses = [_post(api_client, customer, _body()) for _ in range(2)]

    assert [r.status_code for r in responses] == [201, 201]
    assert Commitment.objects.filter(customer=customer).count() == 2


def test_the_key_is_per_customer(api_client, setup, merchant):
    customer, _ = setup
    other = CustomerFactory(merchant=merchant, name="Beta AI")

    responses = [_post(api_client, c, _body(idempotencyKey="cmt-2026-01")) for c in (customer, other)]

    assert [r.status_code for r in responses] == [201, 201]


def test_a_replay_with_rates_writes_the_negotiated_rate_once(api_client, setup):
    # Without the key the retry's rate would overlap the first's and be refused (400); with it, the first answer.
    customer, price = setup

    first = _post(api_client, customer, _body(price, idempotencyKey="cmt-2026-01"))
    replay = _post(api_client, customer, _body(price, idempotencyKey="cmt-2026-01"))

    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    assert CommitmentRate.objects.filter(commitment__customer=customer).count() == 1
    negotiated = Price.objects.get(customer=customer)
    assert (negotiated.overrides_id, negotiated.unit_price) == (price.pk, Decimal("0.000001"))


def test_another_rate_under_the_same_key_is_a_409(api_client, setup):
    customer, price = setup
    _post(api_client, customer, _body(price, idempotencyKey="cmt-2026-01"))

    body = _body(price, idempotencyKey="cmt-2026-01")
    body["rates"][0]["unitPrice"] = "0.0000015"
    conflict = _post(api_client, customer, body)

    assert conflict.status_code == 409
    assert conflict.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert CommitmentRate.objects.filter(commitment__customer=customer).count() == 1


def test_the_service_replays_the_same_request_and_names_it_a_replay(setup):
    customer, _ = setup
    request = dict(customer=customer, currency="USD", amount=Decimal("15"), term_start=JAN, term_end=FEB)

    first, first_replayed = commitment_create(**request, idempotency_key="k")
    # The same instant written in another form (15.00, another zone) is the same request.
    again, again_replayed = commitment_create(
        **{**request, "amount": Decimal("15.00"), "term_start": JAN.astimezone(UTC)}, idempotency_key="k"
    )

    assert (first_replayed, again_replayed) == (False, True)
    assert again.pk == first.pk


def test_the_constraint_refuses_a_second_commitment_with_the_same_key(setup):
    customer, _ = setup
    row = dict(
        merchant_id=customer.merchant_id,
        customer=customer,
        currency="USD",
        amount=Decimal("15"),
        term_start=JAN,
        term_end=FEB,
        idempotency_key="k",
    )
    Commitment.objects.create(**row)
    Commitment.objects.create(**{**row, "idempotency_key": None})
    Commitment.objects.create(**{**row, "idempotency_key": None})  # null keys never collide

    with pytest.raises(IntegrityError), transaction.atomic():
        Commitment.objects.create(**row)


def test_a_key_that_lost_the_race_at_the_insert_answers_the_winner(setup, monkeypatch):
    # The look-up before the insert misses a concurrent winner that commits in between: the constraint decides.
    customer, _ = setup
    request = dict(customer=customer, currency="USD", amount=Decimal("15"), term_start=JAN, term_end=FEB)
    winner, _ = commitment_create(**request, idempotency_key="k")
    from wallets.services import commitments

    real_replay = commitments._replay
    calls = []

    def first_look_misses(customer, key, fingerprint):
        calls.append(key)
        return None if len(calls) == 1 else real_replay(customer, key, fingerprint)

    monkeypatch.setattr(commitments, "_replay", first_look_misses)

    loser, replayed = commitment_create(**request, idempotency_key="k")

    assert (loser.pk, replayed, len(calls)) == (winner.pk, True, 2)
    assert Commitment.objects.filter(customer=customer).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_key_write_one_commitment_with_its_rate_once():
    merchant = MerchantFactory()
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Enterprise")
    price = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input")
    customer = CustomerFactory(merchant=merchant, name="Acme AI", tax_rate=Decimal("0"))
    threads = 8
    barrier = threading.Barrier(threads)

    def create(_):
        try:
            barrier.wait()
            commitment, replayed = commitment_create(
                customer=customer,
                currency="USD",
                amount=Decimal("15"),
                term_start=JAN,
                term_end=FEB,
                rates=[CommittedRate(plan_price=price, unit_price=Decimal("0.000001"))],
                idempotency_key="cmt-2026-01",
            )
            return commitment.pk, replayed
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(create, range(threads)))

    assert len({pk for pk, _ in outcomes}) == 1
    assert sorted(replayed for _, replayed in outcomes) == [False] + [True] * (threads - 1)
    assert Commitment.objects.filter(customer=customer).count() == 1
    assert CommitmentRate.objects.filter(commitment__customer=customer).count() == 1

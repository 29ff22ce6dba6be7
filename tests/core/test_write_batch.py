"""``core.bulk.WriteBatch``: writes given ``batch=`` run only when the caller executes the batch, in the
order added; on PostgreSQL consecutive JSON-row writes go as one statement."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from catalog.models import Customer
from core.bulk import WriteBatch, rows_insert, rows_update
from tests.factories import CustomerFactory
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

ON_POSTGRESQL = connection.vendor == "postgresql"


@pytest.fixture
def wallets(merchant):
    return [
        Wallet.objects.create(merchant=merchant, customer=CustomerFactory(merchant=merchant), currency="USD")
        for _ in range(3)
    ]


def _balances() -> dict[str, Decimal]:
    return dict(Wallet.objects.values_list("id", "balance"))


def test_the_writes_of_a_batch_go_as_one_statement_when_executed(wallets, django_assert_num_queries):
    first, second, third = wallets
    first.balance, second.balance = Decimal("1.5"), Decimal("-2.000000000001")
    third.last_sequence = 7
    batch = WriteBatch()

    with django_assert_num_queries(0):
        rows_update(Wallet, [first, second], ["balance"], batch=batch)
        rows_update(Wallet, [third], ["last_sequence"], batch=batch)
    with django_assert_num_queries(1 if ON_POSTGRESQL else 2):
        batch.execute()

    assert _balances() == {first.pk: Decimal("1.5"), second.pk: Decimal("-2.000000000001"), third.pk: 0}
    assert Wallet.objects.get(pk=third.pk).last_sequence == 7


def test_nothing_is_written_before_execute_and_execute_empties_the_batch(wallets, django_assert_num_queries):
    first = wallets[0]
    first.balance = Decimal(9)
    batch = WriteBatch()
    rows_update(Wallet, [first], ["balance"], batch=batch)
    first.balance = Decimal(10)  # the values were taken when the write was added

    assert (len(batch), Wallet.objects.get(pk=first.pk).balance) == (1, 0)
    batch.execute()
    assert (len(batch), Wallet.objects.get(pk=first.pk).balance) == (0, Decimal(9))
    with django_assert_num_queries(0):
        batch.execute()


def _row_of(instance) -> tuple[list[str], list[tuple]]:
    fields = [field.attname for field in type(instance)._meta.concrete_fields]
    return fields, [tuple(getattr(instance, name) for name in fields)]


def test_a_row_and_the_rows_referring_to_it_in_one_batch(merchant):
    # a customer and, in the same batch, the wallet whose foreign key names it
    stamp = timezone.now()
    customer = CustomerFactory.build(merchant=merchant, created_at=stamp, updated_at=stamp)
    wallet = Wallet(merchant=merchant, customer=customer, currency="USD", created_at=stamp, updated_at=stamp)
    wallet.id = "wal_combined_1"
    batch = WriteBatch()
    rows_insert(Customer, *_row_of(customer), batch=batch)
    rows_insert(Wallet, *_row_of(wallet), batch=batch)
    batch.execute()

    assert Wallet.objects.get(pk="wal_combined_1").customer_id == customer.pk


def test_a_write_in_the_portable_form_keeps_its_place_in_the_order(wallets, django_assert_num_queries):
    # three writes of one row; the middle one holds a float, which PostgreSQL does not get as JSON rows
    first = wallets[0]
    batch = WriteBatch()
    for value in (Decimal(1), 2.0, Decimal(3)):
        first.balance = value
        rows_update(Wallet, [first], ["balance"], batch=batch)

    with django_assert_num_queries(3):
        batch.execute()

    assert Wallet.objects.get(pk=first.pk).balance == Decimal(3)


def test_a_database_error_of_a_batched_write_is_raised_by_execute(wallets):
    first = wallets[0]
    twin = Wallet(merchant_id=first.merchant_id, customer_id=first.customer_id, currency="USD")
    twin.id, twin.created_at, twin.updated_at = "wal_dup_1", first.created_at, first.updated_at
    batch = WriteBatch()
    # a second USD wallet of the same customer: the unique constraint refuses it, when sent
    rows_insert(Wallet, *_row_of(twin), batch=batch)
    with pytest.raises(IntegrityError), transaction.atomic():
        batch.execute()
    assert not Wallet.objects.filter(pk="wal_dup_1").exists()
    assert len(_balances()) == 3

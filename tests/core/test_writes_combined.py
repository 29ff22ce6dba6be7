"""``core.bulk.writes_combined``: the array writes made inside go to PostgreSQL as one statement,
and everything else on the connection sees them exactly as if each had run at once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from catalog.models import Customer
from core.bulk import rows_insert, rows_update, writes_combined
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


def test_writes_inside_go_as_one_statement(wallets, django_assert_num_queries):
    first, second, third = wallets
    first.balance, second.balance = Decimal("1.5"), Decimal("-2.000000000001")
    third.last_sequence = 7

    with django_assert_num_queries(1 if ON_POSTGRESQL else 2):
        with writes_combined():
            rows_update(Wallet, [first, second], ["balance"])
            rows_update(Wallet, [third], ["last_sequence"])

    assert _balances() == {first.pk: Decimal("1.5"), second.pk: Decimal("-2.000000000001"), third.pk: 0}
    assert Wallet.objects.get(pk=third.pk).last_sequence == 7


def _row_of(instance) -> tuple[list[str], list[tuple]]:
    fields = [field.attname for field in type(instance)._meta.concrete_fields]
    return fields, [tuple(getattr(instance, name) for name in fields)]


def test_a_row_and_the_rows_referring_to_it_in_one_statement(merchant):
    # a customer and, in the same combined statement, the wallet whose foreign key names it
    stamp = timezone.now()
    customer = CustomerFactory.build(merchant=merchant, created_at=stamp, updated_at=stamp)
    wallet = Wallet(merchant=merchant, customer=customer, currency="USD", created_at=stamp, updated_at=stamp)
    wallet.id = "wal_combined_1"
    with writes_combined():
        rows_insert(Customer, *_row_of(customer))
        rows_insert(Wallet, *_row_of(wallet))

    assert Wallet.objects.get(pk="wal_combined_1").customer_id == customer.pk


def test_a_read_inside_sees_the_writes_held_before_it(wallets):
    first = wallets[0]
    first.balance = Decimal(9)
    with writes_combined():
        rows_update(Wallet, [first], ["balance"])
        assert Wallet.objects.get(pk=first.pk).balance == Decimal(9)
        first.balance = Decimal(10)
        rows_update(Wallet, [first], ["balance"])
    assert Wallet.objects.get(pk=first.pk).balance == Decimal(10)


def test_a_rolled_back_savepoint_takes_its_held_writes_with_it(wallets):
    first, second = wallets[:2]
    first.balance, second.balance = Decimal(1), Decimal(2)
    with writes_combined():
        rows_update(Wallet, [first], ["balance"])
        try:
            with transaction.atomic():
                rows_update(Wallet, [second], ["balance"])
                raise LookupError("refused")
        except LookupError:
            pass
    assert _balances() == {first.pk: Decimal(1), second.pk: 0, wallets[2].pk: 0}


def test_a_python_error_leaving_the_block_still_writes_what_ran_before_it(wallets):
    first = wallets[0]
    first.balance = Decimal(3)
    with pytest.raises(LookupError):
        with writes_combined():
            rows_update(Wallet, [first], ["balance"])
            raise LookupError("after the write")
    assert Wallet.objects.get(pk=first.pk).balance == Decimal(3)


def test_a_database_error_of_a_held_write_is_raised_as_djangos(wallets):
    first = wallets[0]
    twin = Wallet(merchant_id=first.merchant_id, customer_id=first.customer_id, currency="USD")
    twin.id, twin.created_at, twin.updated_at = "wal_dup_1", first.created_at, first.updated_at
    with pytest.raises(IntegrityError), transaction.atomic():
        with writes_combined():
            # a second USD wallet of the same customer: the unique constraint refuses it
            rows_insert(Wallet, *_row_of(twin))
    assert not Wallet.objects.filter(pk="wal_dup_1").exists()
    assert len(_balances()) == 3

"""The tables every real-time debit writes keep the indexes their reads and constraints need, and only
those (wallets migration 0005, wallets/README.md "Indexes of the debit path")."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from invoicing.models import RealtimeUsageCounter
from wallets.models import CreditLot, EntryKind, LedgerAllocation, LedgerEntry, PeriodDebitTotal, Wallet
from wallets.services import credit_grant

pytestmark = pytest.mark.django_db

DEBIT_PATH = (Wallet, CreditLot, LedgerEntry, LedgerAllocation, PeriodDebitTotal)


def _database_constraints(model) -> dict:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, model._meta.db_table)


@pytest.mark.parametrize("app_label", ["catalog", "metering", "wallets", "invoicing", "reporting"])
def test_every_declared_constraint_and_index_exists_in_the_database(app_label):
    missing = []
    for model in apps.get_app_config(app_label).get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        present = _database_constraints(model)
        for declared in [*model._meta.constraints, *model._meta.indexes]:
            if declared.name not in present:
                missing.append(f"{model._meta.db_table}.{declared.name}")
    assert missing == []


@pytest.mark.postgres_only
@pytest.mark.parametrize("model", DEBIT_PATH, ids=lambda m: m.__name__)
def test_debit_path_tables_have_no_pattern_ops_twins(model):
    # LIKE 'prefix%' indexes that no query uses, each maintained on every insert
    twins = [name for name in _database_constraints(model) if name.endswith("_like")]
    assert twins == []


def test_a_lot_still_expires_once(customer, now):
    # the partial unique index that altering LedgerEntry.lot dropped is there again
    credit_grant(customer=customer, currency="USD", amount=Decimal(5), idempotency_key="g", now=now)
    lot = CreditLot.objects.get(wallet__customer=customer)
    wallet = lot.wallet
    LedgerEntry.objects.create(
        wallet=wallet, sequence=90, kind=EntryKind.EXPIRY, amount=0, balance_after=0, lot=lot, occurred_at=now
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            wallet=wallet, sequence=91, kind=EntryKind.EXPIRY, amount=0, balance_after=0, lot=lot, occurred_at=now
        )


# The columns every debit rewrites. An index naming one of them makes each debit's update non-HOT: a
# new entry in every index of the table, and dead ones piling up until a vacuum.
REWRITTEN_BY_EVERY_DEBIT = {
    Wallet: ["balance", "last_sequence", "overage_outstanding", "updated_at"],
    CreditLot: ["remaining"],
    PeriodDebitTotal: ["debited", "overage", "entries"],
    RealtimeUsageCounter: ["usage", "combinations", "definition", "updated_at"],
}


@pytest.mark.parametrize("model", REWRITTEN_BY_EVERY_DEBIT, ids=lambda m: m.__name__)
def test_no_index_names_a_column_every_debit_rewrites(model):
    rewritten = {model._meta.get_field(name).column for name in REWRITTEN_BY_EVERY_DEBIT[model]}
    offending = {
        name: info["columns"]
        for name, info in _database_constraints(model).items()
        if (info["index"] or info["unique"]) and rewritten & set(info["columns"] or ())
    }
    assert offending == {}

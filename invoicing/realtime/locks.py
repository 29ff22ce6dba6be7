"""The wallet lock of a real-time request: every customer's wallets of the request, in one statement."""

from __future__ import annotations

from django.db import connection

from catalog.models import Customer
from core.db import any_of, instances_select
from wallets.models import Wallet
from wallets.services import wallet_lock


def wallets_lock_all(keys: dict[tuple[str, str], Customer]) -> dict[tuple[str, str], Wallet]:
    """Lock (creating when missing) the wallets of ``keys`` in (customer, currency) order: one query for
    the existing ones (hand-written); ``wallet_lock`` creates the few missing. The locked rows are handed to
    ``usage_debit`` so it does not select them again."""
    customer_ids = sorted({customer_id for customer_id, _ in keys})
    currencies = sorted({currency for _, currency in keys})
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    of_customers, customer_params = any_of("w.customer_id", customer_ids)
    of_currencies, currency_params = any_of("w.currency", currencies)
    rows = instances_select(
        f"SELECT {{columns}} FROM {Wallet._meta.db_table} w WHERE {of_customers} AND {of_currencies}"
        f" ORDER BY w.customer_id, w.currency{lock}",
        [*customer_params, *currency_params],
        ((Wallet, "w"),),
        prepared=True,
    )
    found = {(wallet.customer_id, wallet.currency): wallet for (wallet,) in rows}
    for key in sorted(keys):
        if key not in found:
            found[key] = wallet_lock(customer=keys[key], currency=key[1])
    return found

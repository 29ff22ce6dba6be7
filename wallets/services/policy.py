"""What happens when a wallet's credit runs out: the policy a merchant sets (``wallet_policy_update``)
and the one debit decision that applies it (``debit_decision``), for the single and the bulk debit.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.db import transaction

from catalog.models import Customer

from ..errors import InvalidAmount
from ..models import BalancePolicy, Wallet
from .ledger import ZERO, ledger_amount, open_lots, wallet_for_update, wallet_save

# No policy configured = never refuse usage: what the credit does not cover is overage, billed on the
# next invoice. A merchant opts a customer into blocking explicitly.
DEFAULT_POLICY = BalancePolicy.ALLOW_OVERAGE


class DebitDecision(NamedTuple):
    """How a positive usage cost is paid (``debit_decision``).

    ``refused``: the block policy refuses it and nothing is written (every part is then 0). Otherwise
    ``from_credit + overage == amount``: ``from_credit`` is taken from the spendable lots (with the
    automatic top-up's lot when there is one), ``overage`` is what the credit does not cover, billed on
    the next invoice. ``auto_top_up``: the paid credit to add just before the debit (0 for none)."""

    from_credit: Decimal
    overage: Decimal
    refused: bool
    auto_top_up: Decimal


def debit_decision(
    amount: Decimal,
    *,
    balance: Decimal,
    spendable: Decimal,
    policy: str,
    overage_allowed: bool = False,
    auto_top_up_armed: bool = False,
    auto_top_up_threshold: Decimal | None = None,
    auto_top_up_amount: Decimal | None = None,
) -> DebitDecision:
    """The debit rule, for a usage cost ``amount`` > 0 (README "Policies when the credit runs out"). Pure:
    it reads no row and writes none; the caller consumes ``from_credit`` from the lots in consumption
    order and records the rest.

    ``balance``: the wallet's balance before the debit; ``spendable``: the credit left on the lots that
    may pay for this debit now (not expired; reserved capacity only for its metrics); ``policy``: the
    wallet's policy (``DEFAULT_POLICY`` when it has no wallet yet); ``overage_allowed``: the usage was
    already delivered and cannot be refused, so under ``block`` too the uncovered part is overage; the
    automatic top-up settings: the wallet's (only read under ``auto_top_up``).

    * ``block``: refused when ``amount`` exceeds ``spendable`` (unless ``overage_allowed``);
    * ``allow_overage``: the credit pays what it can, the rest is overage;
    * ``auto_top_up`` (threshold and amount configured): when the debit takes the balance under the
      threshold while armed, or the credit cannot cover it, a top-up of max(configured amount, what the
      credit lacks) first; the debit is then paid from credit in full.
    """
    if policy == BalancePolicy.AUTO_TOP_UP and auto_top_up_amount and auto_top_up_threshold is not None:
        if (auto_top_up_armed and balance - amount < auto_top_up_threshold) or amount > spendable:
            # The top-up covers at least what the credit lacks: the debit is paid from credit in full.
            return DebitDecision(amount, ZERO, False, max(auto_top_up_amount, amount - spendable))
    if amount <= spendable:
        return DebitDecision(amount, ZERO, False, ZERO)
    if policy == BalancePolicy.BLOCK and not overage_allowed:
        return DebitDecision(ZERO, ZERO, True, ZERO)
    return DebitDecision(spendable, amount - spendable, False, ZERO)


def wallet_policy_update(
    *,
    customer: Customer,
    currency: str,
    policy: str,
    now: datetime,
    low_balance_threshold: Decimal | None = None,
    auto_top_up_threshold: Decimal | None = None,
    auto_top_up_amount: Decimal | None = None,
) -> Wallet:
    """Set what happens when the customer's credit in ``currency`` runs out, and the low-balance
    threshold. Only these fields are written (never the cached balance)."""
    if policy not in BalancePolicy.values:
        raise InvalidAmount(f"Unknown balance policy {policy!r}.")
    values = [
        None if v is None else ledger_amount(v)
        for v in (low_balance_threshold, auto_top_up_threshold, auto_top_up_amount)
    ]
    low_balance_threshold, auto_top_up_threshold, auto_top_up_amount = values
    if policy == BalancePolicy.AUTO_TOP_UP and (auto_top_up_threshold is None or not auto_top_up_amount):
        raise InvalidAmount("Automatic top-up needs a threshold and a top-up amount.")
    if auto_top_up_amount is not None and auto_top_up_amount <= 0:
        raise InvalidAmount("The top-up amount must be greater than zero.")
    with transaction.atomic():
        wallet = wallet_for_update(customer=customer, currency=currency, create=True)
        wallet.policy = policy
        wallet.low_balance_threshold = low_balance_threshold
        wallet.auto_top_up_threshold = auto_top_up_threshold
        wallet.auto_top_up_amount = auto_top_up_amount
        wallet.save(update_fields=["policy", "low_balance_threshold", "auto_top_up_threshold", "auto_top_up_amount"])
        wallet_save(wallet, open_lots(wallet), now=now)
    return wallet

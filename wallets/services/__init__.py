"""Writes of the prepaid ledger. Every service is one transaction that locks the wallet row
(``select_for_update``), appends ledger entries, moves credit between lots and refreshes the wallet's
cached totals before it commits. None is ``durable``: invoicing calls them inside its own
transaction (ingest + debit, invoice + top-up) so both commit or neither does.

Amounts are Decimals kept to 12 decimal places (the ledger's scale); floats are refused.

One module per domain verb (wallets/README.md, "Package layout"): ``ledger`` (the primitives the others
share), ``credit``, ``purchases`` (credit sold on an invoice), ``debits``, ``settlement``, ``policy`` (with the one debit decision) and
``commitments``. The names below are the package's API: callers import them from ``wallets.services``.
"""

from .commitments import (
    CommitmentTrueUp,
    CommittedRate,
    commitment_create,
    commitment_true_up_due,
    commitment_true_up_mark_billed,
)
from .credit import (
    CreditResult,
    IdempotencyConflict,
    credit_expire_due,
    credit_grant,
    credit_refund,
    credit_top_up,
    reserved_capacity_purchase,
)
from .debits import AUTO_TOP_UP_EVENT, DebitOutcome, UsageDebitRequest, usage_debit, usage_debits, wallet_lock
from .ledger import (
    LOW_BALANCE_EVENT,
    ZERO,
    consumption_order,
    ledger_amount,
    period_debit_totals_add,
)
from .policy import DEFAULT_POLICY, DebitDecision, debit_decision, wallet_policy_update
from .purchases import (
    credit_purchase_check,
    credit_purchase_find,
    credit_purchase_fulfil,
    credit_purchase_record,
    credit_purchase_reinvoice,
    credit_purchase_replay,
)
from .settlement import SettlementOutcome, invoice_settlement_record

__all__ = [
    # ledger
    "ZERO",
    "LOW_BALANCE_EVENT",
    "ledger_amount",
    "consumption_order",
    "period_debit_totals_add",
    # credit
    "IdempotencyConflict",
    "CreditResult",
    "credit_grant",
    "credit_top_up",
    "reserved_capacity_purchase",
    "credit_expire_due",
    "credit_refund",
    # purchases (invoiced credit)
    "credit_purchase_check",
    "credit_purchase_find",
    "credit_purchase_record",
    "credit_purchase_reinvoice",
    "credit_purchase_replay",
    "credit_purchase_fulfil",
    # debits
    "AUTO_TOP_UP_EVENT",
    "DebitOutcome",
    "UsageDebitRequest",
    "wallet_lock",
    "usage_debit",
    "usage_debits",
    # settlement
    "SettlementOutcome",
    "invoice_settlement_record",
    # policy
    "DEFAULT_POLICY",
    "DebitDecision",
    "debit_decision",
    "wallet_policy_update",
    # commitments
    "CommitmentTrueUp",
    "CommittedRate",
    "commitment_create",
    "commitment_true_up_due",
    "commitment_true_up_mark_billed",
]

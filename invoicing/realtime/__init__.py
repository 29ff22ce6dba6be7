"""Real-time billing: usage debited from the prepaid balance as each event is accepted (REALTIME.md).

One concern per module:

* ``lookup`` — the hot path's hand-written look-up of the real-time subscriptions a request names, with
  its per-process hint cache (what "real-time" means: ``catalog.models.SUBSCRIPTION_REAL_TIME_SQL``);
* ``windows`` — what of a period is debited: the current plan's part, its usage window, late periods,
  the prices debited;
* ``locks`` — the wallet lock of a request (all its customers' wallets, one statement);
* ``debit`` — the use case ``events_ingest_and_debit``: planning, ingestion and the debits;
* ``link`` — events linked to their customer later and their catch-up debits;
* ``outcome`` — what a request answers (``RealtimeOutcome``, ``Debit``, ``Refusal``, ``UsageBlocked``,
  ``SpendCapReached``).

The usage cost read lives in ``invoicing.selectors`` (``customer_usage_cost``); paid top-ups and
commitment shortfalls, which are not real-time, in ``invoicing.one_off_invoices``.
"""

from .debit import events_ingest_and_debit
from .link import LinkOutcome, events_link_and_debit
from .lookup import realtime_subscriptions_named
from .outcome import (
    INSUFFICIENT_BALANCE,
    SPEND_CAP_REACHED,
    USAGE_BLOCKED,
    Debit,
    RealtimeOutcome,
    Refusal,
    SpendCapReached,
    UsageBlocked,
)
from .windows import plan_segment, usage_window

__all__ = [
    "INSUFFICIENT_BALANCE",
    "SPEND_CAP_REACHED",
    "USAGE_BLOCKED",
    "Debit",
    "LinkOutcome",
    "RealtimeOutcome",
    "Refusal",
    "SpendCapReached",
    "UsageBlocked",
    "events_ingest_and_debit",
    "events_link_and_debit",
    "plan_segment",
    "realtime_subscriptions_named",
    "usage_window",
]

"""What a real-time request answers: the events stored, the debits written, the refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.formatting import decimal_string, iso_utc
from metering import services as metering

INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
USAGE_BLOCKED = "USAGE_BLOCKED"
SPEND_CAP_REACHED = "SPEND_CAP_REACHED"


@dataclass(frozen=True)
class Refusal:
    """Why an event was refused under the block policy (the 402 body's ``details``)."""

    currency: str
    available: Decimal
    required: Decimal

    code = INSUFFICIENT_BALANCE

    @property
    def message(self) -> str:
        return (
            f"Insufficient prepaid balance: this event costs {decimal_string(self.required)} {self.currency}, "
            f"{decimal_string(self.available)} {self.currency} is available. Top up the balance and resend it."
        )

    @property
    def details(self) -> dict:
        return {
            "available": decimal_string(self.available),
            "required": decimal_string(self.required),
            "currency": self.currency,
        }


@dataclass(frozen=True)
class UsageBlocked:
    """Why an event was refused because dunning blocked its customer's real-time subscription (an invoice
    unpaid after its final notice, ``Subscription.usage_blocked_since``): the 402 body's ``details``."""

    subscription_id: str
    since: datetime

    code = USAGE_BLOCKED

    @property
    def message(self) -> str:
        return (
            f"Usage of subscription {self.subscription_id} is blocked since {iso_utc(self.since)}: an invoice is "
            "unpaid after its final notice. Pay the overdue invoice and resend the event."
        )

    @property
    def details(self) -> dict:
        return {"subscriptionId": self.subscription_id, "blockedSince": iso_utc(self.since)}


@dataclass(frozen=True)
class SpendCapReached:
    """Why an event was refused because its customer's spend cap for the period is reached and refuses usage
    (``Customer.spend_blocked_since``, set by ``invoicing.spend``): the 402 body's ``details``."""

    customer_id: str
    since: datetime

    code = SPEND_CAP_REACHED

    @property
    def message(self) -> str:
        return (
            f"The spend cap of customer {self.customer_id} for the current period was reached at "
            f"{iso_utc(self.since)}: its usage is refused until the period ends or the cap is lifted."
        )

    @property
    def details(self) -> dict:
        return {"customerId": self.customer_id, "blockedSince": iso_utc(self.since)}


@dataclass(frozen=True)
class Debit:
    """One ``usage_debit`` written for a (subscription, price, period) and the events it paid for."""

    customer_id: str
    subscription_id: str
    price_id: str
    metric_id: str
    period_start: datetime
    period_end: datetime
    usage_before: Decimal
    usage_after: Decimal
    amount: Decimal
    covered_by_credit: Decimal
    overage: Decimal
    balance_after: Decimal
    auto_top_up: bool
    event_ids: tuple[int, ...]


@dataclass
class RealtimeOutcome:
    """Metering's per-item results (refused items turned into ``rejected`` with a balance or block error),
    the events stored, the debits written, and events not debited because their period's invoice
    was already issued (``late_event_ids``: billed as late usage by an adjustment invoice)."""

    results: list[metering.EventResult]
    accepted: list[metering.AcceptedEvent]
    debits: list[Debit] = field(default_factory=list)
    refusals: dict[int, Refusal | UsageBlocked | SpendCapReached] = field(default_factory=dict)
    late_event_ids: list[int] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {metering.ACCEPTED: 0, metering.DUPLICATE: 0, metering.REJECTED: 0}
        for result in self.results:
            counts[result.status] += 1
        return counts

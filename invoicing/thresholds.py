"""Threshold (progressive) billing, the reads (invoicing/THRESHOLDS.md): when the next threshold invoice of a
period is due, and what the period's threshold invoices already billed, per charge, as the lines that take it
off the next invoice of the period (a threshold invoice or the recurring one). The writes are
``services.thresholds``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from catalog.models import Price, Subscription
from catalog.pricing.currency import CTX, format_money

from .calculation import LineDraft
from .models import InvoiceKind, InvoiceLine, InvoiceStatus, LineKind

ZERO = Decimal(0)


def next_threshold(*, amounts: tuple[Decimal, ...], recurring: bool, billed: Decimal) -> Decimal | None:
    """The accrued usage at which the next threshold invoice is due, given the thresholds (increasing) and what
    the period's threshold invoices already billed: the first threshold above ``billed``; past the last, when
    recurring, every further last step (the last threshold minus the one before it, or the threshold itself
    when it is the only one): $100 recurring, billed $120 → $200; ladder $100, $500 recurring, billed $520 →
    $900; otherwise none."""
    for amount in amounts:
        if amount > billed:
            return amount
    if not recurring:
        return None
    last = amounts[-1]
    step = CTX.subtract(last, amounts[-2]) if len(amounts) > 1 else last
    steps = CTX.add(CTX.divide_int(CTX.subtract(billed, last), step), 1)
    return CTX.add(last, CTX.multiply(steps, step))


@dataclass
class ThresholdBilled:
    """What the non-void threshold invoices of one subscription period billed, per price."""

    numbers: list[str] = field(default_factory=list)
    by_price: dict[str, Decimal] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    last_sequence: int = 0  # voided ones included: a sequence number is never given twice

    @property
    def total(self) -> Decimal:
        total = ZERO
        for amount in self.by_price.values():
            total = CTX.add(total, amount)
        return total

    def lines(self) -> list[LineDraft]:
        """One line per charge: "Already billed on threshold invoice INV-…" for minus what was billed."""
        if not self.numbers:
            return []
        label = "invoice" if len(self.numbers) == 1 else "invoices"
        numbers = ", ".join(self.numbers)
        return [
            LineDraft(
                kind=LineKind.THRESHOLD_BILLED,
                description=f"{price.invoice_display_name}: already billed on threshold {label} {numbers}",
                amount=-amount,
                price=price,
                explanation={
                    "text": f"{format_money(amount, price.currency)} billed on threshold {label} {numbers}",
                    "thresholdInvoices": list(self.numbers),
                },
            )
            for price_id, amount in self.by_price.items()
            if amount
            for price in [self.prices[price_id]]
        ]


def threshold_billed(*, subscription_id: str, period_start: datetime) -> ThresholdBilled:
    """What the threshold invoices of the subscription's period starting at ``period_start`` billed (one
    query): per price, their usage lines plus their own "already billed" lines, i.e. each invoice's net."""
    billed = ThresholdBilled()
    rows = (
        InvoiceLine.objects.filter(
            invoice__subscription_id=subscription_id,
            invoice__kind=InvoiceKind.THRESHOLD,
            invoice__period_start=period_start,
        )
        .filter(kind__in=(LineKind.USAGE, LineKind.THRESHOLD_BILLED))
        .select_related("invoice", "price")
        .order_by("invoice__threshold_sequence", "position")
    )
    by_price: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        invoice = row.invoice
        billed.last_sequence = max(billed.last_sequence, invoice.threshold_sequence or 0)
        if invoice.status == InvoiceStatus.VOID:
            continue
        if invoice.number and invoice.number not in billed.numbers:
            billed.numbers.append(invoice.number)
        if row.price_id is not None:
            by_price[row.price_id] = CTX.add(by_price[row.price_id], row.amount)
            billed.prices[row.price_id] = row.price
    billed.by_price = dict(by_price)
    return billed


def threshold_billed_lines(*, subscription: Subscription, period_start: datetime) -> list[LineDraft]:
    """The "already billed" lines of the invoice closing the period (none without a threshold: no query)."""
    if subscription.effective_threshold is None:
        return []
    return threshold_billed(subscription_id=subscription.pk, period_start=period_start).lines()


__all__ = ["ThresholdBilled", "next_threshold", "threshold_billed", "threshold_billed_lines"]

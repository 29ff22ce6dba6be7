"""Committed-spend contracts: record a minimum spend over a term, true it up once the term has ended, and
mark the true-up billed. A true-up is billed by invoice and never moves prepaid credit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from catalog.models import Customer

from ..errors import InvalidAmount
from ..models import Commitment
from ..selectors import commitment_drawn
from .ledger import ZERO, ledger_amount


@dataclass(frozen=True)
class CommitmentTrueUp:
    """A commitment at the end of its term: ``shortfall`` (≥ 0) is what invoicing bills."""

    commitment: Commitment
    committed: Decimal
    drawn: Decimal
    shortfall: Decimal


def commitment_create(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    term_start: datetime,
    term_end: datetime,
    metric_ids: Sequence[str] = (),
    description: str = "",
) -> Commitment:
    """A minimum spend of ``amount`` over [term_start, term_end) on ``metric_ids`` (all when empty)."""
    amount = ledger_amount(amount)
    if amount <= 0:
        raise InvalidAmount("The committed amount must be greater than zero.")
    if term_end <= term_start:
        raise InvalidAmount("The term must end after it starts.")
    commitment = Commitment(
        merchant_id=customer.merchant_id,
        customer=customer,
        currency=currency,
        amount=amount,
        term_start=term_start,
        term_end=term_end,
        metric_ids=sorted(set(metric_ids)),
        description=description,
    )
    commitment.full_clean()
    commitment.save()
    return commitment


def commitment_true_up_due(*, now: datetime) -> list[CommitmentTrueUp]:
    """True up every commitment whose term has ended: drawn = usage debited in the term (its metrics),
    shortfall = max(0, committed − drawn), recorded on the commitment exactly once (locked and
    guarded by ``trued_up_at``). Returns the true-ups recorded now; invoicing bills each shortfall
    (and may list unbilled ones with ``selectors.commitment_true_ups_unbilled``)."""
    results: list[CommitmentTrueUp] = []
    due = Commitment.objects.filter(trued_up_at__isnull=True, term_end__lte=now).order_by("term_end", "id")
    for commitment_id in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            commitment = Commitment.objects.select_for_update().get(pk=commitment_id)
            if commitment.trued_up_at is not None:
                continue
            drawn = commitment_drawn(commitment=commitment)
            commitment.drawn_amount = drawn
            commitment.shortfall = max(ZERO, commitment.amount - drawn)
            commitment.trued_up_at = now
            commitment.save(update_fields=["drawn_amount", "shortfall", "trued_up_at"])
        results.append(CommitmentTrueUp(commitment, commitment.amount, drawn, commitment.shortfall))
    return results


def commitment_true_up_mark_billed(*, commitment: Commitment, invoice_ref: str) -> bool:
    """Invoicing: the shortfall of ``commitment`` is on ``invoice_ref``. False when already marked."""
    return bool(
        Commitment.objects.filter(pk=commitment.pk, trued_up_at__isnull=False, billed_invoice_ref="").update(
            billed_invoice_ref=invoice_ref
        )
    )

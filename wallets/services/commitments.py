"""Committed-spend contracts: record a minimum spend over a term (optionally with the lower rates it buys,
written as negotiated rates windowed on the term), true it up once the term has ended, and mark the true-up
billed. A true-up is billed by invoice and never moves prepaid credit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog.models import Customer, PaymentTerm, Price, PriceModel
from catalog.services import negotiated_rate_create
from core.formatting import decimal_string
from core.idempotency import request_fingerprint

from ..errors import CommittedRateRefused, InvalidAmount
from ..models import Commitment, CommitmentRate
from ..selectors import commitment_drawn
from .credit import IdempotencyConflict
from .ledger import ZERO, ledger_amount


@dataclass(frozen=True)
class CommitmentTrueUp:
    """A commitment at the end of its term: ``shortfall`` (≥ 0) is what invoicing bills."""

    commitment: Commitment
    committed: Decimal
    drawn: Decimal
    shortfall: Decimal


@dataclass(frozen=True)
class CommittedRate:
    """A lower ``unit_price`` (per unit, as stored) for ``plan_price`` while the commitment runs."""

    plan_price: Price
    unit_price: Decimal


@transaction.atomic
def commitment_create(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    term_start: datetime,
    term_end: datetime,
    metric_ids: Sequence[str] = (),
    description: str = "",
    rates: Sequence[CommittedRate] = (),
    idempotency_key: str | None = None,
) -> tuple[Commitment, bool]:
    """A minimum spend of ``amount`` over [term_start, term_end) on ``metric_ids`` (all when empty), and the
    lower ``rates`` it buys: each the customer's negotiated rate over its plan price for the billing periods
    that start in the term (``CommitmentRate``), written in the same transaction. A rate that is not a per-unit
    or per-package in-arrears plan price of the customer's merchant in ``currency``, or whose window overlaps
    another of the customer's rates over that price, is refused (``InvalidAmount``) and nothing is written.

    Returns the commitment and whether it replays ``idempotency_key``: a key already used for this customer
    with the same request returns the first commitment (nothing written), with another request raises
    ``IdempotencyConflict``. Without a key every call creates a commitment."""
    amount = ledger_amount(amount)
    if amount <= 0:
        raise InvalidAmount("The committed amount must be greater than zero.")
    if term_end <= term_start:
        raise InvalidAmount("The term must end after it starts.")
    metric_ids = sorted(set(metric_ids))
    idempotency_key = idempotency_key or None
    fingerprint = _fingerprint(currency, amount, term_start, term_end, metric_ids, description, rates)
    existing = _replay(customer, idempotency_key, fingerprint)
    if existing is not None:
        return existing, True
    commitment = Commitment(
        merchant_id=customer.merchant_id,
        customer=customer,
        currency=currency,
        amount=amount,
        term_start=term_start,
        term_end=term_end,
        metric_ids=metric_ids,
        description=description,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )
    # The key's uniqueness is left to the constraint at the insert (a look-up here would race).
    commitment.full_clean(exclude=["idempotency_key"])
    try:
        with transaction.atomic():
            commitment.save(force_insert=True)
    except IntegrityError:
        # A concurrent request with the same key committed first: its commitment is the answer.
        existing = _replay(customer, idempotency_key, fingerprint)
        if existing is None:
            raise
        return existing, True
    for number, committed in enumerate(rates, start=1):
        _committed_rate_check(committed, commitment, number)
        try:
            rate = negotiated_rate_create(
                plan_price=committed.plan_price,
                customer=customer,
                unit_price=committed.unit_price,
                effective_from=term_start,
                effective_until=term_end,
            )
        except ValidationError as error:
            raise CommittedRateRefused(number, " ".join(error.messages)) from None
        CommitmentRate.objects.create(commitment=commitment, price=rate)
    return commitment, False


def _fingerprint(
    currency: str,
    amount: Decimal,
    term_start: datetime,
    term_end: datetime,
    metric_ids: Sequence[str],
    description: str,
    rates: Sequence[CommittedRate],
) -> str:
    canonical = {
        "currency": currency,
        "amount": decimal_string(amount),
        "termStart": term_start.astimezone(UTC).isoformat(),
        "termEnd": term_end.astimezone(UTC).isoformat(),
        "metricIds": list(metric_ids),
        "description": description,
        # In the order given: rate N is named by its position in a refusal, so the order is part of the request.
        "rates": [[r.plan_price.pk, decimal_string(r.unit_price)] for r in rates],
    }
    return request_fingerprint(canonical)


def _replay(customer: Customer, key: str | None, fingerprint: str) -> Commitment | None:
    if key is None:
        return None
    existing = Commitment.objects.filter(customer=customer, idempotency_key=key).first()
    if existing is not None and existing.fingerprint != fingerprint:
        raise IdempotencyConflict("This idempotency key was used for another commitment of this customer.")
    return existing


def _committed_rate_check(committed: CommittedRate, commitment: Commitment, number: int) -> None:
    price = committed.plan_price
    if price.customer_id is not None or price.plan_id is None or price.merchant_id != commitment.merchant_id:
        raise CommittedRateRefused(number, "a committed rate replaces a plan price of the customer's merchant.")
    if price.model not in (PriceModel.STANDARD, PriceModel.PACKAGE) or price.payment_term == PaymentTerm.IN_ADVANCE:
        raise CommittedRateRefused(number, "only a per-unit or per-package in-arrears price takes a committed rate.")
    if price.plan.currency != commitment.currency:
        raise CommittedRateRefused(
            number, f"the plan bills in {price.plan.currency}, the commitment in {commitment.currency}."
        )
    if committed.unit_price < 0:
        raise CommittedRateRefused(number, "a committed rate is not negative.")


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

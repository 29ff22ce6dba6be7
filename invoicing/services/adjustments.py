"""Subscription adjustments: create, list (a selector in ``invoicing.selectors``) and delete, as the client
``paygentic-sdk`` documents ``/v0/subscriptions/{id}/adjustments``.

- Create validates every number as the client states it (plain decimal strings, at most 6 places, fewer than
  35 digits before the point; a rate in (0, 1]) and the target price (none for a percentageDiscount, exactly
  one price of the subscription's plan for the others; a usageDiscount needs a metered standard or volume
  price with a non-negative rate; a quantity bound refuses a one-off price). The same ``idempotencyKey``
  against the same subscription returns the first adjustment; another body under that key is an
  ``AdjustmentConflict`` (409 ``IDEMPOTENCY_KEY_REUSED``); the partial unique constraint decides races.
- Delete removes an adjustment no issued invoice was billed under (204), else retracts it: ``effective_to``
  moves to the end of the last issued period it applied to (200, and the same 200 when repeated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from catalog.models import Price, PriceModel, Subscription
from catalog.selectors import subscription_prices
from core.formatting import decimal_string
from core.idempotency import request_fingerprint

from ..models import (
    ADJUSTMENT_QUANTITY_MAX,
    AdjustmentType,
    InvoiceError,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    SubscriptionAdjustment,
)

_PLAIN = re.compile(r"^[0-9]{1,35}(\.[0-9]{1,6})?$")
_NUMBER_FIELD = {
    AdjustmentType.PERCENTAGE_DISCOUNT: "percentageDiscount",
    AdjustmentType.USAGE_DISCOUNT: "usageDiscount",
    AdjustmentType.MINIMUM_QUANTITY: "minimumQuantity",
    AdjustmentType.MAXIMUM_QUANTITY: "maximumQuantity",
}


_NUMBER_ATTR = {
    AdjustmentType.PERCENTAGE_DISCOUNT: "percentage_discount",
    AdjustmentType.USAGE_DISCOUNT: "usage_discount",
    AdjustmentType.MINIMUM_QUANTITY: "minimum_quantity",
    AdjustmentType.MAXIMUM_QUANTITY: "maximum_quantity",
}


class AdjustmentError(InvoiceError):
    """Bad input for an adjustment; ``field`` is the wire field to blame (a 400)."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


class AdjustmentConflict(InvoiceError):
    """An adjustment refused by the current state (a reused idempotency key): a 409."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AdjustmentInput:
    type: str
    number: str
    effective_from: datetime
    target_price_ids: tuple[str, ...] = ()
    effective_to: datetime | None = None
    description: str | None = None
    idempotency_key: str | None = None


def adjustment_number_parse(value: str, *, field: str) -> Decimal:
    """A plain decimal string (no sign, exponent or separators), at most 6 places and 35 integer digits."""
    if not isinstance(value, str) or not _PLAIN.match(value):
        raise AdjustmentError(
            "Must be a plain decimal string: digits, at most 6 decimal places, fewer than 35 digits before the point.",
            field=field,
        )
    number = Decimal(value)
    if number > ADJUSTMENT_QUANTITY_MAX:
        raise AdjustmentError("Must have fewer than 35 digits before the point.", field=field)
    return number


def _check_number(kind: str, number: Decimal, field: str) -> None:
    if kind == AdjustmentType.PERCENTAGE_DISCOUNT and not Decimal(0) < number <= 1:
        raise AdjustmentError('Must be a fraction above 0 and at most 1 ("0.35" is 35 percent).', field=field)
    if kind == AdjustmentType.USAGE_DISCOUNT and number <= 0:
        raise AdjustmentError("Must be greater than 0.", field=field)


def _utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise AdjustmentError("Must carry a time zone (an offset or Z).", field=field)
    return value.astimezone(UTC)


def _target(subscription: Subscription, data: AdjustmentInput) -> Price | None:
    ids = list(data.target_price_ids)
    if data.type == AdjustmentType.PERCENTAGE_DISCOUNT:
        if ids:
            raise AdjustmentError(
                "A percentageDiscount reduces every discountable charge; send none.", field="targetPriceIds"
            )
        return None
    if len(ids) != 1:
        raise AdjustmentError("Give exactly one price of this subscription.", field="targetPriceIds")
    prices = subscription_prices(subscription)
    price = next((p for p in prices if ids[0] in (p.pk, p.overrides_id)), None)
    if price is None:
        raise AdjustmentError(f"{ids[0]} is not a price of this subscription.", field="targetPriceIds")
    if data.type == AdjustmentType.USAGE_DISCOUNT:
        if not price.billable_metric_id or price.model not in (PriceModel.STANDARD, PriceModel.VOLUME):
            raise AdjustmentError(
                "A usageDiscount targets a metered price priced as standard or volume.", field="targetPriceIds"
            )
        if price.unit_price is not None and price.unit_price < 0:
            raise AdjustmentError(
                "A price billing at a negative rate cannot take a usageDiscount.", field="targetPriceIds"
            )
    elif price.fee_id is not None and price.billing_cadence == "P0D":
        raise AdjustmentError("A price billed once has no period to bound.", field="targetPriceIds")
    # Stored against the plan price a negotiated rate overrides: the charge, whichever rate bills it.
    return price.overrides if price.overrides_id else price


def _fingerprint(subscription: Subscription, data: AdjustmentInput, number: Decimal) -> str:
    canonical = {
        "subscription": subscription.pk,
        "type": data.type,
        "number": decimal_string(number),
        "targets": sorted(data.target_price_ids),
        "from": data.effective_from.isoformat(),
        "to": data.effective_to.isoformat() if data.effective_to else None,
        "description": data.description,
    }
    return request_fingerprint(canonical)


def _replay(subscription: Subscription, key: str | None, fingerprint: str) -> SubscriptionAdjustment | None:
    if key is None:
        return None
    existing = SubscriptionAdjustment.objects.filter(subscription=subscription, idempotency_key=key).first()
    if existing is not None and existing.fingerprint != fingerprint:
        raise AdjustmentConflict(
            "This idempotency key was used for another adjustment on this subscription.", code="IDEMPOTENCY_KEY_REUSED"
        )
    return existing


def subscription_adjustment_create(
    *, subscription: Subscription, data: AdjustmentInput, now: datetime
) -> tuple[SubscriptionAdjustment, bool]:
    """Attach an adjustment to ``subscription``; returns it and whether it replays ``data.idempotency_key``."""
    if data.type not in AdjustmentType.values:
        raise AdjustmentError(f"Must be one of {', '.join(AdjustmentType.values)}.", field="type")
    field = _NUMBER_FIELD[data.type]
    number = adjustment_number_parse(data.number, field=field)
    _check_number(data.type, number, field)
    data = AdjustmentInput(
        type=data.type,
        number=data.number,
        effective_from=_utc(data.effective_from, "effectiveFrom"),
        target_price_ids=tuple(data.target_price_ids),
        effective_to=_utc(data.effective_to, "effectiveTo") if data.effective_to is not None else None,
        description=data.description,
        idempotency_key=data.idempotency_key or None,
    )
    if data.effective_to is not None and data.effective_to <= data.effective_from:
        raise AdjustmentError("Must be after effectiveFrom.", field="effectiveTo")
    if data.description is not None and len(data.description) > 500:
        raise AdjustmentError("At most 500 characters.", field="description")
    if data.idempotency_key is not None and len(data.idempotency_key) > 255:
        raise AdjustmentError("At most 255 characters.", field="idempotencyKey")
    fingerprint = _fingerprint(subscription, data, number)
    existing = _replay(subscription, data.idempotency_key, fingerprint)
    if existing is not None:
        return existing, True
    target = _target(subscription, data)
    adjustment = SubscriptionAdjustment(
        merchant_id=subscription.merchant_id,
        subscription=subscription,
        type=data.type,
        target_price=target,
        effective_from=data.effective_from,
        effective_to=data.effective_to,
        description=data.description,
        idempotency_key=data.idempotency_key,
        fingerprint=fingerprint,
        created_at=now,
    )
    setattr(adjustment, _NUMBER_ATTR[data.type], number)
    try:
        with transaction.atomic(durable=True):
            adjustment.save(force_insert=True)
    except IntegrityError:
        existing = _replay(subscription, data.idempotency_key, fingerprint)
        if existing is None:
            raise
        return existing, True
    return adjustment, False


def _billed_period_ends(adjustment: SubscriptionAdjustment) -> list:
    """The period ends of the issued (not void) invoices with a line this adjustment reached: the lines
    carry its id in their explanation (``subscriptionAdjustmentId`` on a discount line,
    ``subscriptionAdjustmentIds`` on a corrected usage line)."""
    lines = InvoiceLine.objects.filter(
        invoice__subscription_id=adjustment.subscription_id,
        invoice__period_end__gt=adjustment.effective_from,
        kind__in=(LineKind.DISCOUNT, LineKind.USAGE),
    ).exclude(invoice__status__in=(InvoiceStatus.DRAFT, InvoiceStatus.VOID))
    return [
        period_end
        for period_end, explanation in lines.values_list("invoice__period_end", "explanation")
        if explanation.get("subscriptionAdjustmentId") == adjustment.pk
        or adjustment.pk in explanation.get("subscriptionAdjustmentIds", ())
    ]


def subscription_adjustment_delete(*, adjustment: SubscriptionAdjustment) -> SubscriptionAdjustment | None:
    """Stop ``adjustment`` applying to any period not yet billed. Returns None when it was removed (no issued
    invoice applied it), else the retracted adjustment: ``effective_to`` is the end of the last issued
    period it reached. Issued invoices keep their numbers; a draft loses it when recalculated."""
    with transaction.atomic(durable=True):
        adjustment = SubscriptionAdjustment.objects.select_for_update().get(pk=adjustment.pk)
        ends = _billed_period_ends(adjustment)
        if not ends:
            adjustment.delete()
            return None
        last = max(ends)
        if adjustment.effective_to is None or adjustment.effective_to > last:
            adjustment.effective_to = last
            adjustment.save(update_fields=["effective_to"])
        return adjustment

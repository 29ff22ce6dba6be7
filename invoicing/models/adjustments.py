"""Subscription adjustments (the client's ``/v0/subscriptions/{id}/adjustments``): a dated deal term the
rating engine applies when a period is billed (invoicing/calculation.py ``AdjustmentTerms``).

Windows are read per type, exactly as the client documents them:

- ``percentageDiscount``: [effective_from, effective_to) — inclusive start, exclusive end — prorated by the
  days it overlaps the period's charge;
- ``usageDiscount``, ``minimumQuantity``, ``maximumQuantity``: applied, in full, to a line whose period END
  falls in (effective_from, effective_to] — exclusive start, inclusive end (a metered line bills in arrears).
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from catalog.models import Merchant, Price, Subscription
from core.ids import PublicIdField

# The client: "at most 6 decimal places, fewer than 35 digits before the point".
ADJUSTMENT_PLACES = 6
ADJUSTMENT_QUANTITY_MAX = Decimal(10) ** 35 - Decimal("0.000001")
ADJUSTMENT_QUANTITY_DIGITS = {"max_digits": 35 + ADJUSTMENT_PLACES, "decimal_places": ADJUSTMENT_PLACES}
# A rate is a decimal fraction: "0.35" is 35 %, "1" is 100 %.
ADJUSTMENT_RATE_DIGITS = {"max_digits": 7, "decimal_places": ADJUSTMENT_PLACES}


class AdjustmentType(models.TextChoices):
    PERCENTAGE_DISCOUNT = "percentageDiscount", "Percentage discount"
    USAGE_DISCOUNT = "usageDiscount", "Usage discount"
    MINIMUM_QUANTITY = "minimumQuantity", "Minimum quantity"
    MAXIMUM_QUANTITY = "maximumQuantity", "Maximum quantity"


class SubscriptionAdjustment(models.Model):
    """One adjustment on a subscription. Never updated except by a retracting delete, which moves
    ``effective_to`` back to the end of the last period it was billed on (``subscription_adjustment_delete``).

    ``idempotency_key`` is the caller's, unique per subscription (the client: "the same key against the same
    subscription returns the adjustment already created"); without one a retry creates a second row, as the
    client documents. ``fingerprint`` hashes the request body so that a replay with another body is a 409.
    """

    id = PublicIdField(prefix="sadj")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="adjustments")
    type = models.CharField(max_length=20, choices=AdjustmentType.choices)
    percentage_discount = models.DecimalField(**ADJUSTMENT_RATE_DIGITS, null=True, blank=True)
    usage_discount = models.DecimalField(**ADJUSTMENT_QUANTITY_DIGITS, null=True, blank=True)
    minimum_quantity = models.DecimalField(**ADJUSTMENT_QUANTITY_DIGITS, null=True, blank=True)
    maximum_quantity = models.DecimalField(**ADJUSTMENT_QUANTITY_DIGITS, null=True, blank=True)
    target_price = models.ForeignKey(Price, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=500, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["effective_from", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="subscription_adjustment_key_unique",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=models.F("effective_from")),
                name="subscription_adjustment_window",
            ),
            models.CheckConstraint(
                condition=(
                    Q(type="percentageDiscount", percentage_discount__gt=0, percentage_discount__lte=1)
                    & Q(target_price__isnull=True)
                )
                | (Q(type="usageDiscount", usage_discount__gt=0) & Q(target_price__isnull=False))
                | (Q(type="minimumQuantity", minimum_quantity__gte=0) & Q(target_price__isnull=False))
                | (Q(type="maximumQuantity", maximum_quantity__gte=0) & Q(target_price__isnull=False)),
                name="subscription_adjustment_number",
            ),
        ]
        indexes = [models.Index(fields=["subscription", "effective_from"])]

    def __str__(self) -> str:
        return f"{self.get_type_display()} on {self.subscription_id}"

    @property
    def number(self) -> Decimal:
        return {
            AdjustmentType.PERCENTAGE_DISCOUNT: self.percentage_discount,
            AdjustmentType.USAGE_DISCOUNT: self.usage_discount,
            AdjustmentType.MINIMUM_QUANTITY: self.minimum_quantity,
            AdjustmentType.MAXIMUM_QUANTITY: self.maximum_quantity,
        }[self.type]

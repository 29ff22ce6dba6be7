"""Writes of cost definitions: one transaction each, validated by the model before saving."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from catalog.models import Merchant, Product
from core.errors import Conflict

from .models import MAX_COSTS_PER_MERCHANT, Cost

COST_FIELDS = {"name", "unit_cost", "currency", "unit", "aggregation", "event_type", "value_property", "group_by"}


@transaction.atomic
def cost_create(*, merchant: Merchant, product: Product, **fields: Any) -> Cost:
    """Define a metered cost of ``product``; fields are Cost model fields (``type`` is always metered)."""
    unknown = set(fields) - COST_FIELDS
    if unknown:
        raise TypeError(f"Unknown cost fields: {sorted(unknown)}")
    # Lock the merchant row so two concurrent creations cannot both pass the count.
    Merchant.objects.select_for_update().filter(pk=merchant.pk).first()
    if Cost.objects.live().filter(merchant=merchant).count() >= MAX_COSTS_PER_MERCHANT:
        raise Conflict(
            f"A merchant may define at most {MAX_COSTS_PER_MERCHANT} costs; delete one first.",
            code="COST_LIMIT_REACHED",
        )
    fields["currency"] = fields.get("currency", "").upper()
    cost = Cost(merchant=merchant, product=product, **fields)
    cost.full_clean()
    cost.save()
    return cost


@transaction.atomic
def cost_update(*, cost: Cost, changes: dict[str, Any]) -> Cost:
    """Change a cost; its product and merchant are fixed. Reports read the new definition for every period."""
    for field, value in changes.items():
        if field not in COST_FIELDS:
            raise TypeError(f"Unknown cost field: {field}")
        setattr(cost, field, value.upper() if field == "currency" else value)
    cost.full_clean()
    cost.save()
    return cost


@transaction.atomic
def cost_delete(*, cost: Cost, now: datetime) -> Cost:
    """Retire a cost (soft delete): it stops counting in every report, and a get answers 404."""
    cost.deleted_at = now
    cost.save(update_fields=["deleted_at", "updated_at"])
    return cost

"""What serving a customer costs: a cost metered from the same usage events billing reads.

A ``Cost`` is defined like a billable metric (event type, aggregation, value property, dimensions)
plus a unit cost: over [start, end) its quantity is aggregated in SQL exactly as metering aggregates a
metric (``metering.selectors``), and its amount is quantity × ``unit_cost`` (e.g. 1,000 GPU-seconds ×
$0.0005 = $0.50). Deleting a cost is soft (``deleted_at``): past reports keep their meaning.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from catalog.models import RATE_DIGITS, Aggregation, Merchant, Product, TimeStamped
from catalog.validators import validate_currency_code, validate_json_path
from core.ids import PublicIdField

# Costs a merchant may define: profitability and the billing home run one query per cost.
MAX_COSTS_PER_MERCHANT = 50
MAX_DIMENSIONS = 5


class CostType(models.TextChoices):
    METERED = "metered", "Metered from usage events"


class CostQuerySet(models.QuerySet):
    def live(self) -> CostQuerySet:
        return self.filter(deleted_at__isnull=True)


class Cost(TimeStamped):
    id = PublicIdField(prefix="cost")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="costs")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="costs")
    type = models.CharField(max_length=16, choices=CostType.choices, default=CostType.METERED)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    unit_cost = models.DecimalField(**RATE_DIGITS, help_text="Cost of one unit of the aggregated quantity.")
    unit = models.CharField(max_length=50, blank=True, help_text="e.g. GPU-seconds.")
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    event_type = models.CharField(max_length=200, help_text="Usage events of this type are costed, e.g. gpu.job.")
    value_property = models.CharField(max_length=200, blank=True, validators=[validate_json_path])
    group_by = models.JSONField(default=dict, blank=True, help_text='Dimensions: {"gpu": "$.gpu"}.')
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = CostQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["merchant", "deleted_at"], name="cost_merchant_live")]
        constraints = [
            models.CheckConstraint(condition=models.Q(unit_cost__gte=0), name="cost_unit_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        needs_value = self.aggregation not in {Aggregation.COUNT, Aggregation.UNIQUE_COUNT}
        if needs_value and not self.value_property:
            errors["value_property"] = "This aggregation needs the event property that holds the value, e.g. $.seconds."
        if self.aggregation == Aggregation.COUNT and self.value_property:
            errors["value_property"] = "A count of events does not read a value; leave this empty."
        if self.product_id and self.merchant_id and self.product.merchant_id != self.merchant_id:
            errors["product"] = "The product belongs to another merchant."
        if not isinstance(self.group_by, dict):
            errors["group_by"] = 'Dimensions must be an object such as {"gpu": "$.gpu"}.'
        elif len(self.group_by) > MAX_DIMENSIONS:
            errors["group_by"] = f"At most {MAX_DIMENSIONS} dimensions."
        else:
            for dimension, path in self.group_by.items():
                if not isinstance(path, str) or not path.startswith("$."):
                    errors["group_by"] = f'Dimension "{dimension}" must point into the event data with $.path.'
                elif dimension == "subject":
                    errors["group_by"] = '"subject" is the customer; name the dimension otherwise.'
        if errors:
            raise ValidationError(errors)

"""Wire shapes of /v0/costs, /v0/profitability and /v0/revenue (paygentic-sdk 0.6.3 models)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from catalog import models as catalog_models
from catalog.api.fields import DecimalString, MerchantScopedId
from core.api.fields import QueryIdField, TextKeyDictField
from core.api.serializers import BlankAsNull, Constant, StrictSerializer, TypedSerializer

from ..models import MAX_DIMENSIONS, CostType

ZERO = Decimal("0")
AGGREGATIONS = catalog_models.Aggregation.choices


@extend_schema_field({"type": "string", "format": "date-time"})
class UtcDateTime(serializers.Field):
    """An ISO-8601 date-time read as UTC (no offset means UTC, whatever the admin's time zone)."""

    default_error_messages = {"invalid": "Enter an ISO-8601 date-time, e.g. 2025-01-01T00:00:00Z."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            parsed = datetime.fromisoformat(data.strip().replace(" ", "+"))  # an unencoded "+" arrives as a space
        except ValueError:
            self.fail("invalid")
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def to_representation(self, value):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Dimensions(TextKeyDictField):
    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(max_length=200), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > MAX_DIMENSIONS:
            raise serializers.ValidationError(f"At most {MAX_DIMENSIONS} dimensions.")
        if any(len(key) > 100 for key in value):
            raise serializers.ValidationError("A dimension name has at most 100 characters.")
        return value


class CostCreateInput(StrictSerializer):
    type = serializers.ChoiceField(choices=CostType.choices)
    name = serializers.CharField(max_length=200)
    unitCost = DecimalString(source="unit_cost", min_value=ZERO)
    currency = serializers.CharField(min_length=3, max_length=3)
    productId = MerchantScopedId(catalog_models.Product, source="product")
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS)
    eventType = serializers.CharField(source="event_type", max_length=200)
    unit = serializers.CharField(max_length=50, allow_blank=True, required=False)
    valueProperty = serializers.CharField(source="value_property", max_length=200, allow_blank=True, required=False)
    groupBy = Dimensions(source="group_by", required=False)
    merchantId = serializers.CharField(source="merchant_id", max_length=100, required=False)


class CostUpdateInput(StrictSerializer):
    """PATCH: an absent key leaves the field alone; ``null`` clears unit, valueProperty and groupBy."""

    name = serializers.CharField(max_length=200, required=False)
    unitCost = DecimalString(source="unit_cost", min_value=ZERO, required=False)
    currency = serializers.CharField(min_length=3, max_length=3, required=False)
    unit = serializers.CharField(max_length=50, allow_blank=True, allow_null=True, required=False)
    aggregation = serializers.ChoiceField(choices=AGGREGATIONS, required=False)
    eventType = serializers.CharField(source="event_type", max_length=200, required=False)
    valueProperty = serializers.CharField(
        source="value_property", max_length=200, allow_blank=True, allow_null=True, required=False
    )
    groupBy = Dimensions(source="group_by", allow_null=True, required=False)

    def validate(self, attrs):
        for field, empty in (("unit", ""), ("value_property", ""), ("group_by", {})):
            if field in attrs and attrs[field] is None:
                attrs[field] = empty
        return attrs


class CostOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("cost")
    type = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField()
    unitCost = DecimalString(source="unit_cost")
    productId = serializers.CharField(source="product_id")
    merchantId = serializers.CharField(source="merchant_id")
    unit = BlankAsNull()
    aggregation = serializers.CharField()
    eventType = serializers.CharField(source="event_type")
    valueProperty = BlankAsNull(source="value_property")
    groupBy = serializers.SerializerMethodField()
    createdAt = UtcDateTime(source="created_at")
    updatedAt = UtcDateTime(source="updated_at")
    deletedAt = UtcDateTime(source="deleted_at", allow_null=True)

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}, "nullable": True})
    def get_groupBy(self, cost):
        return cost.group_by or None


WINDOWS = [("MINUTE", "MINUTE"), ("HOUR", "HOUR"), ("DAY", "DAY")]


class CostSummaryQuery(TypedSerializer):
    to_ = UtcDateTime()
    subject = QueryIdField()
    groupBy = serializers.CharField(required=False)
    window = serializers.ChoiceField(choices=WINDOWS, required=False)
    filterGroupBy = serializers.CharField(max_length=2000, required=False)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = UtcDateTime()
        fields["to"] = fields.pop("to_")
        return fields


class ProfitabilityQuery(TypedSerializer):
    merchantId = serializers.CharField()
    topN = serializers.IntegerField(min_value=1, max_value=100, required=False, default=10)
    currency = serializers.CharField(min_length=3, max_length=3, required=False)
    excludeEmpty = serializers.BooleanField(required=False, default=False)
    includeEmpty = serializers.BooleanField(required=False, default=False)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = UtcDateTime()
        fields["to"] = UtcDateTime()
        return fields


# Output shapes of the reads (for the schema; the views build the same keys). Quantities and amounts are JSON
# numbers on the wire (the client's type), built exactly from Decimal by ``core.formatting.json_number``.
class JsonNumber(serializers.DecimalField):
    def __init__(self, **kwargs):
        super().__init__(max_digits=None, decimal_places=None, coerce_to_string=False, **kwargs)


class CostUsageGroupOutput(serializers.Serializer):
    dimensions = serializers.DictField(child=serializers.CharField())
    quantity = JsonNumber()
    cost = JsonNumber()


class CostUsageWindowOutput(serializers.Serializer):
    windowStart = UtcDateTime()
    windowEnd = UtcDateTime()
    quantity = JsonNumber()
    cost = JsonNumber()


class CostUsageOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("cost")
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=CostType.choices)
    currency = serializers.CharField()
    eventType = serializers.CharField()
    unit = serializers.CharField()
    totalQuantity = JsonNumber()
    totalCost = JsonNumber()
    groups = CostUsageGroupOutput(many=True, required=False)
    timeSeries = CostUsageWindowOutput(many=True, required=False)


class RangeOutput(serializers.Serializer):
    def get_fields(self):
        return {"from": UtcDateTime(), "to": UtcDateTime()}


class ProfitabilityRowOutput(serializers.Serializer):
    customerId = serializers.CharField()
    customerName = serializers.CharField()
    netRevenue = serializers.CharField()
    totalCost = serializers.CharField()
    profit = serializers.CharField()
    marginPct = serializers.CharField(allow_null=True)
    costData = serializers.ChoiceField(choices=[("recorded", "recorded"), ("partial", "partial"), ("none", "none")])


class ProfitabilityOutput(serializers.Serializer):
    object = Constant("profitability_summary")
    currency = serializers.CharField()
    rows = ProfitabilityRowOutput(many=True)
    customerCount = serializers.IntegerField()
    emptyCustomerCount = serializers.IntegerField(allow_null=True, required=False)
    unloadedCustomerCount = serializers.IntegerField(allow_null=True)
    emptyCustomers = ProfitabilityRowOutput(many=True, required=False)
    warnings = serializers.ListField(child=serializers.CharField())
    revenueRange = RangeOutput(allow_null=True)
    costRange = RangeOutput(allow_null=True)


def inline_report_output():
    """The cost report's shape (CostReportResponse) for the schema: the main keys, typed."""
    return inline_serializer(
        "CostReport",
        {
            "object": Constant("cost_report"),
            "currency": serializers.CharField(),
            "groupBy": serializers.CharField(),
            "totalCost": JsonNumber(),
            "totalQuantity": JsonNumber(),
            "groups": serializers.ListField(child=serializers.DictField()),
            "timeSeries": serializers.ListField(child=serializers.DictField()),
            "availableDimensions": serializers.ListField(child=serializers.CharField()),
            "pagination": serializers.DictField(),
            "groupCount": serializers.IntegerField(),
            "warnings": serializers.ListField(child=serializers.CharField()),
        },
    )

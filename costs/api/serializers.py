"""Wire shapes of /v0/costs, /v0/profitability and /v0/revenue (paygentic-sdk 0.6.3 models)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField

from catalog import models as catalog_models
from catalog.api.fields import DecimalString, MerchantScopedId, money_string
from catalog.pricing import is_known_currency
from catalog.pricing.currency import MINOR_UNITS
from core.api.fields import QueryIdField, TextKeyDictField
from core.api.serializers import BlankAsNull, Constant, PaginationOutput, StrictSerializer, TypedSerializer
from core.formatting import json_number

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


# A query's currency in the schema: the codes of the table (lower case is accepted too).
CURRENCY_QUERY_SCHEMA = {"type": "string", "enum": sorted(MINOR_UNITS)}


class CurrencyCode(serializers.RegexField):
    """A query's ``currency``: three letters of a currency in the table (another is a 400, not a crash when
    an amount is rounded to it); answered upper-case."""

    def __init__(self, **kwargs):
        super().__init__(r"^[A-Za-z]{3}$", **kwargs)

    def to_internal_value(self, data):
        code = super().to_internal_value(data).upper()
        if not is_known_currency(code):
            raise serializers.ValidationError(f"Unknown currency code {code} (ISO 4217).")
        return code


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
    currency = CurrencyCode(required=False)
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

    def to_representation(self, value):
        return json_number(value if isinstance(value, Decimal) else Decimal(value))


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
    unit = serializers.CharField(required=False, help_text="Absent when the cost defines no unit.")
    totalQuantity = JsonNumber()
    totalCost = JsonNumber()
    groups = CostUsageGroupOutput(many=True, required=False)
    timeSeries = CostUsageWindowOutput(many=True, required=False)


class RangeOutput(serializers.Serializer):
    def get_fields(self):
        return {"from": UtcDateTime(), "to": UtcDateTime()}


class AbsentOrNullRange(RangeOutput):
    """Absent, null and an object say three things (the client's revenueRange and costRange): a missing key stays missing
    (DRF would write null for a nullable field)."""

    def get_attribute(self, instance):
        if isinstance(instance, Mapping) and self.source not in instance:
            raise SkipField()
        return super().get_attribute(instance)


COST_RANGE_HELP = (
    "Present only when the period held no cost event: the first and last cost event instants (both included) "
    "under the same filters at any time, or null when there is none. Absent when the period held cost."
)
REVENUE_RANGE_HELP = (
    "Present only when the window holds no revenue: the first and last issue instants of the revenue under the "
    "same filters at any time, or null when there is none."
)


class ProfitabilityRowOutput(serializers.Serializer):
    customerId = serializers.CharField()
    customerName = serializers.CharField()
    netRevenue = serializers.CharField()
    totalCost = serializers.CharField()
    profit = serializers.CharField()
    marginPct = serializers.CharField(
        allow_null=True,
        help_text="Two places; null without positive revenue and unless costData is recorded.",
    )
    costData = serializers.ChoiceField(
        choices=[("recorded", "recorded"), ("partial", "partial"), ("none", "none")],
        help_text="recorded: a cost event was attributed to every customer the row covers; partial: to some "
        "(only the Other row); none: to none (no cost data, not a zero cost).",
    )


class ProfitabilityOutput(serializers.Serializer):
    """ProfitabilitySummaryResponse."""

    object = Constant("profitability_summary")
    currency = serializers.CharField()
    rows = ProfitabilityRowOutput(many=True)
    customerCount = serializers.IntegerField(help_text="Customers with revenue or cost in the period.")
    emptyCustomerCount = serializers.IntegerField(help_text="Customers with neither, whether or not excluded.")
    unloadedCustomerCount = serializers.IntegerField(allow_null=True, help_text="Always null: every cost read settles.")
    emptyCustomers = ProfitabilityRowOutput(
        many=True, required=False, help_text="With includeEmpty=true (and not excludeEmpty): up to topN, by name."
    )
    warnings = serializers.ListField(child=serializers.CharField())
    revenueRange = AbsentOrNullRange(allow_null=True, required=False, help_text=REVENUE_RANGE_HELP)
    costRange = AbsentOrNullRange(
        allow_null=True, required=False, help_text=COST_RANGE_HELP + " Only events attributed to a customer count."
    )


class PriorPeriodOutput(serializers.Serializer):
    cost = JsonNumber()
    changePercent = JsonNumber(allow_null=True)


class CostReportGroupOutput(serializers.Serializer):
    key = serializers.CharField(
        help_text="A cost, product or customer id, or a dimension value; __other__ folds the rest."
    )
    label = serializers.CharField()
    totalCost = JsonNumber()
    totalQuantity = JsonNumber()
    percentOfTotal = JsonNumber(help_text="This group's share of the total cost, 0–100, two places.")
    isOther = serializers.BooleanField()
    unit = serializers.CharField(allow_null=True)
    priorPeriod = PriorPeriodOutput(required=False, help_text="Present with comparePriorPeriod=true.")


class CostReportWindowOutput(serializers.Serializer):
    windowStart = UtcDateTime()
    windowEnd = UtcDateTime()
    groups = serializers.DictField(child=JsonNumber(), help_text="Cost per group key in this window.")


class CostReportOutput(serializers.Serializer):
    """CostReportResponse."""

    object = Constant("cost_report")
    currency = serializers.CharField()
    period = RangeOutput()
    groupBy = serializers.CharField(help_text="cost, product, customer or the dimension grouped by.")
    totalCost = JsonNumber()
    totalQuantity = JsonNumber()
    groups = CostReportGroupOutput(many=True)
    timeSeries = CostReportWindowOutput(many=True)
    availableDimensions = serializers.ListField(
        child=serializers.CharField(), help_text="The dimensions of the one cost filtered by costId, else empty."
    )
    pagination = PaginationOutput()
    groupCount = serializers.IntegerField()
    emptyGroupCount = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField())
    costRange = AbsentOrNullRange(allow_null=True, required=False, help_text=COST_RANGE_HELP)


# Revenue (RevenueSummaryResponse, RevenueAccountsResponse). The views build each body's keys from
# ``costs.revenue``'s figures and render it through these serializers, so the schema is the response.
class InvoiceCategoryOutput(serializers.Serializer):
    count = serializers.IntegerField()
    amount = serializers.CharField(help_text="A decimal string at the currency's minor unit.")


class InvoiceSummaryOutput(serializers.Serializer):
    issued = InvoiceCategoryOutput()
    outstanding = InvoiceCategoryOutput()
    paid = InvoiceCategoryOutput()
    writtenOff = InvoiceCategoryOutput(help_text="Always zero: Meterline writes nothing off.")


class PaymentSummaryOutput(serializers.Serializer):
    completedCount = serializers.IntegerField()
    completedAmount = serializers.CharField()
    pendingCount = serializers.IntegerField(help_text="Always zero (provider sessions are not read).")
    pendingAmount = serializers.CharField()
    expiredCount = serializers.IntegerField(help_text="Always zero.")
    expiredAmount = serializers.CharField()


class GroupTrendEntryOutput(serializers.Serializer):
    groupKey = serializers.CharField(help_text="A customer or plan id, or other.")
    groupLabel = serializers.CharField()
    revenue = serializers.CharField(help_text="Invoiced less credited in the bucket, net of tax (as netRevenue).")
    issuedInvoices = serializers.CharField(help_text="Invoiced in the bucket, net of tax, before credit notes.")


class RevenueTrendBucketOutput(serializers.Serializer):
    timestamp = UtcDateTime(help_text="Start of the bucket (UTC).")
    revenue = serializers.CharField()
    issuedInvoices = serializers.CharField()
    writtenOffInvoices = serializers.CharField()
    completedPayments = serializers.CharField()
    rebates = serializers.CharField()
    groupBreakdown = GroupTrendEntryOutput(
        many=True,
        required=False,
        help_text="With groupBy=plan or customer: the groups of the top-level groupBreakdown with an invoice or a "
        "credit note in the bucket, in its order (a group without is zero there); they sum to revenue.",
    )


class GroupInvoiceSummaryOutput(serializers.Serializer):
    groupKey = serializers.CharField()
    groupLabel = serializers.CharField()
    outstanding = InvoiceCategoryOutput()
    paid = InvoiceCategoryOutput()
    writtenOff = InvoiceCategoryOutput()


class CurrencyBreakdownOutput(serializers.Serializer):
    currency = serializers.CharField()
    netRevenue = serializers.CharField()
    invoices = InvoiceSummaryOutput()
    payments = PaymentSummaryOutput()
    trend = RevenueTrendBucketOutput(many=True)


class RevenueSummaryOutput(serializers.Serializer):
    object = Constant("revenue_summary")
    currency = serializers.CharField(required=False, help_text="Omitted with groupBy=currency.")
    netRevenue = serializers.CharField(required=False)
    totalRefunds = serializers.CharField(
        required=False,
        help_text="The credit notes issued in the window (not voided), tax included; netRevenue subtracts them "
        "net of tax.",
    )
    refundCount = serializers.IntegerField(required=False)
    totalRebates = serializers.CharField(required=False)
    rebateCount = serializers.IntegerField(required=False)
    invoices = InvoiceSummaryOutput(required=False)
    payments = PaymentSummaryOutput(required=False)
    trend = RevenueTrendBucketOutput(many=True, required=False)
    groupBreakdown = GroupInvoiceSummaryOutput(many=True, required=False, help_text="With groupBy=plan or customer.")
    currencyBreakdown = CurrencyBreakdownOutput(many=True, required=False, help_text="With groupBy=currency only.")
    revenueRange = AbsentOrNullRange(allow_null=True, required=False, help_text=REVENUE_RANGE_HELP)


class AccountFigureOutput(serializers.Serializer):
    count = serializers.IntegerField()
    amount = serializers.CharField()


class OutstandingBlockOutput(AccountFigureOutput):
    awaitingPayment = AccountFigureOutput()
    paymentFailed = AccountFigureOutput()


class RevenueAccountTotalOutput(serializers.Serializer):
    currency = serializers.CharField()
    outstanding = OutstandingBlockOutput()


class RevenueAccountRowOutput(serializers.Serializer):
    customerId = serializers.CharField()
    customerName = serializers.CharField()
    currency = serializers.CharField()
    outstanding = OutstandingBlockOutput()


class RevenueAccountsOutput(serializers.Serializer):
    object = Constant("list")
    totals = RevenueAccountTotalOutput(many=True)
    data = RevenueAccountRowOutput(many=True)
    pagination = PaginationOutput()


# Our extension (the client's revenue models have no place for recurring revenue).
class RecurringRevenueQuery(TypedSerializer):
    merchantId = QueryIdField()
    currency = CurrencyCode(required=False)
    asOf = UtcDateTime(required=False)


class RecurringRevenueOutput(serializers.Serializer):
    object = Constant("recurring_revenue")
    currency = serializers.CharField()
    asOf = UtcDateTime(source="as_of", help_text="The instant the active subscriptions were taken at.")
    mrr = serializers.SerializerMethodField(help_text="Monthly recurring revenue, at the currency's minor unit.")
    arr = serializers.SerializerMethodField(help_text="Annual recurring revenue: 12 × mrr.")
    subscriptionCount = serializers.IntegerField(source="subscriptions", help_text="Active subscriptions counted.")

    def get_mrr(self, recurring) -> str:
        return money_string(recurring.mrr, recurring.currency)

    def get_arr(self, recurring) -> str:
        return money_string(recurring.arr, recurring.currency)

"""Wire shapes of manual line items (``POST /v2/invoices/lineItems``, the client's ``createLineItem``) and
the view code that records one; the route is the ledger's (``ledger.LedgerLineItemsApi.post``)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.api.fields import DecimalString, MoneyString
from core.api.fields import UtcDateTimeField
from core.api.serializers import StrictSerializer
from core.formatting import decimal_string, iso_utc
from invoicing.calculation import manual_line_text
from invoicing.models import MANUAL_AMOUNT_MAX, MANUAL_QUANTITY_MAX, MANUAL_UNIT_PRICE_MAX

BOUNDS = (
    f"quantity: above 0, at most {decimal_string(MANUAL_QUANTITY_MAX)}; unitPrice: within "
    f"±{decimal_string(MANUAL_UNIT_PRICE_MAX)} (negative for a credit); quantity × unitPrice within "
    f"±{decimal_string(MANUAL_AMOUNT_MAX)}, rounded once to the currency's minor unit. Beyond them: 400."
)


class ManualLineItemInput(StrictSerializer):
    # The client's CreateManualLineItemRequest.
    subscriptionId = serializers.CharField(max_length=40, required=False)
    invoiceId = serializers.CharField(max_length=40, required=False)
    displayName = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=500, allow_null=True, allow_blank=True, required=False)
    currency = serializers.CharField(min_length=3, max_length=3)
    quantity = DecimalString()
    unitPrice = DecimalString()
    invoiceAt = serializers.DateTimeField(allow_null=True, required=False)
    periodStart = serializers.DateTimeField(allow_null=True, required=False)
    periodEnd = serializers.DateTimeField(allow_null=True, required=False)
    idempotencyKey = serializers.CharField(max_length=255, allow_null=True, required=False)
    itemId = serializers.CharField(max_length=100, allow_null=True, allow_blank=True, required=False)

    def validate(self, attrs):
        if bool(attrs.get("subscriptionId")) == bool(attrs.get("invoiceId")):
            raise serializers.ValidationError({"subscriptionId": ["Give exactly one of subscriptionId and invoiceId."]})
        return attrs


class ManualLineItemOutput(serializers.Serializer):
    # The client's LineItem, of a invoicing.models.ManualLineItem.
    id = serializers.CharField()
    subscriptionId = serializers.CharField(source="subscription_id")
    customerId = serializers.CharField(source="customer_id")
    type = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    displayName = serializers.CharField(source="display_name")
    currency = serializers.CharField()
    periodStart = UtcDateTimeField(source="period_start")
    periodEnd = UtcDateTimeField(source="period_end")
    invoiceAt = UtcDateTimeField(source="invoice_at")
    unitPrice = DecimalString(source="unit_price")
    createdAt = UtcDateTimeField(source="created_at")
    updatedAt = UtcDateTimeField(source="updated_at")
    priceId = serializers.SerializerMethodField()
    itemId = serializers.SerializerMethodField()
    invoiceId = serializers.CharField(source="invoice_id", allow_null=True)
    description = serializers.SerializerMethodField()
    calculatedAt = serializers.SerializerMethodField()
    quantity = DecimalString()
    meteredQuantity = serializers.SerializerMethodField()
    usageDiscountIds = serializers.SerializerMethodField()
    paymentTerm = serializers.SerializerMethodField()
    subtotal = MoneyString(source="amount")
    taxesTotal = serializers.SerializerMethodField()
    total = MoneyString(source="amount")
    estimatedMeteredQuantity = serializers.SerializerMethodField()
    estimatedSubtotal = serializers.SerializerMethodField()
    explanation = serializers.SerializerMethodField(help_text="Meterline: quantity × unit price = subtotal.")

    class Meta:
        ref_name = "LineItem"

    @extend_schema_field({"type": "string", "enum": ["manual"]})
    def get_type(self, _item):
        return "manual"

    @extend_schema_field({"type": "string", "enum": ["pending", "invoiced"]})
    def get_status(self, item):
        return "invoiced" if item.invoice_id else "pending"

    @extend_schema_field({"type": "string", "nullable": True})
    def get_priceId(self, _item):
        return None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_itemId(self, item):
        return item.item_id or None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_description(self, item):
        return item.description or None

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_calculatedAt(self, item):
        return iso_utc(item.created_at)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_meteredQuantity(self, _item):
        return None

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_usageDiscountIds(self, _item):
        return []

    @extend_schema_field({"type": "string", "nullable": True, "enum": ["in_advance", "in_arrears", None]})
    def get_paymentTerm(self, _item):
        return None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_taxesTotal(self, _item):
        return None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_estimatedMeteredQuantity(self, _item):
        return None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_estimatedSubtotal(self, _item):
        return None

    @extend_schema_field(OpenApiTypes.STR)
    def get_explanation(self, item):
        return manual_line_text(item)


class OneOffLineInput(StrictSerializer):
    displayName = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=500, allow_null=True, allow_blank=True, required=False)
    quantity = DecimalString()
    unitPrice = DecimalString()
    periodStart = serializers.DateTimeField(allow_null=True, required=False)
    periodEnd = serializers.DateTimeField(allow_null=True, required=False)
    itemId = serializers.CharField(max_length=100, allow_null=True, allow_blank=True, required=False)


class OneOffInvoiceInput(StrictSerializer):
    customerId = serializers.CharField(max_length=40)
    subscriptionId = serializers.CharField(max_length=40, required=False)
    currency = serializers.CharField(min_length=3, max_length=3)
    lines = OneOffLineInput(many=True, allow_empty=False, max_length=100)
    idempotencyKey = serializers.CharField(max_length=200, allow_null=True, required=False)

"""Wire shapes of the catalog API: camelCase inputs (``source=`` names the model field) and outputs.

Field names are the Paygentic wire names, so validation errors name the field the client sent.
Money and rates go out as decimal strings; tax percents as JSON numbers, as the client types them.

Kept whole for now because the price and plan shapes (the second half) build on the field classes and
inputs of the first; the seam when it grows is a module for prices and plans beside one for the rest.
"""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from catalog import models
from catalog.services import RateRow, TierRow
from core.api.errors import snake_to_camel
from core.api.fields import NUL, NUL_MESSAGE, TextKeyDictField
from core.api.serializers import BlankAsNull, Constant, StrictSerializer
from core.formatting import decimal_string

from .fields import (
    BillingEmailsField,
    DecimalNumber,
    DecimalString,
    MerchantScopedId,
    ThresholdLadderField,
    billing_emails_out,
)

ZERO = Decimal(0)
PROPERTIES_HELP = (
    "Shape by model: standard and package → StandardProperties; graduated and volume → TieredProperties; "
    "percentage → PercentageProperties; dynamic → DynamicProperties."
)
MODEL_HELP = "How usage becomes an amount; picks the shape of properties. Defaults to standard."


def _help(model, field: str) -> str:
    """The model field's help text: the admin and the API describe a field the same way."""
    return str(model._meta.get_field(field).help_text)


# Products


class ProductCreateInput(StrictSerializer):
    merchantId = serializers.CharField(source="merchant_id")
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True)
    metadata = TextKeyDictField(child=serializers.CharField(allow_blank=True), required=False)


class ProductUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False)


class ProductOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("product")
    name = serializers.CharField()
    description = serializers.CharField()
    merchantId = serializers.CharField(source="merchant_id")
    metadata = serializers.DictField(child=serializers.CharField())
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


# Billable metrics


class BillableMetricCreateInput(StrictSerializer):
    merchantId = serializers.CharField(source="merchant_id")
    productId = MerchantScopedId(models.Product, source="product")
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True)
    unit = serializers.CharField(max_length=50)
    aggregation = serializers.ChoiceField(choices=models.Aggregation.choices)
    eventType = serializers.CharField(source="event_type", max_length=200)
    itemId = serializers.CharField(source="item_id", max_length=100, allow_blank=True, required=False)
    valueProperty = serializers.CharField(source="value_property", max_length=200, allow_blank=True, required=False)
    groupBy = TextKeyDictField(source="group_by", child=serializers.CharField(), required=False)
    eventFrom = serializers.DateTimeField(source="event_from", required=False)


class BillableMetricUpdateInput(StrictSerializer):
    """PATCH: an absent key leaves the field alone; ``null`` clears itemId, valueProperty, groupBy, eventFrom."""

    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    unit = serializers.CharField(max_length=50, required=False)
    eventType = serializers.CharField(source="event_type", max_length=200, required=False)
    itemId = serializers.CharField(source="item_id", max_length=100, allow_blank=True, allow_null=True, required=False)
    valueProperty = serializers.CharField(
        source="value_property", max_length=200, allow_blank=True, allow_null=True, required=False
    )
    groupBy = TextKeyDictField(source="group_by", child=serializers.CharField(), allow_null=True, required=False)
    eventFrom = serializers.DateTimeField(source="event_from", allow_null=True, required=False)

    def validate(self, attrs):
        # Model fields store "" / {} for "none".
        for field, empty in (("item_id", ""), ("value_property", ""), ("group_by", {})):
            if field in attrs and attrs[field] is None:
                attrs[field] = empty
        return attrs


class BillableMetricOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("billableMetric")
    merchantId = serializers.CharField(source="merchant_id")
    productId = serializers.CharField(source="product_id")
    name = serializers.CharField()
    description = serializers.CharField()
    unit = serializers.CharField()
    aggregation = serializers.CharField()
    eventType = serializers.CharField(source="event_type")
    itemId = BlankAsNull(source="item_id")
    valueProperty = BlankAsNull(source="value_property")
    groupBy = serializers.DictField(source="group_by", child=serializers.CharField())
    eventFrom = serializers.DateTimeField(source="event_from", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


# Fees


class FeeCreateInput(StrictSerializer):
    merchantId = serializers.CharField(source="merchant_id")
    productId = MerchantScopedId(models.Product, source="product")
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True)
    itemId = serializers.CharField(source="item_id", max_length=100, allow_blank=True, required=False)


class FeeUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    itemId = serializers.CharField(source="item_id", max_length=100, allow_blank=True, allow_null=True, required=False)

    def validate(self, attrs):
        if "item_id" in attrs and attrs["item_id"] is None:
            attrs["item_id"] = ""
        return attrs


class FeeOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("fee")
    merchantId = serializers.CharField(source="merchant_id")
    productId = serializers.CharField(source="product_id")
    name = serializers.CharField()
    description = serializers.CharField()
    itemId = BlankAsNull(source="item_id")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


# Prices: ``properties`` by model. Keys may come camelCase or snake_case (the client converts).


class PriceTier(StrictSerializer):
    """One tier row; ``upTo`` null (or absent) on the last, open tier."""

    upTo = DecimalString(source="up_to", allow_null=True, required=False, min_value=ZERO)
    unitPrice = DecimalString(source="unit_price", min_value=ZERO)
    flatFee = DecimalString(source="flat_fee", required=False, min_value=ZERO)


class PriceRate(StrictSerializer):
    """A scheduled unit price of a dynamic price, effective from a moment on."""

    effectiveFrom = serializers.DateTimeField(source="effective_from")
    unitPrice = DecimalString(source="unit_price", min_value=ZERO)


class StandardProperties(StrictSerializer):
    """``model`` standard: price per unit. ``model`` package: ``unitPrice`` per ``packageSize`` units, partial
    packages rounded by ``packageRounding``."""

    unitPrice = DecimalString(source="unit_price", required=False)
    packageSize = DecimalString(source="package_size", allow_null=True, required=False)
    packageRounding = serializers.ChoiceField(
        source="package_rounding", choices=models.PackageRounding.choices, required=False
    )


class TieredProperties(StrictSerializer):
    """``model`` graduated (each unit priced by the tier it falls in) or volume (every unit at the tier the
    total reaches); ``flatFee`` is charged once when usage reaches the tier."""

    tiers = PriceTier(many=True)


class PercentageProperties(StrictSerializer):
    """``model`` percentage: a share of each event's amount; ``minCharge``/``maxCharge`` bound the period's
    charge (``"0"`` as a maximum means no cap)."""

    percentage = DecimalString(source="percentage_rate")
    minCharge = DecimalString(source="min_charge_per_period", allow_null=True, required=False)
    maxCharge = DecimalString(source="max_charge_per_period", allow_null=True, required=False)
    fixedFeePerEvent = DecimalString(source="fixed_fee_per_event", allow_null=True, required=False)
    minChargePerEvent = DecimalString(source="min_charge_per_event", allow_null=True, required=False)
    maxChargePerEvent = DecimalString(source="max_charge_per_event", allow_null=True, required=False)

    def validate(self, attrs):
        # The client's shape makes minCharge/maxCharge mandatory strings: "0" means no cap.
        for field in ("max_charge_per_period", "max_charge_per_event"):
            if attrs.get(field) == 0:
                attrs[field] = None
        return attrs


class DynamicProperties(StrictSerializer):
    """``model`` dynamic: a unit price from a schedule of ``rates`` (``mode`` schedule) or read from each event
    (``mode`` event_price, at ``eventPriceProperty``), clamped to ``minPrice``/``maxPrice`` (``"0"`` = no max)."""

    minPrice = DecimalString(source="min_unit_price", allow_null=True, required=False)
    maxPrice = DecimalString(source="max_unit_price", allow_null=True, required=False)
    mode = serializers.ChoiceField(source="dynamic_mode", choices=models.DynamicMode.choices, required=False)
    eventPriceProperty = serializers.CharField(source="event_price_property", allow_blank=True, required=False)
    rates = PriceRate(many=True, required=False)

    def validate(self, attrs):
        if attrs.get("max_unit_price") == 0:
            attrs["max_unit_price"] = None
        if "dynamic_mode" not in attrs:
            attrs["dynamic_mode"] = (
                models.DynamicMode.EVENT_PRICE if attrs.get("event_price_property") else models.DynamicMode.SCHEDULE
            )
        return attrs


PROPERTIES_INPUT = {
    models.PriceModel.STANDARD: StandardProperties,
    models.PriceModel.PACKAGE: StandardProperties,
    models.PriceModel.GRADUATED: TieredProperties,
    models.PriceModel.VOLUME: TieredProperties,
    models.PriceModel.PERCENTAGE: PercentageProperties,
    models.PriceModel.DYNAMIC: DynamicProperties,
}
# Every property-derived model field, reset when new properties arrive.
PROPERTY_DEFAULTS = {
    "unit_price": None,
    "package_size": None,
    "package_rounding": models.PackageRounding.EXACT,
    "percentage_rate": None,
    "fixed_fee_per_event": None,
    "min_charge_per_event": None,
    "max_charge_per_event": None,
    "min_charge_per_period": None,
    "max_charge_per_period": None,
    "dynamic_mode": "",
    "event_price_property": "",
    "min_unit_price": None,
    "max_unit_price": None,
}


def _camel_keys(value):
    """camelCase the keys of a wire object (the client may send snake_case); the same key sent both ways
    is a 400 rather than one value silently winning."""
    if isinstance(value, dict):
        converted: dict = {}
        for key, item in value.items():
            name = snake_to_camel(str(key)) if "_" in str(key) else key
            if name in converted:
                raise serializers.ValidationError({name: [f"Given twice (as {name} and in snake_case)."]})
            converted[name] = _camel_keys(item)
        return converted
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def parse_properties(model: str, properties) -> tuple[dict, list[TierRow], list[RateRow]]:
    """Turn wire ``properties`` into Price field values, tier rows and rate rows for ``model``."""
    if not isinstance(properties, dict):
        raise serializers.ValidationError({"properties": ["Send the properties as an object."]})
    try:
        properties = _camel_keys(properties)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"properties": exc.detail}) from None
    serializer = PROPERTIES_INPUT[model](data=properties)
    if not serializer.is_valid():
        raise serializers.ValidationError({"properties": serializer.errors})
    data = dict(serializer.validated_data)
    tiers = [TierRow(t.get("up_to"), t["unit_price"], t.get("flat_fee", ZERO)) for t in data.pop("tiers", [])]
    rates = [RateRow(r["effective_from"], r["unit_price"]) for r in data.pop("rates", [])]
    return {**PROPERTY_DEFAULTS, **data}, tiers, rates


class PriceTaxInput(StrictSerializer):
    supplyScope = serializers.ChoiceField(source="tax_supply_scope", choices=["IN_SCOPE", "OUTSIDE_SCOPE"])
    outsideScopeLabel = serializers.ChoiceField(choices=["CASHBACK"], allow_null=True, required=False)

    def validate_outsideScopeLabel(self, value):
        if value is not None:
            raise serializers.ValidationError("Outside-scope labels are not supported; leave it out.")
        return value


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="PriceProperties",
        serializers=[StandardProperties, TieredProperties, PercentageProperties, DynamicProperties],
        resource_type_field_name=None,
        many=False,
    )
)
class PropertiesField(serializers.JSONField):
    """``properties``: the shape follows ``model`` (standard/package, graduated/volume, percentage, dynamic).
    Decimals are strings; keys may also come snake_case."""


DIMENSIONAL_HELP = (
    "Meterline extension: rates per value of event properties, or null. "
    '{"dimensions": ["model"], "tierScope": "combination" | "metric", "unmatched": "default" | "refuse", '
    '"rates": [{"values": {"model": "nle-large"}, "model": "standard" | "graduated" | "volume" | "package", '
    '"unitPrice": "0.000004", "packageSize": "1000", "packageRounding": "up", "freeUnits": "0", '
    '"tiers": [{"upTo": "1000000", "unitPrice": "0.000004", "flatFee": "0"}, {"upTo": null, "unitPrice": "0.000003"}]}]}. '
    "Each combination is its own rate; the price's own properties price unmatched values "
    '(or "unmatched": "refuse" refuses those events at ingestion). See catalog/API.md.'
)


class PriceWriteFields(StrictSerializer):
    """Fields shared by price create and update."""

    invoiceDisplayGroup = serializers.CharField(
        source="invoice_display_group", max_length=100, allow_blank=True, allow_null=True, required=False
    )
    billingCadence = serializers.CharField(
        source="billing_cadence", max_length=20, allow_blank=True, allow_null=True, required=False
    )
    pricingUnitId = serializers.CharField(
        source="pricing_unit_id", max_length=100, allow_blank=True, allow_null=True, required=False
    )
    feature = serializers.JSONField(required=False, allow_null=True)
    grantDiscountEnabled = serializers.BooleanField(source="grant_discount_enabled", required=False)
    isObligation = serializers.BooleanField(source="is_obligation", required=False)
    rateType = serializers.ChoiceField(source="rate_type", choices=models.RateType.choices, required=False)
    tax = PriceTaxInput(required=False)
    quantity = serializers.IntegerField(min_value=0, required=False)
    # Meterline extensions (the Paygentic client ignores them on read).
    freeUnits = DecimalString(
        source="free_units", required=False, min_value=ZERO, help_text=_help(models.Price, "free_units")
    )
    usageDiscountUnits = DecimalString(
        source="usage_discount_units",
        allow_null=True,
        required=False,
        help_text=_help(models.Price, "usage_discount_units"),
    )
    discountPercent = DecimalString(
        source="discount_percent", allow_null=True, required=False, help_text=_help(models.Price, "discount_percent")
    )
    minimumCommitment = DecimalString(
        source="minimum_commitment",
        allow_null=True,
        required=False,
        help_text=_help(models.Price, "minimum_commitment"),
    )
    allowsRebate = serializers.BooleanField(
        source="allows_rebate", required=False, help_text=_help(models.Price, "allows_rebate")
    )
    dimensionalRates = serializers.JSONField(
        source="dimensional_rates", allow_null=True, required=False, help_text=DIMENSIONAL_HELP
    )

    def validate_feature(self, value):
        if value is not None:
            raise serializers.ValidationError("Features and entitlements are not supported on prices; leave it out.")
        return value

    def flatten(self, attrs: dict) -> dict:
        """Validated data as Price model field values."""
        attrs.pop("feature", None)
        tax = attrs.pop("tax", None)
        if tax is not None:
            attrs["tax_supply_scope"] = tax["tax_supply_scope"]
        for field in ("invoice_display_group", "billing_cadence", "pricing_unit_id"):
            if field in attrs and attrs[field] is None:
                attrs[field] = ""
        if "free_units" in attrs and attrs["free_units"] is None:
            attrs["free_units"] = ZERO
        return attrs


class PriceCreateInput(PriceWriteFields):
    invoiceDisplayName = serializers.CharField(source="invoice_display_name", max_length=200)
    paymentTerm = serializers.ChoiceField(source="payment_term", choices=models.PaymentTerm.choices)
    properties = PropertiesField(help_text=PROPERTIES_HELP)
    billableMetricId = MerchantScopedId(models.BillableMetric, source="billable_metric", required=False)
    feeId = MerchantScopedId(models.Fee, source="fee", required=False)
    model = serializers.ChoiceField(choices=models.PriceModel.choices, required=False, help_text=MODEL_HELP)

    def validate(self, attrs):
        if ("billable_metric" in attrs) == ("fee" in attrs):
            raise serializers.ValidationError(
                {"billableMetricId": ["Give either billableMetricId (a usage price) or feeId (a fixed charge)."]}
            )
        if "fee" not in attrs and attrs.get("quantity", 1) != 1:
            raise serializers.ValidationError({"quantity": ["Only fee prices have a quantity."]})
        attrs.setdefault("model", models.PriceModel.STANDARD)
        fields, tiers, rates = parse_properties(attrs["model"], attrs.pop("properties"))
        return {"fields": {**self.flatten(attrs), **fields}, "tiers": tiers, "rates": rates}


class PriceUpdateInput(PriceWriteFields):
    invoiceDisplayName = serializers.CharField(source="invoice_display_name", max_length=200, required=False)
    paymentTerm = serializers.ChoiceField(source="payment_term", choices=models.PaymentTerm.choices, required=False)
    properties = PropertiesField(required=False, help_text=PROPERTIES_HELP)
    billableMetricId = MerchantScopedId(models.BillableMetric, source="billable_metric", required=False)
    model = serializers.ChoiceField(choices=models.PriceModel.choices, required=False, help_text=MODEL_HELP)

    def validate(self, attrs):
        price: models.Price = self.context["price"]
        if "billable_metric" in attrs and price.fee_id:
            raise serializers.ValidationError({"billableMetricId": ["A fee price cannot become a usage price."]})
        model = attrs.get("model", price.model)
        tiers = rates = None
        if "properties" in attrs:
            fields, tiers, rates = parse_properties(model, attrs.pop("properties"))
            attrs.update(fields)
        elif model != price.model:
            raise serializers.ValidationError({"properties": ["Send the properties of the new model."]})
        return {"fields": self.flatten(attrs), "tiers": tiers, "rates": rates}


def price_properties(price: models.Price) -> dict:
    """The wire ``properties`` of a price; every shape keeps the keys the client requires."""
    model = price.model
    if model in (models.PriceModel.STANDARD, models.PriceModel.PACKAGE):
        props = {"unitPrice": decimal_string(price.unit_price) or "0"}
        if price.package_size is not None or model == models.PriceModel.PACKAGE:
            props["packageSize"] = decimal_string(price.package_size)
            props["packageRounding"] = price.package_rounding
        return props
    if model in (models.PriceModel.GRADUATED, models.PriceModel.VOLUME):
        rows = []
        for tier in price.tiers.all():
            row = {"upTo": decimal_string(tier.up_to), "unitPrice": decimal_string(tier.unit_price)}
            if model == models.PriceModel.GRADUATED or tier.flat_fee:
                row["flatFee"] = decimal_string(tier.flat_fee)
            rows.append(row)
        return {"tiers": rows}
    if model == models.PriceModel.PERCENTAGE:
        props = {
            "percentage": decimal_string(price.percentage_rate) or "0",
            "minCharge": decimal_string(price.min_charge_per_period) or "0",
            "maxCharge": decimal_string(price.max_charge_per_period) or "0",
        }
        for key, field in (
            ("fixedFeePerEvent", "fixed_fee_per_event"),
            ("minChargePerEvent", "min_charge_per_event"),
            ("maxChargePerEvent", "max_charge_per_event"),
        ):
            if getattr(price, field) is not None:
                props[key] = decimal_string(getattr(price, field))
        return props
    props = {
        "minPrice": decimal_string(price.min_unit_price) or "0",
        "maxPrice": decimal_string(price.max_unit_price) or "0",
        "mode": price.dynamic_mode,
    }
    if price.event_price_property:
        props["eventPriceProperty"] = price.event_price_property
    rates = [
        {
            "effectiveFrom": serializers.DateTimeField().to_representation(r.effective_from),
            "unitPrice": decimal_string(r.unit_price),
        }
        for r in price.dynamic_rates.all()
    ]
    if rates:
        props["rates"] = rates
    return props


class PriceTaxOutput(serializers.Serializer):
    supplyScope = serializers.CharField(source="tax_supply_scope")


class PriceOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("price")
    merchantId = serializers.CharField(source="merchant_id")
    # Absent (never null) when unset: required=False tells the schema so.
    billableMetricId = serializers.CharField(source="billable_metric_id", required=False)
    feeId = serializers.CharField(source="fee_id", required=False)
    invoiceDisplayName = serializers.CharField(source="invoice_display_name")
    invoiceDisplayGroup = BlankAsNull(source="invoice_display_group")
    paymentTerm = serializers.CharField(source="payment_term")
    model = serializers.CharField()
    properties = serializers.SerializerMethodField()
    billingCadence = BlankAsNull(source="billing_cadence")
    pricingUnitId = BlankAsNull(source="pricing_unit_id", required=False)
    tax = PriceTaxOutput(source="*")
    quantity = serializers.IntegerField()
    grantDiscountEnabled = serializers.BooleanField(source="grant_discount_enabled")
    isObligation = serializers.BooleanField(source="is_obligation")
    rateType = serializers.CharField(source="rate_type")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    # Meterline extensions.
    planId = serializers.CharField(source="plan_id", allow_null=True)
    key = BlankAsNull(source="plan_line_key")
    freeUnits = DecimalString(source="free_units", help_text=_help(models.Price, "free_units"))
    usageDiscountUnits = DecimalString(
        source="usage_discount_units", allow_null=True, help_text=_help(models.Price, "usage_discount_units")
    )
    discountPercent = DecimalString(
        source="discount_percent", allow_null=True, help_text=_help(models.Price, "discount_percent")
    )
    minimumCommitment = DecimalString(
        source="minimum_commitment", allow_null=True, help_text=_help(models.Price, "minimum_commitment")
    )
    allowsRebate = serializers.BooleanField(source="allows_rebate", help_text=_help(models.Price, "allows_rebate"))
    dimensionalRates = serializers.JSONField(source="dimensional_rates", allow_null=True, help_text=DIMENSIONAL_HELP)

    @extend_schema_field(PropertiesField)
    def get_properties(self, price) -> dict:
        return price_properties(price)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # The client types these as optional strings (absent, not null).
        for key in ("billableMetricId", "feeId", "pricingUnitId"):
            if data[key] is None:
                del data[key]
        return data


class PlanPriceOutput(PriceOutput):
    currency = serializers.SerializerMethodField()
    unitAmount = serializers.SerializerMethodField()

    def get_currency(self, price) -> str | None:
        plan = self.context.get("plan")
        return plan.currency if plan is not None else price.currency

    @extend_schema_field({"type": "string", "nullable": True})
    def get_unitAmount(self, price) -> str | None:
        return decimal_string(price.unit_price)


# Plans


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "oneOf": [
                {"type": "string", "description": "A price id"},
                {
                    "type": "object",
                    "properties": {"priceId": {"type": "string"}, "key": {"type": "string"}},
                    "required": ["priceId"],
                },
            ]
        },
    }
)
class PlanLinesField(serializers.Field):
    """``prices``: price ids, or ``{priceId, key}``; each resolved among the caller's prices."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError("Send a list of price ids or {priceId, key} objects.")
        from .auth import request_merchant

        merchant = request_merchant(self.context["request"])
        errors: list[list[str]] = []
        wanted: list[tuple[str, str | None]] = []
        for entry in data:
            price_id, key, problem = None, None, None
            if isinstance(entry, str):
                price_id = entry
            elif isinstance(entry, dict):
                try:
                    entry = _camel_keys(entry)
                except serializers.ValidationError:
                    problem, entry = "Give priceId once (not also as price_id).", {}
                unknown = set(entry) - {"priceId", "key"}
                price_id, key = entry.get("priceId"), entry.get("key")
                if problem:
                    pass
                elif unknown:
                    problem = f"Unknown field(s): {', '.join(sorted(unknown))}."
                elif not isinstance(price_id, str) or (key is not None and not isinstance(key, str)):
                    problem = "Give priceId (and optionally key) as strings."
            else:
                problem = "Give a price id or a {priceId, key} object."
            if not problem and NUL in price_id + (key or ""):
                problem = NUL_MESSAGE  # PostgreSQL would refuse the query
            if problem:
                price_id = None
            errors.append([problem] if problem else [])
            wanted.append((price_id, key))
        found = {p.pk: p for p in models.Price.objects.filter(merchant=merchant, pk__in=[w[0] for w in wanted if w[0]])}
        for index, (price_id, _) in enumerate(wanted):
            if not errors[index] and price_id not in found:
                errors[index] = [f"No such price: “{price_id}”."]
        if any(errors):
            raise serializers.ValidationError(errors)
        return [(found[price_id], key) for price_id, key in wanted]

    def to_representation(self, value):
        return value


class VersionTransitionInput(StrictSerializer):
    effectiveDate = serializers.ChoiceField(choices=["end_of_current_period", "immediate"])
    proration = serializers.ChoiceField(choices=["none"])

    def validate_effectiveDate(self, value):
        if value != "end_of_current_period":
            raise serializers.ValidationError("Plan changes take effect at the end of the current period only.")
        return value


BILLING_INTERVAL_CADENCE = {"monthly": "P1M", "quarterly": "P3M", "yearly": "P1Y", "annual": "P1Y"}
CADENCE_BILLING_INTERVAL = {"P1M": "monthly", "P3M": "quarterly", "P1Y": "yearly"}


class PlanWriteFields(StrictSerializer):
    billingCadence = serializers.ChoiceField(
        source="billing_cadence", choices=models.BillingCadence.choices, required=False
    )
    billingInterval = serializers.ChoiceField(
        source="billing_interval", choices=list(BILLING_INTERVAL_CADENCE), required=False
    )
    defaultTaxCode = serializers.CharField(source="default_tax_code", max_length=50, allow_blank=True, required=False)
    defaultTaxRate = DecimalNumber(source="default_tax_rate", required=False, min_value=ZERO)
    description = serializers.CharField(allow_blank=True, required=False)
    invoiceDisplayName = serializers.CharField(
        source="invoice_display_name", max_length=200, allow_blank=True, required=False
    )
    prices = PlanLinesField(required=False)
    taxBehavior = serializers.ChoiceField(source="tax_behavior", choices=models.TaxBehavior.choices, required=False)
    renewalReminderEnabled = serializers.BooleanField(source="renewal_reminder_enabled", required=False)
    renewalReminderDays = serializers.IntegerField(source="renewal_reminder_days", min_value=0, required=False)
    billingAnchor = serializers.DateTimeField(source="billing_anchor", allow_null=True, required=False)
    creditAllocations = serializers.ListField(source="credit_allocations", required=False)
    stablePriceIds = serializers.BooleanField(source="stable_price_ids", required=False)
    versionTransition = VersionTransitionInput(source="version_transition", required=False)
    # Meterline extensions.
    minimumCommitment = DecimalString(
        source="minimum_commitment",
        allow_null=True,
        required=False,
        min_value=ZERO,
        help_text=_help(models.Plan, "minimum_commitment"),
    )
    discountPercent = DecimalString(
        source="discount_percent",
        allow_null=True,
        required=False,
        min_value=ZERO,
        help_text=_help(models.Plan, "discount_percent"),
    )
    thresholdAmount = DecimalString(
        source="threshold_amount",
        allow_null=True,
        required=False,
        min_value=models.THRESHOLD_AMOUNT_MIN,
        max_value=models.THRESHOLD_AMOUNT_MAX,
        help_text=_help(models.Plan, "threshold_amount") + " From 0.01 to 1000000000 in the plan's currency.",
    )
    thresholdLadder = ThresholdLadderField(
        source="threshold_ladder", required=False, help_text=_help(models.Plan, "threshold_ladder")
    )
    thresholdRecurring = serializers.BooleanField(
        source="threshold_recurring", required=False, help_text=_help(models.Plan, "threshold_recurring")
    )

    def validate_creditAllocations(self, value):
        if value:
            raise serializers.ValidationError("Credit allocations are not supported; leave the list empty.")
        return value

    def validate(self, attrs):
        interval = attrs.pop("billing_interval", None)
        if interval and "billing_cadence" not in attrs:  # billingCadence wins
            attrs["billing_cadence"] = BILLING_INTERVAL_CADENCE[interval]
        for accepted in ("credit_allocations", "stable_price_ids", "version_transition", "billing_version"):
            attrs.pop(accepted, None)
        lines = attrs.pop("prices", None)
        return {"fields": attrs, "lines": lines}


class PlanCreateInput(PlanWriteFields):
    merchantId = serializers.CharField(source="merchant_id")
    productId = MerchantScopedId(models.Product, source="product")
    name = serializers.CharField(max_length=200)
    currency = serializers.CharField(max_length=3)
    billingVersion = serializers.IntegerField(source="billing_version", required=False)

    def validate_billingVersion(self, value):
        if value != 1:
            raise serializers.ValidationError("New plans use billing version 1.")
        return value

    def validate_currency(self, value):
        return value.upper()


class PlanUpdateInput(PlanWriteFields):
    name = serializers.CharField(max_length=200, required=False)


class VersionTransitionOutput(serializers.Serializer):
    effectiveDate = serializers.CharField()
    proration = serializers.CharField()


class PlanPaymentTermOutput(serializers.Serializer):
    in_arrears = serializers.BooleanField()
    in_advance = serializers.BooleanField()


class PlanOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("plan")
    merchantId = serializers.CharField(source="merchant_id")
    productId = serializers.CharField(source="product_id")
    name = serializers.CharField()
    description = serializers.CharField()
    invoiceDisplayName = serializers.CharField(source="invoice_display_name")
    currency = serializers.CharField()
    billingCadence = serializers.CharField(source="billing_cadence")
    billingInterval = serializers.SerializerMethodField()
    billingAnchor = serializers.DateTimeField(source="billing_anchor", allow_null=True)
    defaultTaxCode = serializers.CharField(source="default_tax_code")
    defaultTaxRate = DecimalNumber(source="default_tax_rate")
    taxBehavior = serializers.CharField(source="tax_behavior")
    renewalReminderEnabled = serializers.BooleanField(source="renewal_reminder_enabled")
    renewalReminderDays = serializers.IntegerField(source="renewal_reminder_days")
    billingVersion = serializers.SerializerMethodField()
    stablePriceIds = serializers.SerializerMethodField()
    versionTransition = serializers.SerializerMethodField()
    paymentTerm = serializers.SerializerMethodField()
    prices = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    # Meterline extensions.
    minimumCommitment = DecimalString(
        source="minimum_commitment", allow_null=True, help_text=_help(models.Plan, "minimum_commitment")
    )
    discountPercent = DecimalString(
        source="discount_percent", allow_null=True, help_text=_help(models.Plan, "discount_percent")
    )
    thresholdAmount = DecimalString(
        source="threshold_amount", allow_null=True, help_text=_help(models.Plan, "threshold_amount")
    )
    thresholdLadder = ThresholdLadderField(source="threshold_ladder", help_text=_help(models.Plan, "threshold_ladder"))
    thresholdRecurring = serializers.BooleanField(
        source="threshold_recurring", help_text=_help(models.Plan, "threshold_recurring")
    )
    archivedAt = serializers.DateTimeField(source="archived_at", allow_null=True)

    def get_billingInterval(self, plan) -> str:
        return CADENCE_BILLING_INTERVAL.get(plan.billing_cadence, plan.billing_cadence)

    def get_billingVersion(self, plan) -> int:
        return 1

    def get_stablePriceIds(self, plan) -> bool:
        return True  # prices are never replaced behind the caller's back

    @extend_schema_field(VersionTransitionOutput)
    def get_versionTransition(self, plan) -> dict:
        return {"effectiveDate": "end_of_current_period", "proration": "none"}

    @extend_schema_field(PlanPaymentTermOutput)
    def get_paymentTerm(self, plan) -> dict:
        terms = {price.payment_term for price in self._plan_prices(plan)}
        return {"in_arrears": "in_arrears" in terms, "in_advance": "in_advance" in terms}

    @extend_schema_field(PlanPriceOutput(many=True))
    def get_prices(self, plan) -> list:
        return PlanPriceOutput(self._plan_prices(plan), many=True, context={"plan": plan}).data

    @staticmethod
    def _plan_prices(plan) -> list:
        if hasattr(plan, "plan_prices"):
            return plan.plan_prices
        return list(
            plan.prices.filter(customer__isnull=True).prefetch_related("tiers", "dynamic_rates").order_by("created_at")
        )


# Customers


class AddressInput(StrictSerializer):
    line1 = serializers.CharField(source="address_line1", max_length=200, allow_blank=True, required=False)
    line2 = serializers.CharField(source="address_line2", max_length=200, allow_blank=True, required=False)
    city = serializers.CharField(max_length=100, allow_blank=True, required=False)
    state = serializers.CharField(max_length=100, allow_blank=True, required=False)
    country = serializers.RegexField(
        r"^[A-Za-z]{2}$",
        required=False,
        allow_blank=True,
        error_messages={"invalid": "Use a 2-letter ISO 3166 country code, e.g. US."},
    )
    zipCode = serializers.CharField(source="postal_code", max_length=20, allow_blank=True, required=False)

    def validate_country(self, value):
        return value.upper()


class ConsumerInput(StrictSerializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField()
    address = AddressInput()
    phone = serializers.CharField(max_length=50, allow_blank=True, required=False)


class ConsumerUpdateInput(ConsumerInput):
    name = serializers.CharField(max_length=200, required=False)
    email = serializers.EmailField(required=False)
    address = AddressInput(required=False)


def tax_rates_value(value) -> dict:
    """A customer's ``taxRates`` input (``{"default": percent}``) validated; invoicing's inputs use it too."""
    if not isinstance(value, dict):
        raise serializers.ValidationError('Send tax rates as {"default": 8.5} (percent).')
    unknown = sorted(set(value) - {"default"})
    if unknown:
        raise serializers.ValidationError(
            f"Only a default tax rate is supported; remove {', '.join(unknown)} (per-plan rates live on the plan)."
        )
    return {"tax_rate": DecimalNumber(min_value=ZERO).run_validation(value["default"])} if "default" in value else {}


class CustomerCreateInput(StrictSerializer):
    merchantId = serializers.CharField(source="merchant_id")
    consumer = ConsumerInput(required=False)
    consumerId = MerchantScopedId(models.Customer, source="consumer_id", required=False)
    taxId = serializers.CharField(source="tax_id", max_length=50, allow_blank=True, required=False)
    externalId = serializers.CharField(source="external_id", max_length=200, allow_blank=True, required=False)
    taxRates = serializers.DictField(source="tax_rates", required=False)
    # Meterline extensions.
    currency = serializers.CharField(max_length=3, required=False)
    timeZone = serializers.CharField(source="time_zone", max_length=64, required=False)
    billingEmails = BillingEmailsField(source="billing_emails", required=False)
    creditBeforePayment = serializers.BooleanField(source="credit_before_payment", required=False)

    def validate_taxRates(self, value):
        return tax_rates_value(value)

    def validate(self, attrs):
        if ("consumer" in attrs) == ("consumer_id" in attrs):
            raise serializers.ValidationError({"consumer": ["Give either consumer or consumerId."]})
        return attrs


class CustomerUpdateInput(StrictSerializer):
    taxId = serializers.CharField(source="tax_id", max_length=50, allow_blank=True, allow_null=True, required=False)
    externalId = serializers.CharField(
        source="external_id", max_length=200, allow_blank=True, allow_null=True, required=False
    )
    taxRates = serializers.JSONField(source="tax_rates", required=False)
    notificationSettings = serializers.JSONField(source="notification_settings", required=False)
    # Meterline extensions.
    consumer = ConsumerUpdateInput(required=False)
    currency = serializers.CharField(max_length=3, required=False)
    timeZone = serializers.CharField(source="time_zone", max_length=64, required=False)
    billingEmails = BillingEmailsField(source="billing_emails", required=False)
    creditBeforePayment = serializers.BooleanField(source="credit_before_payment", required=False)

    def validate_taxRates(self, value):
        if isinstance(value, dict):
            return tax_rates_value(value)
        return {"tax_rate": DecimalNumber(min_value=ZERO).run_validation(value)}

    def validate_notificationSettings(self, value):
        raise serializers.ValidationError("Notification settings are not supported; leave them out.")

    def validate(self, attrs):
        changes = flatten_customer(attrs)
        if "tax_id" in changes and changes["tax_id"] is None:
            changes["tax_id"] = ""
        return changes


def flatten_customer(attrs: dict) -> dict:
    """Customer model field values from a validated create/update body."""
    changes = dict(attrs)
    consumer = changes.pop("consumer", None) or {}
    address = consumer.pop("address", None) or {}
    changes.update(consumer)
    changes.update(address)
    changes.update(changes.pop("tax_rates", None) or {})
    if "currency" in changes:
        changes["currency"] = changes["currency"].upper()
    return changes


def tax_address_check(customer: models.Customer) -> dict:
    """Whether the address is complete enough to compute tax: country and postal code, plus the state in
    the US and Canada. There is no external address validation."""
    missing = [
        label for label, value in (("country", customer.country), ("zipCode", customer.postal_code)) if not value
    ]
    if customer.country in {"US", "CA"} and not customer.state:
        missing.append("state")
    if missing:
        return {"valid": False, "message": f"Tax needs a complete address; missing: {', '.join(missing)}."}
    return {"valid": True}


class ValidTaxAddressOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    message = serializers.CharField(required=False)


class CustomerCreatedOutput(serializers.Serializer):
    customerId = serializers.CharField(source="id")
    validTaxAddress = serializers.SerializerMethodField()

    @extend_schema_field(ValidTaxAddressOutput)
    def get_validTaxAddress(self, customer) -> dict:
        return tax_address_check(customer)


class AddressOutput(serializers.Serializer):
    line1 = serializers.CharField(source="address_line1")
    line2 = serializers.CharField(source="address_line2")
    city = serializers.CharField()
    state = serializers.CharField()
    country = serializers.CharField()
    zipCode = serializers.CharField(source="postal_code")


class CustomerOrganizationOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    address = AddressOutput(source="*")
    billingEmails = serializers.SerializerMethodField()
    phone = serializers.CharField()

    def get_billingEmails(self, customer) -> list[str]:
        """Where documents are e-mailed: the billing e-mails, else the consumer's e-mail."""
        return customer.billing_recipients


class CustomerOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("customer")
    consumerId = serializers.CharField(source="id", help_text="The consumer is the customer itself: same id.")
    merchantId = serializers.CharField(source="merchant_id")
    validTaxAddress = serializers.SerializerMethodField()
    organization = CustomerOrganizationOutput(source="*")
    taxId = BlankAsNull(source="tax_id")
    externalId = serializers.CharField(source="external_id", allow_null=True)
    taxRates = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    # Meterline extensions.
    name = serializers.CharField()
    email = serializers.CharField()
    currency = serializers.CharField()
    timeZone = serializers.CharField(source="time_zone")
    billingEmails = serializers.SerializerMethodField()
    creditBeforePayment = serializers.BooleanField(
        source="credit_before_payment",
        help_text="Meterline extension: prepaid credit and reserved capacity bought on an invoice are credited at "
        "once (trusted); false: when the invoice is paid.",
    )

    @extend_schema_field(ValidTaxAddressOutput)
    def get_validTaxAddress(self, customer) -> dict:
        return tax_address_check(customer)

    @extend_schema_field(
        {
            "type": "array",
            "items": {"type": "string", "format": "email"},
            "description": "Meterline extension: the billing e-mails set (where invoices, credit notes and reminders "
            "are e-mailed); [] when none, documents then go to the consumer's e-mail.",
        }
    )
    def get_billingEmails(self, customer) -> list[str]:
        return billing_emails_out(customer)

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "number"}})
    def get_taxRates(self, customer) -> dict:
        return {} if customer.tax_rate is None else {"default": customer.tax_rate.normalize()}


# Plan versions


class PlanVersionSummaryOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("plan_version")
    versionNumber = serializers.IntegerField(source="number")
    status = serializers.CharField()
    isDefault = serializers.SerializerMethodField()
    subscriptionCount = serializers.IntegerField(source="subscription_count")
    publishedAt = serializers.DateTimeField(source="published_at", required=False)

    def get_isDefault(self, version) -> bool:
        return version.plan.default_version_id == version.pk

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("publishedAt") is None:
            data.pop("publishedAt", None)  # optional on the client: absent, not null
        return data


class PlanVersionPriceSlotOutput(PlanPriceOutput):
    """One line of a version: every price field, with the line's ``key`` and ``priceDeleted``."""

    priceDeleted = serializers.SerializerMethodField()

    def get_priceDeleted(self, price) -> bool:
        return False  # a price some version holds cannot be deleted (PROTECT)


class PlanVersionOutput(PlanVersionSummaryOutput):
    updatedAt = serializers.DateTimeField(source="updated_at")
    basedOnVersionId = serializers.CharField(source="based_on_id", required=False)
    prices = serializers.SerializerMethodField()
    # Meterline extension.
    createdBy = serializers.CharField(source="created_by")

    @extend_schema_field(PlanVersionPriceSlotOutput(many=True))
    def get_prices(self, version) -> list:
        from catalog.selectors import plan_version_lines

        slots = []
        for line in plan_version_lines(version):
            data = PlanVersionPriceSlotOutput(line.price, context={"plan": version.plan}).data
            data["key"] = line.key
            slots.append(data)
        return slots

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get("basedOnVersionId") is None:
            data.pop("basedOnVersionId", None)
        return data


class PlanVersionMintInput(StrictSerializer):
    prices = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=True,
        help_text="The complete price set: price ids, or {priceId, key} objects; keys decide replace/add/remove.",
    )
    basedOnVersionId = serializers.CharField(source="based_on_version_id", required=False)

    def validate_prices(self, value):
        from catalog.services import VersionLine

        lines, errors = [], {}
        for index, entry in enumerate(value):
            if isinstance(entry, str) and entry:
                lines.append(VersionLine(entry))
                continue
            if isinstance(entry, dict) and set(entry) <= {"priceId", "key"} and isinstance(entry.get("priceId"), str):
                key = entry.get("key")
                if key is None or isinstance(key, str):
                    lines.append(VersionLine(entry["priceId"], key or None))
                    continue
            errors[index] = ["Give a price id, or a {priceId, key} object with string values."]
        if errors:
            raise serializers.ValidationError(errors)
        return lines


class PlanVersionTransitionInput(StrictSerializer):
    default = serializers.BooleanField(required=False)

    def validate(self, attrs):
        if attrs.get("default") is not True:
            raise serializers.ValidationError({"default": "Send true to make this version the plan's default."})
        return attrs

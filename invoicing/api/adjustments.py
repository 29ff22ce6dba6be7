"""Subscription adjustments on the wire: the client's ``listSubscriptionAdjustments``,
``createSubscriptionAdjustment`` and ``deleteSubscriptionAdjustment`` under
/v0/subscriptions/{id}/adjustments (invoicing.services.adjustments does the work)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from core.api.fields import UtcDateTimeField
from core.api.pagination import paginate
from core.api.serializers import Constant, StrictSerializer, list_output
from core.formatting import decimal_string
from invoicing import selectors
from invoicing.models import AdjustmentType, SubscriptionAdjustment
from invoicing.services.adjustments import (
    AdjustmentConflict,
    AdjustmentError,
    AdjustmentInput,
    subscription_adjustment_create,
    subscription_adjustment_delete,
)

from .common import CONFLICT, ERRORS, PAGING, BillingApi, conflict, subscription_or_404

NUMBER_FIELDS = ("percentageDiscount", "usageDiscount", "minimumQuantity", "maximumQuantity")
RULES = (
    'percentageDiscount: a decimal fraction in (0, 1] ("0.35" is 35 %), no targetPriceIds; it reduces every '
    "fee and usage line whose service days overlap [effectiveFrom, effectiveTo), prorated by the overlapping "
    "days, with one discount line per charge. usageDiscount: units (> 0) taken off exactly one metered "
    "standard or volume price's quantity before pricing, floored at 0 (several sum); minimumQuantity / "
    "maximumQuantity: the quantity billed for exactly one price's period (the greatest minimum, then the "
    "least maximum), applied in full, after usage discounts, to a usage line whose period END lies in "
    "(effectiveFrom, effectiveTo]. Numbers are plain decimal strings: at most 6 decimal places, fewer than 35 "
    "digits before the point, no sign, exponent or separators. Beyond: 400 naming the field. The same "
    "idempotencyKey on the same subscription returns the first adjustment (200); another body 409 "
    "IDEMPOTENCY_KEY_REUSED."
)


class AdjustmentCreateInput(StrictSerializer):
    # The client's CreateSubscriptionAdjustmentRequest (a union discriminated by ``type``).
    type = serializers.ChoiceField(choices=AdjustmentType.values)
    percentageDiscount = serializers.CharField(max_length=60, required=False)
    usageDiscount = serializers.CharField(max_length=60, required=False)
    minimumQuantity = serializers.CharField(max_length=60, required=False)
    maximumQuantity = serializers.CharField(max_length=60, required=False)
    targetPriceIds = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=10, required=False, default=list
    )
    effectiveFrom = serializers.DateTimeField()
    effectiveTo = serializers.DateTimeField(allow_null=True, required=False)
    description = serializers.CharField(max_length=500, allow_null=True, allow_blank=True, required=False)
    idempotencyKey = serializers.CharField(max_length=255, required=False)

    def validate(self, attrs):
        errors = {}
        for name in NUMBER_FIELDS:
            if name == attrs["type"] and name not in attrs:
                errors[name] = ["This field is required for this type."]
            elif name != attrs["type"] and name in attrs:
                errors[name] = [f"Not a field of a {attrs['type']} adjustment."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class AdjustmentOutput(serializers.Serializer):
    # The client's SubscriptionAdjustment, of an invoicing.models.SubscriptionAdjustment.
    object = Constant("subscriptionAdjustment")
    id = serializers.CharField()
    subscriptionId = serializers.CharField(source="subscription_id")
    type = serializers.ChoiceField(choices=AdjustmentType.values)
    percentageDiscount = serializers.SerializerMethodField()
    usageDiscount = serializers.SerializerMethodField()
    minimumQuantity = serializers.SerializerMethodField()
    maximumQuantity = serializers.SerializerMethodField()
    targetPriceIds = serializers.SerializerMethodField()
    effectiveFrom = UtcDateTimeField(source="effective_from")
    effectiveTo = UtcDateTimeField(source="effective_to", allow_null=True)
    description = serializers.CharField(allow_null=True)
    createdAt = UtcDateTimeField(source="created_at")

    class Meta:
        ref_name = "SubscriptionAdjustment"

    @staticmethod
    def _number(value):
        return None if value is None else decimal_string(value)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_percentageDiscount(self, adjustment):
        return self._number(adjustment.percentage_discount)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_usageDiscount(self, adjustment):
        return self._number(adjustment.usage_discount)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_minimumQuantity(self, adjustment):
        return self._number(adjustment.minimum_quantity)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_maximumQuantity(self, adjustment):
        return self._number(adjustment.maximum_quantity)

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_targetPriceIds(self, adjustment):
        return [adjustment.target_price_id] if adjustment.target_price_id else []


AdjustmentsOutput = list_output("SubscriptionAdjustmentsResponse", AdjustmentOutput, with_object=False)


class SubscriptionAdjustmentsApi(BillingApi):
    @extend_schema(
        operation_id="listSubscriptionAdjustments",
        tags=["subscriptions"],
        parameters=PAGING,
        responses={200: AdjustmentsOutput, **ERRORS},
        description="The subscription's adjustments, oldest window first (effectiveFrom, then creation).",
    )
    def get(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        rows, pagination = paginate(selectors.subscription_adjustment_list(subscription=subscription), request)
        return Response({"data": AdjustmentOutput(rows, many=True).data, "pagination": pagination})

    @extend_schema(
        operation_id="createSubscriptionAdjustment",
        tags=["subscriptions"],
        request=AdjustmentCreateInput,
        responses={201: AdjustmentOutput, 200: AdjustmentOutput, **ERRORS, **CONFLICT},
        description=f"Attaches an adjustment for a dated window; it reaches the periods that close after it is "
        f"created (an existing invoice, draft or not, is not changed). {RULES}",
    )
    def post(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        data = self.body(AdjustmentCreateInput)
        try:
            adjustment, replayed = subscription_adjustment_create(
                subscription=subscription,
                now=timezone.now(),
                data=AdjustmentInput(
                    type=data["type"],
                    number=data[data["type"]],
                    effective_from=data["effectiveFrom"],
                    effective_to=data.get("effectiveTo"),
                    target_price_ids=tuple(data["targetPriceIds"]),
                    description=data.get("description"),
                    idempotency_key=data.get("idempotencyKey"),
                ),
            )
        except AdjustmentError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        except AdjustmentConflict as error:
            raise conflict(str(error), error.code) from None
        return Response(AdjustmentOutput(adjustment).data, status=200 if replayed else 201)


class SubscriptionAdjustmentApi(BillingApi):
    @extend_schema(
        operation_id="deleteSubscriptionAdjustment",
        tags=["subscriptions"],
        responses={
            200: AdjustmentOutput,
            204: OpenApiResponse(description="Removed: no issued invoice applied it."),
            **ERRORS,
            **CONFLICT,
        },
        description="Stops the adjustment for periods not yet billed: 204 when no issued invoice applied it "
        "(removed); otherwise 200 with effectiveTo moved to the end of the last issued period it applied to "
        "(retracted, and the same 200 when repeated). No invoice changes.",
    )
    def delete(self, request, id: str, adjustmentId: str):  # noqa: N803 (the client's path parameter)
        subscription = subscription_or_404(self.merchant, id)
        try:
            adjustment = selectors.subscription_adjustment_list(subscription=subscription).get(pk=adjustmentId)
        except SubscriptionAdjustment.DoesNotExist:
            raise exceptions.NotFound("No such adjustment on this subscription.") from None
        retracted = subscription_adjustment_delete(adjustment=adjustment)
        if retracted is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AdjustmentOutput(retracted).data)

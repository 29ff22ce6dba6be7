"""Price intervals on the wire: the client's ``getSubscriptionIntervals`` and ``editSubscriptionIntervals``
(/v0/subscriptions/{id}/intervals), ``listSubscriptionIntervalChanges`` (/v0/subscriptions/{id}/intervalChanges)
and ``listIntervalChanges`` (/v0/intervalChanges). ``invoicing.intervals`` reads, ``invoicing.services.intervals``
writes (negotiated rates through the catalog's price services, the change record in the same transaction)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from core.api.fields import UtcDateTimeField
from core.api.pagination import paginate
from core.api.schema import BODY_REQUIRED
from core.api.serializers import StrictSerializer, list_output
from invoicing.intervals import interval_change_list, subscription_timeline
from invoicing.models import IntervalChangeReason
from invoicing.services import IntervalConflict, IntervalEdit, IntervalError, subscription_intervals_edit

from .common import CONFLICT, ERRORS, PAGING, BillingApi, conflict, subscription_or_404

BILLING_MODES = ("advance", "arrears")
RULES = (
    "Plan lines are `plan_line` intervals (unitPrice null: the catalog price); an override is the customer's "
    "negotiated rate for that line (the same rate the admin's price page sets). An add overrides a plan line "
    "(its priceKey) with a per-unit or per-package in-arrears "
    "rate, starting at the first moment not yet invoiced (the end of the latest invoiced period, else the "
    "subscription's start) or at a later billing-period start: a period already invoiced is never re-rated. "
    "endDate null is open-ended; a date on a period boundary ends the rate there, a date inside a period ends "
    "it at the end of that period (rates apply to whole periods), and the plan line bills again from there (a "
    "plan line interval of its own, id `<plan price id>:<override id>`). A line may have a sequence of "
    "overrides (Jan-Mar at one rate, from April at another); their windows never overlap (409 "
    "INTERVAL_OVERLAP, also for a re-sent add). An edit changes an override's unitPrice (null reverts to the "
    "catalog price) and a remove deletes an override, both only while no invoice billed it (409 "
    "INTERVAL_BILLED); an edit's endDate closes or moves an override's end, null re-opens it, at any time "
    "but never before the first moment not yet invoiced (409 INTERVAL_BILLED). Every edit is refused while a "
    "draft invoice of the subscription is open (409 INVOICE_DRAFT_OPEN). Bad input: 400 naming the field "
    "(`add[0].startDate`). lineItems counts are 0: invoice lines are derived when a period is billed. "
    "An add with a priceKey on no plan line and a priceId is a `subscription_owned` interval: that catalog price "
    "(a recurring fee or a per-unit/per-package metered price) billed to this subscription only, from startDate "
    "(at or after the open start) to endDate, at unitPrice (null saves today's catalog rate), prorated by day on "
    "the recurring invoices beside the plan's lines; an edit sets its unitPrice (until billed) and endDate (not "
    "before what invoices billed); a remove deletes it until billed (409 INTERVAL_BILLED after). A plan version "
    "change keeps it. Real-time subscriptions take fee intervals only (409 REAL_TIME_METERED_INTERVAL)."
)


class QuantityTransition(StrictSerializer):
    effectiveDate = serializers.DateTimeField()
    quantity = serializers.CharField(max_length=60)


class AddOpInput(StrictSerializer):
    # The client's SubscriptionIntervalAddOp.
    priceKey = serializers.RegexField(r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64)
    unitPrice = serializers.CharField(max_length=60, allow_null=True)
    baseQuantity = serializers.CharField(max_length=60)
    billingCadence = serializers.CharField(max_length=20)
    billingMode = serializers.ChoiceField(choices=BILLING_MODES)
    startDate = serializers.DateTimeField()
    priceId = serializers.CharField(max_length=40, required=False)
    planVersionId = serializers.CharField(max_length=40, required=False)
    quantityTransitions = QuantityTransition(many=True, required=False)
    billDate = serializers.DateTimeField(allow_null=True, required=False)
    endDate = serializers.DateTimeField(allow_null=True, required=False)


# An interval id: a price id, or a resumed plan line's "<plan price id>:<override id>" (invoicing/intervals.py).
INTERVAL_ID_LENGTH = 81


class EditOpInput(StrictSerializer):
    # The client's SubscriptionIntervalEditOp: absent leaves a field unchanged, null is a value.
    id = serializers.CharField(max_length=INTERVAL_ID_LENGTH)
    unitPrice = serializers.CharField(max_length=60, allow_null=True, required=False)
    baseQuantity = serializers.CharField(max_length=60, required=False)
    quantityTransitions = QuantityTransition(many=True, required=False)
    priceId = serializers.CharField(max_length=40, required=False)
    priceKey = serializers.CharField(max_length=64, required=False)
    planVersionId = serializers.CharField(max_length=40, required=False)
    billingCadence = serializers.CharField(max_length=20, required=False)
    billingMode = serializers.ChoiceField(choices=BILLING_MODES, required=False)
    billDate = serializers.DateTimeField(allow_null=True, required=False)
    startDate = serializers.DateTimeField(required=False)
    endDate = serializers.DateTimeField(allow_null=True, required=False)


class RemoveOpInput(StrictSerializer):
    id = serializers.CharField(max_length=INTERVAL_ID_LENGTH)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]})
class MetadataValue(serializers.Field):
    def to_internal_value(self, data):
        if not isinstance(data, (str, int, float, bool)):
            raise serializers.ValidationError("A string, a number or a boolean.")
        return data

    def to_representation(self, value):
        return value


class EditIntervalsInput(StrictSerializer):
    # The client's EditSubscriptionIntervalsRequest: at least one of add, edit or remove.
    add = AddOpInput(many=True, required=False, max_length=50)
    edit = EditOpInput(many=True, required=False, max_length=50)
    remove = RemoveOpInput(many=True, required=False, max_length=50)
    changeReason = serializers.ChoiceField(choices=IntervalChangeReason.values, required=False)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    metadata = serializers.DictField(child=MetadataValue(), required=False)

    def validate(self, attrs):
        if len(attrs.get("metadata", {})) > 50:
            raise serializers.ValidationError({"metadata": ["At most 50 keys."]})
        if not any(attrs.get(name) for name in ("add", "edit", "remove")):
            raise serializers.ValidationError({"add": ["At least one of add, edit or remove is required."]})
        return attrs


class QuantityTransitionOutput(serializers.Serializer):
    effectiveDate = serializers.CharField()
    quantity = serializers.CharField()


class IntervalCopyOutput(serializers.Serializer):
    # The client's SubscriptionIntervalChangeCopy.
    priceId = serializers.CharField()
    priceKey = serializers.CharField()
    planVersionId = serializers.CharField()
    unitPrice = serializers.CharField(allow_null=True)
    resolvedUnitPrice = serializers.CharField()
    baseQuantity = serializers.CharField()
    quantityTransitions = QuantityTransitionOutput(many=True)
    billingCadence = serializers.CharField()
    billingMode = serializers.ChoiceField(choices=BILLING_MODES)
    billDate = serializers.CharField(allow_null=True)
    startDate = serializers.CharField()
    endDate = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "SubscriptionIntervalChangeCopy"


class IntervalOutput(serializers.Serializer):
    # The client's SubscriptionInterval (rendered from ``Interval.wire()``).
    id = serializers.CharField()
    priceId = serializers.CharField()
    priceKey = serializers.CharField()
    kind = serializers.ChoiceField(choices=("plan_line", "subscription_owned"))
    planVersionId = serializers.CharField()
    unitPrice = serializers.CharField(allow_null=True)
    baseQuantity = serializers.CharField()
    quantityTransitions = QuantityTransitionOutput(many=True)
    billingCadence = serializers.CharField()
    billingMode = serializers.ChoiceField(choices=BILLING_MODES)
    billDate = serializers.CharField(allow_null=True)
    startDate = serializers.CharField()
    endDate = serializers.CharField(allow_null=True)

    class Meta:
        ref_name = "SubscriptionInterval"


class IntervalChangeEntryOutput(serializers.Serializer):
    intervalId = serializers.CharField()
    before = IntervalCopyOutput(allow_null=True)
    after = IntervalCopyOutput(allow_null=True)

    class Meta:
        ref_name = "SubscriptionIntervalChangeEntry"


class IntervalChangeOutput(serializers.Serializer):
    # The client's SubscriptionIntervalChange, of an invoicing.models.SubscriptionIntervalChange.
    id = serializers.CharField()
    merchantId = serializers.CharField(source="merchant_id")
    subscriptionId = serializers.CharField(source="subscription_id")
    changeReason = serializers.ChoiceField(source="change_reason", choices=IntervalChangeReason.values)
    description = serializers.CharField(allow_null=True)
    metadata = serializers.DictField(child=MetadataValue())
    createdAt = UtcDateTimeField(source="created_at")
    intervals = IntervalChangeEntryOutput(source="entries", many=True)

    class Meta:
        ref_name = "SubscriptionIntervalChange"


class IntervalsOutput(serializers.Serializer):
    intervals = IntervalOutput(many=True)

    class Meta:
        ref_name = "SubscriptionIntervalsResponse"


class LineItemsOutput(serializers.Serializer):
    created = serializers.IntegerField()
    removed = serializers.IntegerField()


class EditIntervalsOutput(serializers.Serializer):
    intervals = IntervalOutput(many=True)
    unchanged = serializers.BooleanField()
    lineItems = LineItemsOutput()
    intervalChange = IntervalChangeOutput(allow_null=True)

    class Meta:
        ref_name = "EditSubscriptionIntervalsResponse"


IntervalChangesOutput = list_output("SubscriptionIntervalChangesResponse", IntervalChangeOutput, with_object=False)


class SubscriptionIntervalsApi(BillingApi):
    @extend_schema(
        operation_id="getSubscriptionIntervals",
        tags=["subscriptions"],
        responses={200: IntervalsOutput, **ERRORS},
        description="The subscription's price intervals, ordered by start date, ended and future ones included. "
        + RULES,
    )
    def get(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        timeline = subscription_timeline(subscription=subscription)
        return Response(IntervalsOutput({"intervals": [i.wire() for i in timeline.intervals]}).data)

    @extend_schema(
        operation_id="editSubscriptionIntervals",
        tags=["subscriptions"],
        request=EditIntervalsInput,
        # Every member is optional but an edit needs at least one operation: no body is a 400.
        extensions={BODY_REQUIRED: True},
        responses={200: EditIntervalsOutput, **ERRORS, **CONFLICT},
        description="Adds, edits or removes price intervals, all or nothing, and records the change. " + RULES,
    )
    def post(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        data = self.body(EditIntervalsInput)
        edit = IntervalEdit(
            add=list(data.get("add", [])),
            edit=list(data.get("edit", [])),
            remove=list(data.get("remove", [])),
            change_reason=data.get("changeReason", IntervalChangeReason.UNSPECIFIED),
            description=data.get("description"),
            metadata=dict(data.get("metadata", {})),
        )
        try:
            result = subscription_intervals_edit(subscription=subscription, edit=edit, now=timezone.now())
        except IntervalError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        except IntervalConflict as error:
            raise conflict(str(error), error.code) from None
        body = {
            "intervals": [i.wire() for i in result.intervals],
            "unchanged": result.unchanged,
            "lineItems": {"created": 0, "removed": 0},
            "intervalChange": result.change,
        }
        return Response(EditIntervalsOutput(body).data)


class SubscriptionIntervalChangesApi(BillingApi):
    @extend_schema(
        operation_id="listSubscriptionIntervalChanges",
        tags=["subscriptions"],
        parameters=PAGING,
        responses={200: IntervalChangesOutput, **ERRORS},
        description="The subscription's interval changes, oldest first, each interval before and after.",
    )
    def get(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        changes = interval_change_list(merchant=self.merchant, subscription=subscription)
        rows, pagination = paginate(changes, request)
        return Response({"data": IntervalChangeOutput(rows, many=True).data, "pagination": pagination})


class ChangesQuery(StrictSerializer):
    limit = serializers.CharField(required=False)
    offset = serializers.CharField(required=False)
    to = serializers.DateTimeField(required=False)
    changeReason = serializers.ChoiceField(choices=IntervalChangeReason.values, required=False)

    def get_fields(self):
        # ``from`` is a Python keyword, so it cannot be declared as an attribute.
        return {**super().get_fields(), "from": serializers.DateTimeField(required=False)}


class IntervalChangesApi(BillingApi):
    @extend_schema(
        operation_id="listIntervalChanges",
        tags=["subscriptions"],
        parameters=[
            *PAGING,
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Changes recorded at or after it."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="Changes recorded before it."),
            OpenApiParameter("changeReason", str, enum=IntervalChangeReason.values),
        ],
        responses={200: IntervalChangesOutput, **ERRORS},
        description="The interval changes of all your subscriptions, oldest first; `from` included, `to` excluded.",
    )
    def get(self, request):
        query = ChangesQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        changes = interval_change_list(
            merchant=self.merchant,
            since=params.get("from"),
            until=params.get("to"),
            change_reason=params.get("changeReason"),
        )
        rows, pagination = paginate(changes, request)
        return Response({"data": IntervalChangeOutput(rows, many=True).data, "pagination": pagination})

"""Spend alerts and the spend cap of a customer (Meterline extension, invoicing/SPEND.md):

- ``/v0/customers/{id}/spendAlerts`` (GET, POST), ``…/spendAlerts/{alertId}`` (GET, PUT, DELETE) and
  ``…/spendAlerts/{alertId}/firings`` (GET);
- ``/v0/customers/{id}/spendCap`` (GET, PUT, DELETE) and ``…/spendCap/lift`` (POST).

Views parse, call ``invoicing.spend`` and answer with the output serializers; a refused number is a 400
naming the field.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from catalog.api.fields import DecimalString
from catalog.models import Customer
from core.api.fields import UtcDateTimeField
from core.api.serializers import StrictSerializer, list_output
from core.formatting import decimal_string
from invoicing.models import (
    SPEND_AMOUNT_MAX,
    SPEND_PERCENT_MAX,
    SPEND_THRESHOLDS_MAX,
    SpendAlert,
    SpendCapMode,
    SpendThresholdKind,
)
from invoicing.spend import selectors
from invoicing.spend.services import (
    SpendAlertInput,
    SpendError,
    spend_alert_create,
    spend_alert_delete,
    spend_alert_update,
    spend_cap_delete,
    spend_cap_lift,
    spend_cap_set,
)

from .common import ERRORS, PAGING, BillingApi

TAGS = ["spend alerts and caps"]
BOUNDS = (
    f"Amounts (budget, amount thresholds, cap) above 0 and at most {decimal_string(SPEND_AMOUNT_MAX)}; "
    f"percentages above 0 and at most {decimal_string(SPEND_PERCENT_MAX)}; 1 to {SPEND_THRESHOLDS_MAX} "
    "thresholds; at most 4 decimal places. Beyond them: 400."
)


class SpendAlertInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, allow_blank=True, required=False)
    subscriptionId = serializers.CharField(max_length=40, allow_null=True, required=False)
    currency = serializers.CharField(min_length=3, max_length=3)
    metricId = serializers.CharField(
        max_length=40,
        allow_null=True,
        required=False,
        help_text="A usage alert: thresholds (and budget) in this metric's unit. Empty: on the usage cost.",
    )
    thresholdKind = serializers.ChoiceField(choices=SpendThresholdKind.values)
    budget = DecimalString(allow_null=True, required=False)
    thresholds = serializers.ListField(child=DecimalString(), max_length=SPEND_THRESHOLDS_MAX, allow_empty=False)
    recipients = serializers.ListField(
        child=serializers.EmailField(max_length=254),
        max_length=10,
        required=False,
        help_text="Empty: the customer's billing e-mails.",
    )
    active = serializers.BooleanField(required=False, default=True)

    class Meta:
        ref_name = "SpendAlertInput"


class SpendAlertOutput(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    name = serializers.CharField()
    customerId = serializers.CharField(source="customer_id")
    subscriptionId = serializers.CharField(source="subscription_id", allow_null=True)
    currency = serializers.CharField()
    metricId = serializers.CharField(source="metric_id", allow_null=True)
    thresholdKind = serializers.CharField(source="threshold_kind")
    budget = DecimalString(allow_null=True)
    thresholds = serializers.ListField(child=serializers.CharField())
    recipients = serializers.SerializerMethodField()
    active = serializers.BooleanField()
    createdAt = UtcDateTimeField(source="created_at")
    updatedAt = UtcDateTimeField(source="updated_at")

    class Meta:
        ref_name = "SpendAlert"

    @extend_schema_field({"type": "string", "enum": ["spend_alert"]})
    def get_object(self, _alert):
        return "spend_alert"

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_recipients(self, alert):
        return [address.strip() for address in alert.recipients.split(",") if address.strip()]


class SpendAlertFiringOutput(serializers.Serializer):
    alertId = serializers.CharField(source="alert_id")
    periodStart = UtcDateTimeField(source="period_start")
    periodEnd = UtcDateTimeField(source="period_end")
    threshold = DecimalString()
    thresholdAmount = DecimalString(source="threshold_amount")
    accrued = DecimalString()
    firedAt = UtcDateTimeField(source="fired_at")
    webhookEventId = serializers.CharField(source="webhook_event_id")
    emailStatus = serializers.CharField(source="email_status")

    class Meta:
        ref_name = "SpendAlertFiring"


class SpendCapInput(StrictSerializer):
    currency = serializers.CharField(min_length=3, max_length=3)
    amount = DecimalString()
    onReach = serializers.ChoiceField(choices=SpendCapMode.values, required=False, default=SpendCapMode.BLOCK)

    class Meta:
        ref_name = "SpendCapInput"


class SpendCapOutput(serializers.Serializer):
    object = serializers.SerializerMethodField()
    customerId = serializers.CharField(source="customer_id")
    currency = serializers.CharField()
    amount = DecimalString()
    onReach = serializers.CharField(source="on_reach")
    periodStart = UtcDateTimeField(source="period_start", allow_null=True)
    periodEnd = UtcDateTimeField(source="period_end", allow_null=True)
    accrued = DecimalString()
    reachedAt = UtcDateTimeField(source="reached_at", allow_null=True)
    liftedAt = UtcDateTimeField(source="lifted_at", allow_null=True)
    flaggedEvents = serializers.SerializerMethodField(
        help_text="onReach flag: the events accepted over the cap this period (received since reachedAt)."
    )

    class Meta:
        ref_name = "SpendCap"

    @extend_schema_field({"type": "string", "enum": ["spend_cap"]})
    def get_object(self, _cap):
        return "spend_cap"

    @extend_schema_field({"type": "integer"})
    def get_flaggedEvents(self, cap):
        return selectors.spend_cap_flagged_events(cap=cap)


SpendAlertList = list_output("SpendAlertList", SpendAlertOutput, with_object=True)
SpendAlertFiringList = list_output("SpendAlertFiringList", SpendAlertFiringOutput, with_object=True)


def _refused(error: SpendError) -> exceptions.ValidationError:
    return exceptions.ValidationError({error.field: [str(error)]})


class _SpendApi(BillingApi):
    def customer(self, customer_id: str) -> Customer:
        customer = selectors.spend_customer_get(merchant=self.merchant, customer_id=customer_id)
        if customer is None:
            raise exceptions.NotFound("No such customer.")
        return customer

    def alert(self, customer: Customer, alert_id: str) -> SpendAlert:
        alert = selectors.spend_alert_list(customer=customer).filter(pk=alert_id).first()
        if alert is None:
            raise exceptions.NotFound("No such spend alert on this customer.")
        return alert

    def cap_or_404(self, customer: Customer):
        cap = selectors.spend_cap_get(customer=customer)
        if cap is None:
            raise exceptions.NotFound("This customer has no spend cap.")
        return cap

    def alert_input(self) -> SpendAlertInput:
        data = self.body(SpendAlertInputSerializer)
        return SpendAlertInput(
            currency=data["currency"],
            threshold_kind=data["thresholdKind"],
            thresholds=tuple(data["thresholds"]),
            budget=data.get("budget"),
            name=data.get("name") or "",
            recipients=", ".join(data.get("recipients") or []),
            subscription_id=data.get("subscriptionId"),
            active=data["active"],
            metric_id=data.get("metricId"),
        )


class SpendAlertCollectionApi(_SpendApi):
    @extend_schema(
        operation_id="listSpendAlerts",
        tags=TAGS,
        parameters=PAGING,
        responses={200: SpendAlertList, **ERRORS},
        description="Meterline extension: the customer's spend alerts, oldest first.",
    )
    def get(self, request, id: str):
        customer = self.customer(id)
        return self.page(selectors.spend_alert_list(customer=customer), SpendAlertOutput, with_object=True)

    @extend_schema(
        operation_id="createSpendAlert",
        tags=TAGS,
        request=SpendAlertInputSerializer,
        responses={201: SpendAlertOutput, **ERRORS},
        description="Meterline extension: thresholds on the accrued usage cost of the customer's current period "
        "(all its active subscriptions in `currency`, or `subscriptionId`'s), or with `metricId` on that "
        "metric's usage: amounts, or percentages of `budget`. Each threshold fires once per period as a `spend.alert.fired.v0` webhook and an e-mail. "
        + BOUNDS,
    )
    def post(self, request, id: str):
        customer = self.customer(id)
        try:
            alert = spend_alert_create(customer=customer, data=self.alert_input())
        except SpendError as error:
            raise _refused(error) from None
        return Response(SpendAlertOutput(alert).data, status=status.HTTP_201_CREATED)


class SpendAlertDetailApi(_SpendApi):
    @extend_schema(
        operation_id="getSpendAlert", tags=TAGS, responses={200: SpendAlertOutput, **ERRORS}, description="One alert."
    )
    def get(self, request, id: str, alertId: str):  # noqa: N803 (the path parameter's wire name)
        return Response(SpendAlertOutput(self.alert(self.customer(id), alertId)).data)

    @extend_schema(
        operation_id="replaceSpendAlert",
        tags=TAGS,
        request=SpendAlertInputSerializer,
        responses={200: SpendAlertOutput, **ERRORS},
        description="Replaces the alert's settings; thresholds already fired this period stay fired. " + BOUNDS,
    )
    def put(self, request, id: str, alertId: str):  # noqa: N803
        alert = self.alert(self.customer(id), alertId)
        try:
            alert = spend_alert_update(alert=alert, data=self.alert_input())
        except SpendError as error:
            raise _refused(error) from None
        return Response(SpendAlertOutput(alert).data)

    @extend_schema(
        operation_id="deleteSpendAlert",
        tags=TAGS,
        responses={204: OpenApiResponse(description="Deleted, with its firings."), **ERRORS},
    )
    def delete(self, request, id: str, alertId: str):  # noqa: N803
        spend_alert_delete(alert=self.alert(self.customer(id), alertId))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SpendAlertFiringsApi(_SpendApi):
    @extend_schema(
        operation_id="listSpendAlertFirings",
        tags=TAGS,
        parameters=PAGING,
        responses={200: SpendAlertFiringList, **ERRORS},
        description="The thresholds the alert fired, newest first: one per period and threshold.",
    )
    def get(self, request, id: str, alertId: str):  # noqa: N803
        alert = self.alert(self.customer(id), alertId)
        return self.page(selectors.spend_alert_firing_list(alert=alert), SpendAlertFiringOutput, with_object=True)


class SpendCapApi(_SpendApi):
    @extend_schema(
        operation_id="getSpendCap",
        tags=TAGS,
        responses={200: SpendCapOutput, **ERRORS},
        description="Meterline extension: the customer's spend cap and its state in the current period.",
    )
    def get(self, request, id: str):
        return Response(SpendCapOutput(self.cap_or_404(self.customer(id))).data)

    @extend_schema(
        operation_id="setSpendCap",
        tags=TAGS,
        request=SpendCapInput,
        responses={200: SpendCapOutput, **ERRORS},
        description="Sets the customer's hard cap on the accrued usage cost of each period. Reached, the "
        "customer's events answer 402 `SPEND_CAP_REACHED` (`onReach: block`) or are accepted and counted as "
        "flagged (`onReach: flag`), from the evaluation that sees it (within about a minute). " + BOUNDS,
    )
    def put(self, request, id: str):
        customer = self.customer(id)
        data = self.body(SpendCapInput)
        try:
            cap = spend_cap_set(
                customer=customer,
                currency=data["currency"],
                amount=data["amount"],
                on_reach=data["onReach"],
                now=timezone.now(),
            )
        except SpendError as error:
            raise _refused(error) from None
        return Response(SpendCapOutput(cap).data)

    @extend_schema(
        operation_id="deleteSpendCap",
        tags=TAGS,
        responses={204: OpenApiResponse(description="Removed; a refusal it caused ends at once."), **ERRORS},
    )
    def delete(self, request, id: str):
        customer = self.customer(id)
        if not spend_cap_delete(customer=customer):
            raise exceptions.NotFound("This customer has no spend cap.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class SpendCapLiftApi(_SpendApi):
    @extend_schema(
        operation_id="liftSpendCap",
        tags=TAGS,
        request=None,
        responses={200: SpendCapOutput, **ERRORS},
        description="Lifts the cap for the rest of the current period: the customer's usage is accepted (not "
        "flagged) until the period ends; the cap applies again from the next period.",
    )
    def post(self, request, id: str):
        customer = self.customer(id)
        self.cap_or_404(customer)
        cap = spend_cap_lift(customer=customer, now=timezone.now(), lifted_by=f"API key {request.auth.name}")
        return Response(SpendCapOutput(cap).data)

"""Entitlements and grants under /v1/entitlements (digest §3.11), wire-compatible with the client.

Views subclass the catalog API's base view (decimal JSON, null-character refusal, error shape). The grant
purchase endpoint records an invoice, so it lives in ``invoicing.api.grants``; its response shape is here.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from catalog.api.fields import DecimalNumber, MerchantScopedId, check_merchant
from catalog.api.views import CatalogApi
from catalog.models import Customer, Feature, FeatureType, Subscription
from core.api.errors import ApiError
from core.api.fields import TextKeyDictField, parameter_combination_error, wire_field_names
from core.api.pagination import paginate
from core.api.serializers import Constant, ErrorOutput, PaginationOutput, StrictSerializer

from .. import entitlements as ent
from ..models import Entitlement, EntitlementGrant

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}
CONFLICT = {409: ErrorOutput}
INT32 = 2**31 - 1
_DATETIME = serializers.DateTimeField()


def _time(value):
    return None if value is None else _DATETIME.to_representation(value)


def _number(value: Decimal | None):
    return None if value is None else value.normalize()


class Credits(DecimalNumber):
    """A credit amount (JSON number): finite and within the shared bound (``catalog.pricing.limits``:
    15 digits before the point, 12 after it), checked by ``DecimalNumber``."""

    def __init__(self, *, positive: bool = False, **kwargs):
        self.positive = positive
        super().__init__(min_value=None if positive else Decimal(0), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if self.positive and value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value


def _query_datetime(request, name: str):
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return _DATETIME.to_internal_value(raw)
    except serializers.ValidationError as exc:
        raise exceptions.ValidationError({name: exc.detail}) from None


def _query_bool(request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return False
    if raw.lower() not in {"true", "false"}:
        raise exceptions.ValidationError({name: ["Give true or false."]})
    return raw.lower() == "true"


def _conflict(exc: ent.EntitlementConflict) -> ApiError:
    return ApiError(exc.message, status_code=status.HTTP_409_CONFLICT, code=exc.code, details=exc.details)


# -- inputs ------------------------------------------------------------------------------------------


class UsagePeriodInput(StrictSerializer):
    interval = serializers.CharField(max_length=40, help_text="ISO 8601 duration, e.g. P1M.")
    anchor = serializers.DateTimeField(required=False)


class TemplateInput(StrictSerializer):
    """The entitlement template, keyed on ``type`` (the feature's type)."""

    type = serializers.ChoiceField(choices=FeatureType.choices)
    config = serializers.DictField(required=False, help_text="static: the configuration granted (required).")
    usagePeriod = UsagePeriodInput(required=False)
    isSoftLimit = serializers.BooleanField(required=False)
    issueAfterReset = Credits(required=False, help_text="metered: credits granted in every usage period.")
    issueAfterResetPriority = serializers.IntegerField(required=False, min_value=-INT32, max_value=INT32)
    preserveOverageAtReset = serializers.BooleanField(required=False)
    resetMaxRollover = Credits(required=False)
    resetMinRollover = Credits(required=False)

    METERED_ONLY = (
        "usagePeriod",
        "isSoftLimit",
        "issueAfterReset",
        "issueAfterResetPriority",
        "preserveOverageAtReset",
        "resetMaxRollover",
        "resetMinRollover",
    )

    def validate(self, attrs):
        kind = attrs["type"]
        errors = {}
        if kind == FeatureType.STATIC and "config" not in attrs:
            errors["config"] = ["A static template needs a config object."]
        if kind != FeatureType.STATIC and "config" in attrs:
            errors["config"] = ["Only a static template has a config."]
        for name in self.METERED_ONLY:
            if kind != FeatureType.METERED and name in attrs:
                errors[name] = ["Only a metered template has this field."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class IssueEntitlementInput(StrictSerializer):
    customerId = MerchantScopedId(Customer, source="customer")
    featureId = MerchantScopedId(Feature, source="feature")
    template = TemplateInput()
    activeFrom = serializers.DateTimeField(source="active_from", required=False)
    activeTo = serializers.DateTimeField(source="active_to", required=False, allow_null=True)
    subscriptionId = MerchantScopedId(Subscription, source="subscription", required=False, allow_null=True)
    metadata = TextKeyDictField(child=serializers.CharField(allow_blank=True), required=False)


class CreateGrantInput(StrictSerializer):
    amount = Credits(positive=True)
    idempotencyKey = serializers.CharField(source="idempotency_key", max_length=255)
    effectiveAt = serializers.DateTimeField(source="effective_at", required=False)
    expiresAt = serializers.DateTimeField(source="expires_at", required=False, allow_null=True)
    resetMaxRollover = Credits(source="reset_max_rollover", required=False)
    resetMinRollover = Credits(source="reset_min_rollover", required=False)
    priority = serializers.IntegerField(required=False, min_value=-INT32, max_value=INT32)


# -- outputs (schema) and their builders -------------------------------------------------------------


class _EntitlementFields(serializers.Serializer):
    customerId = serializers.CharField()
    featureId = serializers.CharField()
    featureKey = serializers.CharField()
    productId = serializers.CharField()
    subscriptionId = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["active", "canceled", "expired"])
    activeFrom = serializers.DateTimeField()
    activeTo = serializers.DateTimeField(allow_null=True)
    hasAccess = serializers.BooleanField()
    metadata = serializers.DictField(child=serializers.CharField())
    config = serializers.DictField(allow_null=True)
    featureType = serializers.ChoiceField(choices=FeatureType.choices)
    isSoftLimit = serializers.BooleanField(required=False, help_text="metered only")
    balance = DecimalNumber(required=False, help_text="metered only")  # a JSON number on the wire
    usageInPeriod = DecimalNumber(required=False, help_text="metered only")
    overage = DecimalNumber(required=False, help_text="metered only")
    pricingUnitId = serializers.CharField(required=False, allow_null=True, help_text="metered only; always null")
    currentPeriodStart = serializers.DateTimeField(required=False, allow_null=True, help_text="metered only")
    currentPeriodEnd = serializers.DateTimeField(required=False, allow_null=True, help_text="metered only")


class EntitlementDetailOutput(_EntitlementFields):
    id = serializers.CharField()
    object = Constant("entitlement")


class EntitlementListItemOutput(_EntitlementFields):
    entitlementId = serializers.CharField()


class EntitlementListOutput(serializers.Serializer):
    object = Constant("list")
    data = EntitlementListItemOutput(many=True)
    pagination = PaginationOutput()


class GrantOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("grant")
    entitlementId = serializers.CharField()
    amount = DecimalNumber()
    effectiveAt = serializers.DateTimeField()
    createdAt = serializers.DateTimeField()
    recurrencePeriod = serializers.CharField(allow_null=True)
    idempotencyKey = serializers.CharField(allow_null=True)
    expiresAt = serializers.DateTimeField(allow_null=True)
    voidedAt = serializers.DateTimeField(allow_null=True)
    resetMaxRollover = DecimalNumber(allow_null=True)
    resetMinRollover = DecimalNumber(allow_null=True)
    priority = serializers.IntegerField()


class GrantListOutput(serializers.Serializer):
    object = Constant("list")
    data = GrantOutput(many=True)
    pagination = PaginationOutput()


def entitlement_body(entitlement: Entitlement, *, at, id_key: str = "id") -> dict:
    """An entitlement on the wire (detail: ``id`` and ``object``; list item: ``entitlementId``)."""
    feature = entitlement.feature
    try:
        state = ent.entitlement_state(entitlement, at=at)
    except ent.TooManyPeriods as exc:
        raise exceptions.ValidationError({"at": [str(exc)]}) from None
    body = {id_key: entitlement.pk}
    if id_key == "id":
        body["object"] = "entitlement"
    body.update(
        customerId=entitlement.customer_id,
        featureId=feature.pk,
        featureKey=feature.key,
        productId=feature.product_id,
        subscriptionId=entitlement.subscription_id,
        status=state.status,
        activeFrom=_time(entitlement.active_from),
        activeTo=_time(entitlement.active_to),
        hasAccess=state.has_access,
        metadata=entitlement.metadata,
        config=entitlement.config if feature.type == FeatureType.STATIC else None,
        featureType=feature.type,
    )
    if feature.type == FeatureType.METERED:
        body.update(
            isSoftLimit=entitlement.is_soft_limit,
            balance=_number(state.balance),
            usageInPeriod=_number(state.usage_in_period),
            overage=_number(state.overage),
            pricingUnitId=None,
            currentPeriodStart=_time(state.period_start),
            currentPeriodEnd=_time(state.period_end),
        )
    return body


def grant_body(grant: EntitlementGrant) -> dict:
    return {
        "id": grant.pk,
        "object": "grant",
        "entitlementId": grant.entitlement_id,
        "amount": _number(grant.amount),
        "effectiveAt": _time(grant.effective_at),
        "createdAt": _time(grant.created_at),
        "recurrencePeriod": None,
        "idempotencyKey": grant.idempotency_key,
        "expiresAt": _time(grant.expires_at),
        "voidedAt": _time(grant.voided_at),
        "resetMaxRollover": _number(grant.reset_max_rollover),
        "resetMinRollover": _number(grant.reset_min_rollover),
        "priority": grant.priority,
    }


class EntitlementScopedApi(CatalogApi):
    def entitlement(self, entitlement_id: str) -> Entitlement:
        try:
            return ent.entitlement_get(merchant=self.merchant, entitlement_id=entitlement_id)
        except Entitlement.DoesNotExist:
            raise Http404(f"No entitlement with id {entitlement_id!r}.") from None


# -- views -------------------------------------------------------------------------------------------

LIST_PARAMETERS = [
    OpenApiParameter("customerId", str, description="Give exactly one of customerId and externalCustomerId."),
    OpenApiParameter("externalCustomerId", str),
    OpenApiParameter("merchantId", str),
    OpenApiParameter("featureKey", str, description="Needs productId."),
    OpenApiParameter("productId", str),
    OpenApiParameter("subscriptionId", str),
    OpenApiParameter("at", {"type": "string", "format": "date-time"}, description="Evaluate at this time."),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="Default 10."),
    OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, description="Default 0."),
]


class EntitlementCollectionApi(EntitlementScopedApi):
    @extend_schema(
        operation_id="listEntitlements",
        tags=["entitlements"],
        parameters=LIST_PARAMETERS,
        responses={200: EntitlementListOutput, **ERRORS},
    )
    def get(self, request):
        query = request.query_params
        check_merchant(request, query.get("merchantId"))
        customer_id, external_id = query.get("customerId"), query.get("externalCustomerId")
        if bool(customer_id) == bool(external_id):
            raise parameter_combination_error("customerId", "Give exactly one of customerId and externalCustomerId.")
        if query.get("featureKey") and not query.get("productId"):
            raise parameter_combination_error("featureKey", "featureKey needs productId.")
        at = _query_datetime(request, "at") or timezone.now()
        lookup = {"pk": customer_id} if customer_id else {"external_id": external_id}
        customer = Customer.objects.filter(merchant=self.merchant, **lookup).first()
        if customer is None:
            raise Http404("No such customer.")
        entitlements = ent.entitlement_list(
            merchant=self.merchant,
            customer=customer,
            product_id=query.get("productId") or None,
            feature_key=query.get("featureKey") or None,
            subscription_id=query.get("subscriptionId") or None,
        )
        rows, pagination = paginate(entitlements, request)
        data = [entitlement_body(e, at=at, id_key="entitlementId") for e in rows]
        return Response({"object": "list", "data": data, "pagination": pagination})

    @extend_schema(
        operation_id="issueEntitlement",
        tags=["entitlements"],
        request=IssueEntitlementInput,
        responses={201: EntitlementDetailOutput, **ERRORS, **CONFLICT},
    )
    def post(self, request):
        data = self.body(IssueEntitlementInput)
        now = timezone.now()
        try:
            with wire_field_names():
                entitlement = ent.entitlement_issue(merchant=self.merchant, now=now, **data)
        except ent.EntitlementConflict as exc:
            raise _conflict(exc) from None
        entitlement = self.entitlement(entitlement.pk)
        return Response(entitlement_body(entitlement, at=now), status=status.HTTP_201_CREATED)


class EntitlementDetailApi(EntitlementScopedApi):
    @extend_schema(
        operation_id="getEntitlement",
        tags=["entitlements"],
        parameters=[OpenApiParameter("at", {"type": "string", "format": "date-time"})],
        responses={200: EntitlementDetailOutput, **ERRORS},
    )
    def get(self, request, entitlement_id: str):
        entitlement = self.entitlement(entitlement_id)
        at = _query_datetime(request, "at") or timezone.now()
        return Response(entitlement_body(entitlement, at=at))


class GrantCollectionApi(EntitlementScopedApi):
    @extend_schema(
        operation_id="listEntitlementGrants",
        tags=["entitlements"],
        parameters=[
            OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100}, description="Default 20."),
            OpenApiParameter("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
            OpenApiParameter("includeVoided", {"type": "boolean"}),
        ],
        responses={200: GrantListOutput, **ERRORS},
    )
    def get(self, request, entitlement_id: str):
        entitlement = self.entitlement(entitlement_id)
        grants = ent.grant_list(entitlement=entitlement, include_voided=_query_bool(request, "includeVoided"))
        rows, pagination = paginate(grants, request, default_limit=20)
        return Response({"object": "list", "data": [grant_body(g) for g in rows], "pagination": pagination})

    @extend_schema(
        operation_id="createEntitlementGrant",
        tags=["entitlements"],
        request=CreateGrantInput,
        responses={201: GrantOutput, **ERRORS, **CONFLICT},
        description="A retry with the same idempotencyKey answers 201 with the first grant (409 if the amount "
        "differs). Only metered entitlements take grants (409 ENTITLEMENT_NOT_METERED).",
    )
    def post(self, request, entitlement_id: str):
        entitlement = self.entitlement(entitlement_id)
        data = self.body(CreateGrantInput)
        try:
            with wire_field_names():
                grant, _created = ent.entitlement_grant_create(entitlement=entitlement, now=timezone.now(), **data)
        except ent.EntitlementConflict as exc:
            raise _conflict(exc) from None
        return Response(grant_body(grant), status=status.HTTP_201_CREATED)


class GrantDetailApi(EntitlementScopedApi):
    def grant(self, entitlement_id: str, grant_id: str) -> EntitlementGrant:
        try:
            return ent.grant_get(entitlement=self.entitlement(entitlement_id), grant_id=grant_id)
        except EntitlementGrant.DoesNotExist:
            raise Http404(f"No grant with id {grant_id!r}.") from None

    @extend_schema(operation_id="getEntitlementGrant", tags=["entitlements"], responses={200: GrantOutput, **ERRORS})
    def get(self, request, entitlement_id: str, grant_id: str):
        return Response(grant_body(self.grant(entitlement_id, grant_id)))

    @extend_schema(
        operation_id="voidEntitlementGrant",
        tags=["entitlements"],
        responses={200: GrantOutput, **ERRORS},
        description="Void the grant (idempotent): it no longer counts towards the balance.",
    )
    def delete(self, request, entitlement_id: str, grant_id: str):
        grant = ent.entitlement_grant_void(grant=self.grant(entitlement_id, grant_id), now=timezone.now())
        return Response(grant_body(grant))

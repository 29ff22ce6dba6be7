"""Features under /v0/features: what a product offers that entitlements grant (digest §3.10).

Wire shape: ``{id, object: "feature", key, name, type, merchantId, productId, metadata, createdAt, updatedAt}``
plus the extension ``billableMetricId`` (a metered feature's usage source; ignored by the client).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from catalog import models, selectors, services
from core.api.fields import TextKeyDictField, require_query, wire_field_names
from core.api.serializers import Constant, StrictSerializer, list_output

from .fields import MerchantScopedId, check_merchant
from .views import ERRORS, NO_CONTENT, PAGING, CatalogApi

FEATURE_FIELDS = {"product": "productId", "billable_metric": "billableMetricId"}
KEY_HELP = "Lowercase letters, digits and hyphens; unique within the product."


class FeatureCreateInput(StrictSerializer):
    key = serializers.RegexField(models.FEATURE_KEY_PATTERN, max_length=100, help_text=KEY_HELP)
    name = serializers.CharField(max_length=200)
    merchantId = serializers.CharField(source="merchant_id")
    productId = MerchantScopedId(models.Product, source="product")
    type = serializers.ChoiceField(choices=models.FeatureType.choices, required=False)
    metadata = TextKeyDictField(child=serializers.CharField(allow_blank=True), required=False)
    billableMetricId = MerchantScopedId(
        models.BillableMetric, source="billable_metric", required=False, allow_null=True
    )


class FeatureUpdateInput(StrictSerializer):
    key = serializers.RegexField(models.FEATURE_KEY_PATTERN, max_length=100, required=False, help_text=KEY_HELP)
    name = serializers.CharField(max_length=200, required=False)
    type = serializers.ChoiceField(choices=models.FeatureType.choices, required=False)
    metadata = TextKeyDictField(child=serializers.CharField(allow_blank=True), required=False)
    billableMetricId = MerchantScopedId(
        models.BillableMetric, source="billable_metric", required=False, allow_null=True
    )


class FeatureOutput(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("feature")
    key = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    merchantId = serializers.CharField(source="merchant_id")
    productId = serializers.CharField(source="product_id")
    metadata = serializers.DictField(child=serializers.CharField())
    billableMetricId = serializers.CharField(source="billable_metric_id", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class FeatureCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listFeatures",
        tags=["features"],
        parameters=[OpenApiParameter("productId", str, required=True), OpenApiParameter("key", str), *PAGING],
        responses={200: list_output("FeatureList", FeatureOutput, with_object=True), **ERRORS},
    )
    def get(self, request):
        features = selectors.feature_list(
            merchant=self.merchant,
            product_id=require_query(request, "productId"),
            key=request.query_params.get("key"),
        )
        return self.page(features, FeatureOutput, with_object=True)

    @extend_schema(
        operation_id="createFeature",
        tags=["features"],
        request=FeatureCreateInput,
        responses={201: FeatureOutput, **ERRORS},
    )
    def post(self, request):
        data = self.body(FeatureCreateInput)
        check_merchant(request, data.pop("merchant_id"))
        with wire_field_names(FEATURE_FIELDS):
            feature = services.feature_create(merchant=self.merchant, **data)
        return Response(FeatureOutput(feature).data, status=status.HTTP_201_CREATED)


class FeatureDetailApi(CatalogApi):
    def get_object(self, id: str) -> models.Feature:
        return selectors.feature_get(merchant=self.merchant, feature_id=id)

    @extend_schema(operation_id="getFeature", tags=["features"], responses={200: FeatureOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(FeatureOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updateFeature",
        tags=["features"],
        request=FeatureUpdateInput,
        responses={200: FeatureOutput, **ERRORS},
    )
    def patch(self, request, id: str):
        feature = self.get_object(id)
        data = self.body(FeatureUpdateInput)
        with wire_field_names(FEATURE_FIELDS):
            feature = services.feature_update(feature=feature, changes=data)
        return Response(FeatureOutput(feature).data)

    @extend_schema(
        operation_id="deleteFeature",
        tags=["features"],
        responses={**NO_CONTENT, **ERRORS, 409: ERRORS[400]},
    )
    def delete(self, request, id: str):
        services.feature_delete(feature=self.get_object(id))
        return Response(status=status.HTTP_204_NO_CONTENT)

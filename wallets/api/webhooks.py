"""The Paygentic webhook API: ``/v0/webhooks`` (the merchant's on/off switch) and ``/v0/webhooks/portal``
(a signed link to the page where endpoints, event types and the signing secret are managed)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from catalog.api.fields import check_merchant
from catalog.api.views import ERRORS, CatalogApi
from core.api.errors import ApiError
from core.formatting import iso_utc

from ..models import WebhookSettings
from ..portal import webhook_portal_link
from ..webhooks import (
    WebhooksAlreadyEnabled,
    WebhooksNeverEnabled,
    webhook_settings_get,
    webhooks_enable,
    webhooks_update,
)

MERCHANT_ID = OpenApiParameter(
    "merchantId", str, description="Defaults to the merchant of the API key; another merchant's id → 403."
)
NEVER_ENABLED = "Webhooks have never been enabled for this merchant: POST /v0/webhooks first."


class WebhooksUpdateInput(serializers.Serializer):
    enabled = serializers.BooleanField()


WebhooksOutput = inline_serializer(
    "Webhooks",
    {
        "object": serializers.CharField(default="webhooks"),
        "applicationId": serializers.CharField(),
        "createdAt": serializers.DateTimeField(),
        "enabled": serializers.BooleanField(),
        "merchantId": serializers.CharField(),
        "updatedAt": serializers.DateTimeField(),
    },
)
WebhookPortalOutput = inline_serializer(
    "WebhookPortal",
    {
        "object": serializers.CharField(default="webhookPortal"),
        "url": serializers.CharField(),
        "expiresAt": serializers.DateTimeField(),
    },
)


def webhooks_out(settings: WebhookSettings) -> dict:
    return {
        "object": "webhooks",
        "applicationId": settings.pk,
        "createdAt": iso_utc(settings.created_at),
        "enabled": settings.enabled,
        "merchantId": settings.merchant_id,
        "updatedAt": iso_utc(settings.updated_at),
    }


def _not_found() -> ApiError:
    return ApiError(NEVER_ENABLED, status_code=status.HTTP_404_NOT_FOUND)


class WebhooksApi(CatalogApi):
    def _merchant(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        return self.merchant

    @extend_schema(
        operation_id="getWebhooks",
        tags=["webhooks"],
        parameters=[MERCHANT_ID],
        responses={200: WebhooksOutput, **ERRORS},
    )
    def get(self, request):
        try:
            return Response(webhooks_out(webhook_settings_get(merchant=self._merchant(request))))
        except WebhooksNeverEnabled:
            raise _not_found() from None

    @extend_schema(
        operation_id="createWebhooks",
        tags=["webhooks"],
        parameters=[MERCHANT_ID],
        request=None,
        responses={201: WebhooksOutput, **ERRORS},
        description="Once per merchant: a second call → 400 DUPLICATE_RESOURCE (use PATCH to turn delivery on or off).",
    )
    def post(self, request):
        merchant = self._merchant(request)
        try:
            settings = webhooks_enable(merchant=merchant, now=timezone.now())
        except WebhooksAlreadyEnabled as error:
            # 400, not 409: the client's enable operation declares DUPLICATE_RESOURCE as a bad request.
            raise ApiError(str(error), status_code=status.HTTP_400_BAD_REQUEST, code="DUPLICATE_RESOURCE") from None
        return Response(webhooks_out(settings), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="updateWebhooks",
        tags=["webhooks"],
        parameters=[MERCHANT_ID],
        request=WebhooksUpdateInput,
        responses={200: WebhooksOutput, **ERRORS},
    )
    def patch(self, request):
        merchant = self._merchant(request)
        data = self.body(WebhooksUpdateInput)
        try:
            settings = webhooks_update(merchant=merchant, enabled=data["enabled"], now=timezone.now())
        except WebhooksNeverEnabled:
            raise _not_found() from None
        return Response(webhooks_out(settings))

    @extend_schema(
        operation_id="deleteWebhooks",
        tags=["webhooks"],
        parameters=[MERCHANT_ID],
        responses={204: None, **ERRORS},
        description="Pauses delivery, as PATCH {enabled: false}: the endpoints and their subscriptions are kept.",
    )
    def delete(self, request):
        try:
            webhooks_update(merchant=self._merchant(request), enabled=False, now=timezone.now())
        except WebhooksNeverEnabled:
            raise _not_found() from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookPortalApi(CatalogApi):
    @extend_schema(
        operation_id="getWebhookPortal",
        tags=["webhooks"],
        parameters=[MERCHANT_ID],
        responses={200: WebhookPortalOutput, **ERRORS},
        description="A link to Meterline's webhook portal for the merchant, valid for one hour.",
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        try:
            webhook_settings_get(merchant=self.merchant)
        except WebhooksNeverEnabled:
            raise _not_found() from None
        path, expires_at = webhook_portal_link(merchant=self.merchant, now=timezone.now())
        return Response(
            {"object": "webhookPortal", "url": request.build_absolute_uri(path), "expiresAt": iso_utc(expires_at)}
        )

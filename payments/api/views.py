"""The client's ``merchantIntegrations`` operations (list, upsert, get, disconnect) and
``/v0/customers/{id}/paymentMethods`` (list, set up). Views parse, call ``payments.services`` and answer with
the output serializers."""

from __future__ import annotations

import logging

from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from catalog.api.fields import check_merchant
from catalog.api.views import ERRORS, CatalogApi
from catalog.models import Customer
from core.api.errors import ApiError
from core.api.fields import wire_field_names
from core.api.schema import error_responses, paging_parameters
from core.api.serializers import list_output

from .. import selectors, services
from ..errors import PaymentsNotConnected
from ..providers import PaymentProviderError
from . import serializers as s

logger = logging.getLogger(__name__)

WIRE_NAMES = {
    "secret_key": "config.secretKey",
    "webhook_secret": "config.webhookSecret",
    "publishable_key": "config.publishableKey",
    "external_id": "externalId",
    "expires_at": "expiresAt",
}
PROVIDER_ERRORS = error_responses(409, 502)


def provider_error(error: PaymentProviderError) -> ApiError:
    return ApiError(
        f"The payment provider refused or could not be reached: {error.message}",
        status_code=status.HTTP_502_BAD_GATEWAY,
        code="PAYMENT_PROVIDER_ERROR",
        details={"providerCode": error.code, "retryable": error.retryable},
    )


def not_connected(error: PaymentsNotConnected) -> ApiError:
    # 409: the request is valid; the merchant's state (no provider connected) is what refuses it.
    return ApiError(error.message, status_code=status.HTTP_409_CONFLICT, code="PAYMENT_PROVIDER_NOT_CONNECTED")


class MerchantIntegrationCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listMerchantIntegrations",
        tags=["merchantIntegrations"],
        parameters=[
            OpenApiParameter("merchantId", str, description="Defaults to the API key's merchant; another's → 403."),
            OpenApiParameter("provider", str, description="Filter by provider (stripe)."),
            *paging_parameters(),
        ],
        responses={
            200: list_output("MerchantIntegrationList", s.MerchantIntegrationOutput, with_object=False),
            **ERRORS,
        },
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        rows = selectors.integration_list(merchant=self.merchant, provider=request.query_params.get("provider"))
        return self.page(rows, s.MerchantIntegrationOutput, with_object=False)

    @extend_schema(
        operation_id="upsertMerchantIntegration",
        tags=["merchantIntegrations"],
        request=s.MerchantIntegrationUpsertInput,
        responses={200: s.MerchantIntegrationOutput, **ERRORS},
        description=(
            "Connect Stripe (provider `stripe`) or change its connection. `config.secretKey` (required to connect)"
            " and `config.webhookSecret` are stored encrypted and never shown again: answers carry only"
            " `config.secretKeyHint`/`webhookSecretHint`. What a call does not name is kept."
        ),
    )
    @method_decorator(sensitive_variables("data", "config"))
    def put(self, request):
        data = self.body(s.MerchantIntegrationUpsertInput)
        check_merchant(request, data["merchantId"])
        config = data.get("config") or {}
        with wire_field_names(WIRE_NAMES):
            integration = services.integration_upsert(
                merchant=self.merchant,
                provider=data["provider"],
                now=timezone.now(),
                secret_key=config.get("secretKey"),
                webhook_secret=config.get("webhookSecret"),
                publishable_key=config.get("publishableKey"),
                external_id=data.get("externalId"),
                status=data.get("status"),
                metadata=data.get("metadata"),
            )
        return Response(s.MerchantIntegrationOutput(integration).data)


class MerchantIntegrationDetailApi(CatalogApi):
    @extend_schema(
        operation_id="getMerchantIntegration",
        tags=["merchantIntegrations"],
        responses={200: s.MerchantIntegrationOutput, **ERRORS},
    )
    def get(self, request, id: str):
        return Response(
            s.MerchantIntegrationOutput(selectors.integration_get(merchant=self.merchant, integration_id=id)).data
        )


class MerchantIntegrationDisconnectApi(CatalogApi):
    @extend_schema(
        operation_id="disconnectMerchantIntegration",
        tags=["merchantIntegrations"],
        request=None,
        responses={200: s.MerchantIntegrationOutput, **ERRORS},
        description="Stops charging through the provider and erases the stored secrets; PUT connects again.",
    )
    def patch(self, request, id: str):
        integration = selectors.integration_get(merchant=self.merchant, integration_id=id)
        integration = services.integration_disconnect(integration=integration, now=timezone.now())
        return Response(s.MerchantIntegrationOutput(integration).data)


class CustomerPaymentMethodsApi(CatalogApi):
    def _customer(self, customer_id: str) -> Customer:
        # Another merchant's customer is indistinguishable from a missing one: 404.
        return get_object_or_404(Customer, pk=customer_id, merchant=self.merchant)

    @extend_schema(
        operation_id="listCustomerPaymentMethods",
        tags=["customers"],
        responses={200: s.PaymentMethodListOutput, **ERRORS},
        description=(
            "The customer's saved payment methods, read from the connected provider (a card saved on its hosted"
            " page appears here). `isDefault` (extension) marks the one charged off-session."
        ),
    )
    def get(self, request, id: str):
        customer = self._customer(id)
        try:
            services.payment_methods_sync(customer=customer, now=timezone.now())
        except PaymentProviderError as error:
            # The provider is down: answer with what we last knew rather than nothing.
            logger.warning("payment methods of %s not refreshed: %s", customer.pk, error.message)
        return Response(s.payment_method_list_out(list(selectors.payment_method_list(customer=customer))))

    @extend_schema(
        operation_id="createCustomerPaymentMethod",
        tags=["customers"],
        request=s.PaymentSessionCreateInput,
        responses={201: s.CustomerPaymentSessionOutput, **ERRORS, **PROVIDER_ERRORS},
        description=(
            "A hosted page (Stripe Checkout in setup mode) where the customer saves a card or bank mandate."
            " Stripe's pages stay open 30 minutes to 24 hours: `expiresAt` defaults to 24 hours, a later one is"
            " shortened to 24 hours (the answer's `expiresAt` is the real end). 409 PAYMENT_PROVIDER_NOT_CONNECTED"
            " until Stripe is connected; 502 PAYMENT_PROVIDER_ERROR when Stripe refuses or cannot be reached."
        ),
    )
    def post(self, request, id: str):
        customer = self._customer(id)
        data = self.body(s.PaymentSessionCreateInput)
        try:
            with wire_field_names(WIRE_NAMES):
                session = services.payment_session_setup_create(
                    customer=customer,
                    now=timezone.now(),
                    success_url=data.get("successRedirectUrl", ""),
                    failure_url=data.get("failureRedirectUrl", ""),
                    metadata=data.get("metadata"),
                    expires_at=data.get("expiresAt"),
                )
        except PaymentsNotConnected as error:
            raise not_connected(error) from None
        except PaymentProviderError as error:
            raise provider_error(error) from None
        return Response(s.payment_session_out(session), status=status.HTTP_201_CREATED)

"""The client's ``merchantIntegrations`` operations (list, upsert, get, disconnect),
``/v0/customers/{id}/paymentMethods`` (list, set up) and ``POST /v2/invoices/{id}/retryPayment``. Views parse, call ``payments.services`` and answer with
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
from invoicing.models import Invoice

from .. import retries, selectors, services
from ..errors import PaymentsNotConnected
from ..models import PaymentAttempt, PaymentAttemptStatus
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


# The answers of a refused retry (the client's ``retry_payment_result`` for 402/409/422/502; 400 and 429 are the
# standard error body).
RETRY_REFUSALS = {
    retries.NOT_CONNECTED: 409,
    retries.ALREADY_PAID: 409,
    retries.CONCURRENT: 409,
    retries.PROCESSING: 409,
    retries.NO_METHOD: 422,
}
RETRY_ERRORS = {retries.NOT_PAYABLE: 400, retries.AUTO_CHARGE_OFF: 400, retries.TOO_SOON: 429}


class InvoiceRetryPaymentApi(CatalogApi):
    @extend_schema(
        operation_id="retryInvoicePayment",
        tags=["invoices"],
        request=s.RetryPaymentInput,
        responses={
            200: s.RetryPaymentResultOutput,
            202: s.RetryPaymentResultOutput,
            402: s.RetryPaymentResultOutput,
            409: s.RetryPaymentResultOutput,
            422: s.RetryPaymentResultOutput,
            502: s.RetryPaymentResultOutput,
            **ERRORS,
        },
        description=(
            "Charge the customer's current default payment method again now, for the amount due of an open"
            " invoice of an autoCharge subscription: the invoice's next payment attempt (the scheduled retries keep"
            " their days). 200 only when the charge succeeded; 202 `processing`; 402 the decline code (e.g."
            " `generic_decline`, `authentication_required`: the customer is e-mailed a link to pay); 409"
            " `concurrent_attempt`, `PAYMENT_PROCESSING`, `PAYMENT_ALREADY_COMPLETED` or"
            " `PAYMENT_PROVIDER_NOT_CONNECTED`; 422 `no_payment_method`; 502 `provider_unavailable` (the attempt is"
            " resumed with the same idempotency key); 400 `INVOICE_NOT_PAYABLE` or `AUTO_CHARGE_OFF`; 429 once a"
            " minute per invoice."
        ),
    )
    def post(self, request, id: str):
        invoice = get_object_or_404(Invoice.objects.select_related("customer"), pk=id, merchant=self.merchant)
        data = self.body(s.RetryPaymentInput)
        try:
            attempt = retries.invoice_payment_retry_now(
                invoice=invoice, now=timezone.now(), reason=data.get("reason", "")
            )
        except retries.RetryRefused as refused:
            if refused.code in RETRY_ERRORS:
                raise ApiError(refused.message, status_code=RETRY_ERRORS[refused.code], code=refused.code) from None
            error = {"message": refused.message, "type": "conflict", "code": refused.code}
            return Response(s.retry_result_out(invoice_id=invoice.pk, error=error), status=RETRY_REFUSALS[refused.code])
        except PaymentProviderError as error:
            logger.warning("retry of invoice %s: %s (%s)", invoice.pk, error.message, error.code)
            body = {"message": f"The payment provider did not answer: {error.message}", "code": "provider_unavailable"}
            return Response(s.retry_result_out(invoice_id=invoice.pk, error=body), status=status.HTTP_502_BAD_GATEWAY)
        return _retry_answer(attempt)


def _retry_answer(attempt: PaymentAttempt) -> Response:
    out = {"invoice_id": attempt.invoice_id, "reference": attempt.reference}
    if attempt.status == PaymentAttemptStatus.SUCCEEDED:
        return Response(s.retry_result_out(**out))
    if attempt.status == PaymentAttemptStatus.PROCESSING:
        error = {"message": "The provider accepted the charge; it settles later.", "type": "processing"}
        return Response(s.retry_result_out(**out, error={**error, "code": "processing"}), status=202)
    if attempt.status == PaymentAttemptStatus.REQUIRES_ACTION:
        error = {
            "message": "The customer's bank asks them to confirm the payment; they were e-mailed a link to pay.",
            "type": "card_error",
            "code": "authentication_required",
            "declineCode": attempt.failure_code,
        }
        return Response(s.retry_result_out(**out, error=error), status=402)
    error = {
        "message": attempt.failure_message or "The payment method was declined.",
        "type": "card_error",
        "code": attempt.failure_code or "card_declined",
        "declineCode": attempt.failure_code,
    }
    return Response(s.retry_result_out(**out, error=error), status=402)

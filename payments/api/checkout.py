"""Hosted payment through the API: ``POST /v2/invoices/{id}/payment`` with ``hosted_link`` (a Stripe Checkout
Session for the invoice's amount due; ``out_of_band`` stays invoicing's) and the client's ``paymentSessions``
(list; get by id as an extension). Views parse, call ``payments.checkout``/selectors and render."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from catalog.api.fields import check_merchant
from catalog.api.views import ERRORS, CatalogApi
from core.api.errors import ApiError
from core.api.fields import QueryIdField
from core.api.schema import paging_parameters
from core.api.serializers import ErrorOutput, list_output
from invoicing.api import invoices as invoicing_api
from invoicing.api.common import CONFLICT, invoice_or_404
from invoicing.api.serializers import PaymentResultOutput, RecordPaymentInput

from .. import selectors
from ..checkout import CheckoutRefused, invoice_checkout_create
from ..errors import PaymentsNotConnected
from ..models import PaymentSessionStatus, Provider
from ..providers import PaymentProviderError
from . import serializers as s
from .views import PROVIDER_ERRORS, provider_error

# The client's codes: INVOICE_ALREADY_PAID is a 409 (as out_of_band answers), the others 422.
REFUSAL_STATUS = {"INVOICE_ALREADY_PAID": status.HTTP_409_CONFLICT}
ENTITY_TYPES = ["invoice", "subscription", "payment", "topup", "customer"]


class InvoicePaymentApi(invoicing_api.InvoicePaymentApi):
    """Invoicing's view with ``hosted_link`` answered here (routed before invoicing's, billing_site/api_urls.py)."""

    @extend_schema(
        operation_id="recordInvoicePayment",
        tags=["invoices"],
        request=RecordPaymentInput,
        responses={
            200: PolymorphicProxySerializer(
                component_name="RecordInvoicePaymentResult",
                serializers={"out_of_band": PaymentResultOutput, "hosted_link": s.HostedLinkPaymentResultOutput},
                resource_type_field_name="method",
            ),
            **ERRORS,
            **CONFLICT,
            422: ErrorOutput,
            502: ErrorOutput,
        },
        description="out_of_band: ISSUED → PAID (paying Invoice 0 activates a pending_payment subscription); "
        "already paid → 409 INVOICE_ALREADY_PAID; draft or void → 422 INVOICE_NOT_LINKABLE_STATUS. hosted_link: "
        "a new Stripe Checkout Session (payment mode) for the amount due, answered as paymentSessionId and "
        "paymentUrl (Stripe's page, open 24 hours; the invoice's long-lived pay link is on its document page). "
        "Each call opens a new session and e-mails its page to the customer's billing e-mails. 422 MERCHANT_NO_PAYMENT_ACCOUNT without a connected Stripe, "
        "INVOICE_NO_BALANCE with nothing due; 502 PAYMENT_PROVIDER_ERROR when Stripe refuses or is unreachable.",
    )
    def post(self, request, id: str):
        data = self.body(RecordPaymentInput)
        if data["method"] != "hosted_link":
            return super().post(request, id)
        invoice = invoice_or_404(self.merchant, id)
        try:
            session = invoice_checkout_create(invoice=invoice, now=timezone.now(), notify=True)
        except CheckoutRefused as refusal:
            raise ApiError(
                refusal.message,
                status_code=REFUSAL_STATUS.get(refusal.code, status.HTTP_422_UNPROCESSABLE_ENTITY),
                code=refusal.code,
            ) from None
        except PaymentsNotConnected as error:
            raise ApiError(
                error.message, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, code="MERCHANT_NO_PAYMENT_ACCOUNT"
            ) from None
        except PaymentProviderError as error:
            raise provider_error(error) from None
        body = {
            "provider": Provider.STRIPE,
            "paymentSessionId": session.pk,
            "paymentUrl": session.url,
            "invoice": invoice_or_404(self.merchant, id),
        }
        return Response(s.HostedLinkPaymentResultOutput(body, context={"request": request}).data)


class PaymentSessionListQuery(serializers.Serializer):
    merchantId = QueryIdField()
    subscriptionId = QueryIdField()
    customerId = QueryIdField()
    status = serializers.ChoiceField(required=False, choices=PaymentSessionStatus.choices)
    entityType = serializers.ChoiceField(required=False, choices=ENTITY_TYPES)


class PaymentSessionCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listPaymentSessions",
        tags=["paymentSessions"],
        parameters=[
            OpenApiParameter("merchantId", str, description="Defaults to the API key's merchant; another's → 403."),
            OpenApiParameter("subscriptionId", str, description="Sessions of the subscription's invoices."),
            OpenApiParameter("customerId", str, description="Sessions of the customer (payment and setup)."),
            OpenApiParameter("status", str, enum=PaymentSessionStatus.values),
            OpenApiParameter(
                "entityType", str, enum=ENTITY_TYPES, description="customer (setup sessions) is an extension."
            ),
            *paging_parameters(),
        ],
        responses={200: list_output("PaymentSessionList", s.PaymentSessionDetailOutput, with_object=True), **ERRORS},
        description="The merchant's hosted sessions, newest first: payment mode (an invoice; Invoice 0 is listed"
        " as its subscription's) and setup mode (a saved card, entityType customer).",
    )
    def get(self, request):
        query = PaymentSessionListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        check_merchant(request, params.get("merchantId"))
        rows = selectors.payment_session_list(
            merchant=self.merchant,
            subscription_id=params.get("subscriptionId"),
            customer_id=params.get("customerId"),
            status=params.get("status"),
            entity_type=params.get("entityType"),
        )
        return self.page(rows, s.PaymentSessionDetailOutput, with_object=True)


class PaymentSessionDetailApi(CatalogApi):
    @extend_schema(
        operation_id="getPaymentSession",
        tags=["paymentSessions"],
        responses={200: s.PaymentSessionDetailOutput, **ERRORS},
        description="One hosted session (extension: the client lists them only).",
    )
    def get(self, request, id: str):
        return Response(
            s.PaymentSessionDetailOutput(selectors.payment_session_get(merchant=self.merchant, session_id=id)).data
        )


__all__ = ["PROVIDER_ERRORS", "InvoicePaymentApi", "PaymentSessionCollectionApi", "PaymentSessionDetailApi"]

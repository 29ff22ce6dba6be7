"""The client's ``payments`` operations (``listPayments``, ``createPayment``, ``getPayment``) on our receivables
payments (``invoicing.receivables``): money received from a customer, recorded out of band by finance (the
admin, or ``createPayment``) or by a card charge through Stripe (``payments.charges``).

The client's payment is a one-off checkout that ends ``completed``; ours is money already received, so every
one is ``completed`` (the other statuses filter to nothing), and ``createPayment`` records a payment received
out of band through the service the admin's "Record payment" uses (``payment_record``: allocated to the
customer's open invoices in its currency, oldest due first, or to ``invoiceIds``; the rest is customer credit).
It has no hosted page: ``paymentUrl`` is never set and the hosted-page fields (``successRedirectUrl``,
``failureRedirectUrl``, ``expiresIn``, ``savePaymentMethod: true``, ``lineItems``) are refused, as is
``metadata`` (a recorded payment has none). ``customerId`` is required: money is received from someone."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from catalog.api.fields import check_merchant, money_string
from catalog.api.views import ERRORS, CatalogApi
from catalog.models import Customer
from catalog.pricing.currency import UnknownCurrencyError, minor_units
from core.api.errors import ApiError
from core.api.fields import TextKeyDictField, UtcDateTimeField
from core.api.schema import error_responses, paging_parameters
from core.api.serializers import BlankAsNull, Constant, StrictSerializer, list_output
from invoicing.models import Payment, PaymentMethod
from invoicing.receivables import InvoicePaymentError, payment_record

from .. import selectors

STATUSES = ["pending", "processing", "completed", "expired", "cancelled"]
# Keys the client sends live beside the ones our services give their own payments (a card charge's
# ``charge-{pi_…}``): stored under this prefix, so a client's key never replays a payment it did not create.
API_KEY_PREFIX = "api:"
HOSTED_ONLY = "Meterline records payments already received; a hosted payment page is not created here."


class ReceivedPaymentCreateInput(StrictSerializer):
    amount = serializers.DecimalField(
        max_digits=20, decimal_places=4, min_value=Decimal("0.0001"), help_text="Decimal string in major units."
    )
    currency = serializers.CharField(min_length=3, max_length=3, help_text="ISO 4217 (USD, EUR, GBP, AUD…).")
    merchantId = serializers.CharField(required=False, max_length=40)
    customerId = serializers.CharField(max_length=40, help_text="Required here: the customer the money came from.")
    idempotencyKey = serializers.CharField(required=False, max_length=255 - len(API_KEY_PREFIX))
    reference = serializers.CharField(required=False, allow_blank=True, max_length=200)
    metadata = TextKeyDictField(required=False)
    lineItems = serializers.ListField(child=serializers.DictField(), required=False)
    successRedirectUrl = serializers.CharField(required=False)
    failureRedirectUrl = serializers.CharField(required=False)
    savePaymentMethod = serializers.BooleanField(required=False, default=False)
    expiresIn = serializers.CharField(required=False)
    invoiceIds = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        max_length=100,
        help_text="Meterline extension: the invoices it pays, in order (default: open invoices, oldest due first).",
    )
    receivedAt = serializers.DateTimeField(required=False, help_text="Meterline extension: default now.")

    def validate_currency(self, value: str) -> str:
        try:
            minor_units(value.upper())
        except UnknownCurrencyError:
            raise serializers.ValidationError("Unknown ISO 4217 currency code.") from None
        return value.upper()

    def validate(self, data):
        errors = {}
        for name in ("successRedirectUrl", "failureRedirectUrl", "expiresIn"):
            if name in data:
                errors[name] = [HOSTED_ONLY]
        if data.get("savePaymentMethod"):
            errors["savePaymentMethod"] = [HOSTED_ONLY]
        if data.get("lineItems"):
            errors["lineItems"] = ["A recorded payment is allocated to invoices (invoiceIds), not itemised."]
        if data.get("metadata"):
            errors["metadata"] = ["A recorded payment has no metadata; use reference."]
        if errors:
            raise serializers.ValidationError(errors)
        return data


class ReceivedPaymentAllocationOutput(serializers.Serializer):
    invoiceId = serializers.CharField(source="invoice_id")
    amount = serializers.SerializerMethodField()

    def get_amount(self, allocation) -> str:
        return money_string(allocation.amount, allocation.payment.currency)


class ReceivedPaymentOutput(serializers.Serializer):
    object = Constant("payment")
    id = serializers.CharField()
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    status = serializers.SerializerMethodField()
    createdAt = UtcDateTimeField(source="recorded_at")
    customerId = serializers.CharField(source="customer_id")
    idempotencyKey = serializers.SerializerMethodField()
    reference = BlankAsNull()
    method = serializers.ChoiceField(choices=PaymentMethod.choices, help_text="Meterline extension.")
    receivedAt = UtcDateTimeField(source="received_at", help_text="Meterline extension.")
    allocations = ReceivedPaymentAllocationOutput(
        many=True, help_text="Meterline extension: the invoices it paid; the rest is customer credit."
    )

    def get_amount(self, payment: Payment) -> str:
        return money_string(payment.amount, payment.currency)

    def get_status(self, _payment: Payment) -> str:
        return "completed"  # money received

    def get_idempotencyKey(self, payment: Payment) -> str | None:
        key = payment.idempotency_key or ""
        return key.removeprefix(API_KEY_PREFIX) if key.startswith(API_KEY_PREFIX) else None


# the service's refusals: a field's when the amount is wrong, the invoice's state otherwise
REFUSAL_STATUS = {"INVOICE_ALREADY_PAID": status.HTTP_409_CONFLICT}


class PaymentCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listPayments",
        tags=["payments"],
        parameters=[
            OpenApiParameter("merchantId", str, description="Defaults to the API key's merchant; another's → 403."),
            OpenApiParameter("status", str, enum=STATUSES, description="Every recorded payment is completed."),
            OpenApiParameter("customerId", str, description="Filter by customer."),
            *paging_parameters(),
        ],
        responses={200: list_output("PaymentList", ReceivedPaymentOutput, with_object=True), **ERRORS},
        description="Payments received, newest first: recorded out of band or charged to a card through Stripe.",
    )
    def get(self, request):
        params = request.query_params
        check_merchant(request, params.get("merchantId"))
        wanted = params.get("status")
        if wanted is not None and wanted not in STATUSES:
            raise exceptions.ValidationError({"status": [f"One of {', '.join(STATUSES)}."]})
        rows = selectors.payment_list(
            merchant=self.merchant, customer_id=params.get("customerId"), received=wanted in (None, "completed")
        )
        return self.page(rows, ReceivedPaymentOutput, with_object=True)

    @extend_schema(
        operation_id="createPayment",
        tags=["payments"],
        request=ReceivedPaymentCreateInput,
        responses={201: ReceivedPaymentOutput, 200: ReceivedPaymentOutput, **ERRORS, **error_responses(409, 422)},
        description="Record a payment received out of band (as the admin's Record payment): allocated to "
        "`invoiceIds` or the customer's open invoices in `currency`, oldest due first; the rest is customer credit. "
        "`idempotencyKey`: a replay answers the first payment (200); the key with another amount, currency, "
        "customer or reference is 409 IDEMPOTENCY_KEY_REUSED. A named invoice already paid: 409 "
        "INVOICE_ALREADY_PAID; draft, void or another customer's: 422 INVOICE_NOT_LINKABLE_STATUS.",
    )
    def post(self, request):
        data = self.body(ReceivedPaymentCreateInput)
        check_merchant(request, data.get("merchantId"))
        customer = Customer.objects.filter(pk=data["customerId"], merchant=self.merchant).first()
        if customer is None:
            raise exceptions.ValidationError({"customerId": ["No such customer."]})
        key = API_KEY_PREFIX + data["idempotencyKey"] if data.get("idempotencyKey") else None
        first = Payment.objects.filter(merchant=self.merchant, idempotency_key=key).first() if key else None
        now = timezone.now()
        try:
            payment = payment_record(
                customer=customer,
                currency=data["currency"],
                amount=data["amount"],
                method=PaymentMethod.OUT_OF_BAND,
                received_at=data.get("receivedAt") or now,
                now=now,
                invoice_ids=data.get("invoiceIds"),
                reference=data.get("reference", ""),
                recorded_by=str(request.user),
                idempotency_key=key,
            )
        except InvoicePaymentError as error:
            if error.code == "PAYMENT_AMOUNT_INVALID":
                raise exceptions.ValidationError({"amount": [str(error)]}) from None
            raise ApiError(
                str(error),
                status_code=REFUSAL_STATUS.get(error.code, status.HTTP_422_UNPROCESSABLE_ENTITY),
                code=error.code,
            ) from None
        if key and (payment.customer_id, payment.currency, payment.amount, payment.reference) != (
            customer.pk,
            data["currency"],
            data["amount"],
            data.get("reference", ""),
        ):
            raise ApiError(
                "This idempotencyKey was used for another payment.", status_code=409, code="IDEMPOTENCY_KEY_REUSED"
            )
        answer = status.HTTP_200_OK if first is not None else status.HTTP_201_CREATED
        return Response(
            ReceivedPaymentOutput(selectors.payment_get(merchant=self.merchant, payment_id=payment.pk)).data,
            status=answer,
        )


class PaymentDetailApi(CatalogApi):
    @extend_schema(operation_id="getPayment", tags=["payments"], responses={200: ReceivedPaymentOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(ReceivedPaymentOutput(selectors.payment_get(merchant=self.merchant, payment_id=id)).data)

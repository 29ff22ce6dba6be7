"""Prepaid credit sold on an invoice: ``POST /v0/customers/{id}/topUps`` and our extension
``POST /v0/customers/{id}/reservedCapacity``. Each issues a one-off invoice (``credit_purchase_create``); the
credit appears when the invoice is paid (``POST /v2/invoices/{id}/payment``, or "Mark paid"), or at once for a
customer trusted with credit before payment. The answer keeps the ledger entry keys the top-up answered with
before (wallets/api/serializers.py ``credit_out``) and adds the purchase's (invoicing/API.md)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.pricing.limits import DECIMAL_PLACES, MAX_DIGITS
from core.api.errors import ApiError
from core.api.schema import error_responses
from core.formatting import decimal_string, iso_utc
from wallets.api.serializers import CreditInputSerializer, entry_out
from wallets.api.views import customer_or_404
from wallets.errors import WalletError
from wallets.models import CreditPurchaseKind, LedgerEntry, Wallet
from wallets.services import IdempotencyConflict

from ..one_off_invoices import CreditPurchaseRefused, CreditPurchaseResult, credit_purchase_create
from ..pay_links import invoice_pay_link


class PurchaseInputSerializer(CreditInputSerializer):
    """Body of both purchases: ``amount`` is the credit bought (its face value)."""

    price = serializers.DecimalField(
        max_digits=MAX_DIGITS,
        decimal_places=DECIMAL_PLACES,
        min_value=Decimal(0),
        required=False,
        help_text="Meterline extension: what the invoice bills, in whole minor units of the currency. "
        "Top-up default: the amount.",
    )


class TopUpInputSerializer(PurchaseInputSerializer):
    purchaseInvoiceId = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Deprecated: the top-up issues its own invoice (invoiceId in the answer); only null or empty.",
    )

    def validate_purchaseInvoiceId(self, value):
        if value:
            raise serializers.ValidationError(
                "A top-up now issues its own invoice (invoiceId in the answer); leave purchaseInvoiceId out."
            )
        return value


class ReservedCapacityInputSerializer(PurchaseInputSerializer):
    metricIds = serializers.ListField(
        child=serializers.CharField(max_length=40),
        min_length=1,
        max_length=100,
        help_text="The billable metrics (bm_…) the credit pays for; it is drawn before any other credit.",
    )
    discountPercent = serializers.DecimalField(
        max_digits=7,
        decimal_places=4,
        min_value=Decimal(0),
        max_value=Decimal("99.9999"),
        required=False,
        help_text="Price = amount × (100 − discountPercent) / 100, rounded once to the minor unit. Give this or price.",
    )

    def validate(self, attrs):
        if ("price" in attrs) == ("discountPercent" in attrs):
            raise serializers.ValidationError({"price": ["Give either price or discountPercent."]})
        return attrs


def purchase_out(result: CreditPurchaseResult) -> dict:
    """The ledger entry's keys (null while the purchase waits for its payment) plus the purchase's."""
    purchase, invoice = result.purchase, result.invoice
    entry = (
        LedgerEntry.objects.select_related("wallet").filter(lot_id=purchase.lot_id).order_by("sequence").first()
        if purchase.lot_id
        else None
    )
    if entry is not None:
        body = entry_out(entry)
        balance = entry.balance_after
    else:
        wallet = Wallet.objects.filter(customer_id=purchase.customer_id, currency=purchase.currency).first()
        balance = wallet.balance if wallet is not None else Decimal(0)
        body = {
            key: None
            for key in ("id", "sequence", "balanceAfter", "lotId", "subscriptionId", "metricId")
            + ("periodStart", "periodEnd", "occurredAt")
        } | {
            "object": "ledger_entry",
            "currency": purchase.currency,
            "kind": "top_up" if purchase.kind == CreditPurchaseKind.TOP_UP else "reserved_purchase",
            "amount": decimal_string(purchase.amount),
            "overage": "0",
            "description": purchase.description,
            "reference": invoice.pk,
            "idempotencyKey": purchase.idempotency_key,
        }
    return body | {
        "expiresAt": iso_utc(purchase.expires_at),
        "balance": decimal_string(balance),
        # The purchase (Meterline extension).
        "status": "credited" if purchase.lot_id else "pending_payment",
        "purchaseId": purchase.pk,
        "invoiceId": invoice.pk,
        "invoiceNumber": invoice.number,
        "price": decimal_string(purchase.price),
        "metricIds": list(purchase.metric_ids),
        "creditedAt": iso_utc(purchase.credited_at),
        # Where the customer pays it online while it waits (the pay link, with Stripe connected), else null.
        "paymentUrl": invoice_pay_link(invoice) if not purchase.lot_id else None,
    }


_ANSWERS = {200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT, **error_responses(409)}


class _PurchaseApi(APIView):
    input_serializer: type[PurchaseInputSerializer]
    kind: str

    def post(self, request, customer_id: str):
        customer = customer_or_404(request, customer_id)
        body = self.input_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            result = credit_purchase_create(
                customer=customer,
                kind=self.kind,
                currency=data.get("currency") or customer.currency,
                amount=data["amount"],
                price=data.get("price"),
                discount_percent=data.get("discountPercent"),
                metric_ids=data.get("metricIds", ()),
                idempotency_key=data["idempotencyKey"],
                expires_at=data.get("expiresAt"),
                description=data.get("description", ""),
                now=timezone.now(),
            )
        except IdempotencyConflict as exc:
            raise ApiError(str(exc), status_code=409, code="IDEMPOTENCY_KEY_REUSED") from None
        except CreditPurchaseRefused as exc:
            if exc.field:
                raise serializers.ValidationError({exc.field: [str(exc)]}) from None
            raise ApiError(
                str(exc), status_code=409 if exc.code == "NO_BILLING_SUBSCRIPTION" else 400, code=exc.code
            ) from None
        except WalletError as exc:
            raise ApiError(str(exc), status_code=400, code="INVALID_CREDIT") from None
        return Response(purchase_out(result), status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED)


class CustomerTopUpApi(_PurchaseApi):
    input_serializer = TopUpInputSerializer
    kind = CreditPurchaseKind.TOP_UP

    @extend_schema(
        operation_id="customers_top_up",
        request=TopUpInputSerializer,
        responses=_ANSWERS,
        tags=["prepaid credit"],
        description="Sell prepaid credit: issues a one-off invoice for `price` (default: the amount); the credit is "
        "added when the invoice is paid, or at once when the customer has `creditBeforePayment`. 200: the "
        "idempotencyKey was already used with this body (the first purchase and invoice); 409 "
        "IDEMPOTENCY_KEY_REUSED with another body, NO_BILLING_SUBSCRIPTION when the customer has no subscription "
        "in that currency to file the invoice under.",
    )
    def post(self, request, customer_id: str):
        return super().post(request, customer_id)


class CustomerReservedCapacityApi(_PurchaseApi):
    input_serializer = ReservedCapacityInputSerializer
    kind = CreditPurchaseKind.RESERVED

    @extend_schema(
        operation_id="customers_reserved_capacity_purchase",
        request=ReservedCapacityInputSerializer,
        responses=_ANSWERS,
        tags=["prepaid credit"],
        description="Meterline extension. Sell reserved capacity: credit usable only for `metricIds` (drawn before "
        "any other credit) at `price` or `discountPercent` off its face value, on a one-off invoice; credited as a "
        "top-up is. Replays and 409s as for topUps.",
    )
    def post(self, request, customer_id: str):
        return super().post(request, customer_id)

"""``POST /v1/entitlements/{id}/grants/purchase``: buy credits for a metered entitlement (digest §3.11).

It records an invoice, so it lives in invoicing; the entitlement shapes are ``wallets.api.entitlements``.
The one payment session is the invoice's pay link when the merchant's Stripe is connected (``pay_links``:
payments' page, which opens a Stripe Checkout Session at each visit); without a provider, the invoice's admin
page, where finance records the payment (or ``POST /v2/invoices/{id}/payment``). Paying creates the grant.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from catalog.api.fields import DecimalNumber, DecimalString
from catalog.pricing import minor_units
from core.api.errors import ApiError
from core.api.fields import wire_field_names
from core.api.serializers import Constant, StrictSerializer
from core.formatting import decimal_string
from invoicing.one_off_invoices import GrantPurchaseConflict, grant_purchase_create
from invoicing.pay_links import invoice_pay_link
from wallets.api.entitlements import CONFLICT, ERRORS, Credits, EntitlementScopedApi
from wallets.entitlements import EntitlementConflict

MIN_PRICE = Decimal("0.50")
MAX_PRICE = Decimal("4503599.62")


class PurchasePrice(DecimalString):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not MIN_PRICE <= value <= MAX_PRICE:
            raise serializers.ValidationError(f"Must be between {MIN_PRICE} and {MAX_PRICE}.")
        if value.as_tuple().exponent < -9:
            raise serializers.ValidationError("At most 9 decimal places.")
        return value


class PurchaseGrantInput(StrictSerializer):
    amount = Credits(positive=True)
    price = PurchasePrice(help_text="Decimal string, 0.50–4503599.62, at most 9 decimal places.")
    idempotencyKey = serializers.CharField(source="idempotency_key", max_length=255)
    effectiveAt = serializers.DateTimeField(source="effective_at", required=False)
    expiresAt = serializers.DateTimeField(source="expires_at", required=False, allow_null=True)
    successUrl = serializers.CharField(source="success_url", required=False, max_length=2000)
    cancelUrl = serializers.CharField(source="cancel_url", required=False, max_length=2000)
    paymentExpiresAt = serializers.DateTimeField(source="payment_expires_at", required=False)
    resetMaxRollover = Credits(source="reset_max_rollover", required=False)
    resetMinRollover = Credits(source="reset_min_rollover", required=False)

    def validate(self, attrs):
        start, end = attrs.get("effective_at") or timezone.now(), attrs.get("expires_at")
        if end is not None and end <= start:
            raise serializers.ValidationError({"expiresAt": ["expiresAt must be after effectiveAt (or now)."]})
        low, high = attrs.get("reset_min_rollover"), attrs.get("reset_max_rollover")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"resetMinRollover": ["Must not be more than resetMaxRollover."]})
        return attrs


class PaymentSessionOutput(serializers.Serializer):
    url = serializers.CharField()
    expiresAt = serializers.DateTimeField(allow_null=True)
    amount = DecimalNumber(help_text="Amount due in the currency's minor units.")


class PurchaseGrantOutput(serializers.Serializer):
    object = Constant("grant_purchase")
    invoiceId = serializers.CharField()
    entitlementId = serializers.CharField()
    grantAmount = DecimalNumber()
    price = serializers.CharField()
    currency = serializers.CharField()
    paymentSessions = PaymentSessionOutput(many=True)


class GrantPurchaseApi(EntitlementScopedApi):
    @extend_schema(
        operation_id="purchaseEntitlementGrant",
        tags=["entitlements"],
        request=PurchaseGrantInput,
        responses={201: PurchaseGrantOutput, **ERRORS, **CONFLICT},
        description="Issues a one-off invoice for price; the grant is created when the invoice is paid. A retry "
        "with the same idempotencyKey answers 201 with the same invoice (409 if amount or price differ). 409 "
        "NO_BILLING_SUBSCRIPTION when the customer has no subscription to file the invoice under.",
    )
    def post(self, request, entitlement_id: str):
        entitlement = self.entitlement(entitlement_id)
        data = self.body(PurchaseGrantInput)
        data.pop("success_url", None)  # no hosted checkout to return from (self-hosted)
        data.pop("cancel_url", None)
        try:
            with wire_field_names():
                result = grant_purchase_create(entitlement=entitlement, now=timezone.now(), **data)
        except (GrantPurchaseConflict, EntitlementConflict) as exc:
            raise ApiError(str(exc), status_code=status.HTTP_409_CONFLICT, code=exc.code) from None
        invoice, purchase = result.invoice, result.purchase
        session = {
            "url": invoice_pay_link(invoice)
            or request.build_absolute_uri(f"/admin/invoicing/invoice/{invoice.pk}/change/"),
            "expiresAt": PaymentSessionOutput().fields["expiresAt"].to_representation(purchase.payment_expires_at)
            if purchase.payment_expires_at
            else None,
            "amount": (invoice.amount_due * 10 ** minor_units(invoice.currency)).to_integral_value(),
        }
        body = {
            "object": "grant_purchase",
            "invoiceId": invoice.pk,
            "entitlementId": entitlement.pk,
            "grantAmount": purchase.amount.normalize(),
            "price": decimal_string(purchase.price),
            "currency": purchase.currency,
            "paymentSessions": [session],
        }
        return Response(body, status=status.HTTP_201_CREATED)

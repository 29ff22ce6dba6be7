"""The client's shapes: ``MerchantIntegration`` (``/v0/merchantIntegrations``), ``PaymentMethod`` and
``CustomerPaymentSession`` (``/v0/customers/{id}/paymentMethods``). Output serializers render the answers."""

from __future__ import annotations

from rest_framework import serializers

from core.api.fields import TextKeyDictField, UtcDateTimeField
from core.api.serializers import BlankAsNull, Constant, StrictSerializer

from ..models import IntegrationStatus, MerchantIntegration, PaymentMethod, PaymentSession, Provider


class MerchantIntegrationConfigInput(StrictSerializer):
    """Stripe's credentials. Secrets are write-only: answers show ``secretKeyHint``/``webhookSecretHint``."""

    secretKey = serializers.CharField(
        required=False, max_length=500, help_text="sk_test_…, sk_live_… or a restricted rk_… key. Write-only."
    )
    webhookSecret = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="The endpoint's signing secret, whsec_…. Write-only.",
    )
    publishableKey = serializers.CharField(required=False, allow_blank=True, max_length=200)


class MerchantIntegrationUpsertInput(StrictSerializer):
    merchantId = serializers.CharField(max_length=40)
    provider = serializers.ChoiceField(choices=Provider.choices, help_text="The payment provider to connect.")
    externalId = serializers.CharField(required=False, allow_blank=True, max_length=100, help_text="acct_…")
    status = serializers.ChoiceField(required=False, choices=[IntegrationStatus.ACTIVE, IntegrationStatus.DISCONNECTED])
    config = MerchantIntegrationConfigInput(required=False)
    metadata = TextKeyDictField(required=False)


class CapabilitiesOutput(serializers.Serializer):
    resolvesItemCodes = serializers.BooleanField()
    sendsItemCodes = serializers.BooleanField()


class MerchantIntegrationConfigOutput(serializers.Serializer):
    secretKeyHint = BlankAsNull(source="secret_key_hint")
    webhookSecretHint = BlankAsNull(source="webhook_secret_hint")
    publishableKey = BlankAsNull(source="publishable_key")
    livemode = serializers.SerializerMethodField()

    def get_livemode(self, integration: MerchantIntegration) -> bool:
        return integration.mode == "live"


class MerchantIntegrationOutput(serializers.Serializer):
    object = Constant("merchantIntegration")
    id = serializers.CharField()
    merchantId = serializers.CharField(source="merchant_id")
    provider = serializers.ChoiceField(choices=Provider.choices)
    capabilities = serializers.SerializerMethodField()
    externalId = BlankAsNull(source="external_id")
    status = serializers.ChoiceField(choices=IntegrationStatus.choices)
    config = MerchantIntegrationConfigOutput(source="*")
    metadata = serializers.DictField()
    connectedAt = UtcDateTimeField(source="connected_at")
    disconnectedAt = UtcDateTimeField(source="disconnected_at", allow_null=True)
    createdAt = UtcDateTimeField(source="created_at")
    updatedAt = UtcDateTimeField(source="updated_at")

    def get_capabilities(self, _integration) -> CapabilitiesOutput:
        # A payment provider maps no item codes (the client's capabilities are about ERP/CRM integrations).
        return {"resolvesItemCodes": False, "sendsItemCodes": False}


class PaymentMethodOutput(serializers.Serializer):
    object = Constant("paymentMethod")
    id = serializers.CharField()
    createdAt = UtcDateTimeField(source="created_at")
    type = BlankAsNull()
    brand = BlankAsNull()
    last4 = BlankAsNull()
    expMonth = serializers.IntegerField(source="exp_month", allow_null=True)
    expYear = serializers.IntegerField(source="exp_year", allow_null=True)
    isDefault = serializers.BooleanField(source="is_default", help_text="Meterline extension: charged off-session.")


class PaymentMethodListOutput(serializers.Serializer):
    object = Constant("list")
    data = PaymentMethodOutput(many=True)


class PaymentSessionCreateInput(StrictSerializer):
    successRedirectUrl = serializers.URLField(required=False, max_length=2000)
    failureRedirectUrl = serializers.URLField(required=False, max_length=2000)
    metadata = TextKeyDictField(required=False)
    expiresAt = serializers.DateTimeField(required=False)


class CustomerPaymentSessionOutput(serializers.Serializer):
    object = Constant("paymentSession")
    id = serializers.CharField()
    mode = serializers.CharField()
    status = serializers.CharField()
    url = serializers.CharField()
    expiresAt = UtcDateTimeField(source="expires_at")
    createdAt = UtcDateTimeField(source="created_at")
    successRedirectUrl = BlankAsNull(source="success_redirect_url")
    failureRedirectUrl = BlankAsNull(source="failure_redirect_url")
    metadata = serializers.DictField()
    completedAt = UtcDateTimeField(source="completed_at", allow_null=True)


def payment_method_list_out(methods: list[PaymentMethod]) -> dict:
    return PaymentMethodListOutput({"data": methods}).data


def payment_session_out(session: PaymentSession) -> dict:
    return CustomerPaymentSessionOutput(session).data


class RetryPaymentInput(StrictSerializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Why the retry is requested (kept for audit)."
    )


class RetryPaymentErrorOutput(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField(required=False, help_text="card_error, processing or conflict.")
    code = serializers.CharField(required=False, help_text="Machine-readable reason (see the operation).")
    declineCode = serializers.CharField(required=False, help_text="The card issuer's decline code, if any.")


class RetryPaymentResultOutput(serializers.Serializer):
    """The client's ``retry_payment_result``: every answer of the retry that is not an error envelope."""

    object = Constant("retry_payment_result")
    success = serializers.BooleanField(help_text="True only when the charge succeeded (status 200).")
    invoiceId = serializers.CharField()
    paymentIntentId = serializers.CharField(required=False, help_text="Stripe's PaymentIntent (pi_…), if any.")
    error = RetryPaymentErrorOutput(required=False)


def retry_result_out(*, invoice_id: str, reference: str | None = None, error: dict | None = None) -> dict:
    body = {"object": "retry_payment_result", "success": error is None, "invoiceId": invoice_id}
    if reference:
        body["paymentIntentId"] = reference
    if error is not None:
        body["error"] = {key: value for key, value in error.items() if value}
    return body

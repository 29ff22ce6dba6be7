"""Input validation and output shapes for the prepaid-credit API (camelCase, amounts as decimal strings)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.api.fields import DecimalString, MerchantScopedId
from catalog.models import BillableMetric, Price
from catalog.pricing import is_known_currency
from catalog.pricing.limits import DECIMAL_PLACES, MAX_DIGITS, QUANTUM
from core.api.serializers import Constant, StrictSerializer, TypedSerializer
from core.formatting import decimal_string, iso_utc


class CreditInputSerializer(TypedSerializer):
    """Body of POST /customers/{id}/grants (and, extended, of the purchases in invoicing/api/purchases.py)."""

    # The shared money bound (catalog.pricing.limits): 15 digits before the point, 12 after it.
    amount = serializers.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, min_value=QUANTUM)
    currency = serializers.CharField(max_length=3, required=False)
    expiresAt = serializers.DateTimeField(required=False, allow_null=True)
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    idempotencyKey = serializers.CharField(max_length=255)

    def validate_currency(self, value: str) -> str:
        if not is_known_currency(value):
            raise serializers.ValidationError(f"“{value}” is not an ISO 4217 currency code in upper case, e.g. USD.")
        return value


class LedgerQuerySerializer(serializers.Serializer):
    currency = serializers.CharField(max_length=3, required=False)


def wallet_out(wallet) -> dict:
    low = wallet.low_balance_threshold
    return {
        "object": "balance",
        "id": wallet.pk,
        "currency": wallet.currency,
        "balance": decimal_string(wallet.balance),
        "available": decimal_string(wallet.available),
        "reserved": decimal_string(wallet.reserved_credit),
        "overage": decimal_string(wallet.overage_outstanding),
        "pendingExpiry": decimal_string(wallet.expiring_credit),
        "nextExpiryAt": iso_utc(wallet.next_expiry_at),
        "lowBalanceThreshold": decimal_string(low),
        "isLowBalance": low is not None and wallet.balance < low,
        "policy": {
            "type": wallet.policy,
            "autoTopUpThreshold": decimal_string(wallet.auto_top_up_threshold),
            "autoTopUpAmount": decimal_string(wallet.auto_top_up_amount),
        },
        "updatedAt": iso_utc(wallet.updated_at),
    }


def entry_out(entry) -> dict:
    return {
        "object": "ledger_entry",
        "id": entry.pk,
        "sequence": entry.sequence,
        "currency": entry.wallet.currency,
        "kind": entry.kind,
        "amount": decimal_string(entry.amount),
        "balanceAfter": decimal_string(entry.balance_after),
        "overage": decimal_string(entry.overage_amount),
        "description": entry.description,
        "reference": entry.reference or None,
        "idempotencyKey": entry.idempotency_key or None,
        "lotId": entry.lot_id,
        "subscriptionId": entry.subscription_id,
        "metricId": entry.metric_id,
        "periodStart": iso_utc(entry.period_start),
        "periodEnd": iso_utc(entry.period_end),
        "occurredAt": iso_utc(entry.occurred_at),
    }


def credit_out(result) -> dict:
    body = entry_out(result.entry)
    body["expiresAt"] = iso_utc(result.lot.expires_at)
    body["balance"] = decimal_string(result.entry.balance_after)
    return body


# -- commitments (a Meterline extension: the client has no commitments operations) ---------------------


class PlanPriceId(MerchantScopedId):
    """A plan price of the caller's merchant (not a customer's negotiated rate)."""

    def __init__(self, **kwargs):
        super().__init__(Price, **kwargs)

    def get_queryset(self):
        return super().get_queryset().filter(customer__isnull=True, plan__isnull=False).select_related("plan")


class CommittedRateInput(StrictSerializer):
    priceId = PlanPriceId(help_text="A per-unit or per-package in-arrears plan price in the commitment's currency.")
    unitPrice = DecimalString(
        min_value=Decimal(0), help_text="The committed per-unit rate, e.g. 0.000001 ($0.001 per 1K tokens)."
    )


class CommitmentInput(StrictSerializer):
    """Body of POST /v0/customers/{id}/commitments."""

    currency = serializers.CharField(max_length=3, help_text="ISO 4217 code in upper case, e.g. USD.")
    # The shared money bound (catalog.pricing.limits): 15 digits before the point, 12 after it.
    amount = DecimalString(help_text="The minimum spend over the term, > 0.")
    termStart = serializers.DateTimeField()
    termEnd = serializers.DateTimeField(help_text="Exclusive: the term is [termStart, termEnd).")
    metricIds = serializers.ListField(
        child=MerchantScopedId(BillableMetric),
        max_length=50,
        required=False,
        help_text="The billable metrics whose usage draws the commitment down (all when absent or empty).",
    )
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    rates = CommittedRateInput(many=True, required=False, max_length=20)
    idempotencyKey = serializers.CharField(
        max_length=255,
        allow_null=True,
        required=False,
        help_text="Makes the create exactly once per customer (the Idempotency-Key header, when sent, must agree).",
    )

    def validate_currency(self, value: str) -> str:
        if not is_known_currency(value):
            raise serializers.ValidationError(f"“{value}” is not an ISO 4217 currency code in upper case, e.g. USD.")
        return value

    def validate_amount(self, value: Decimal) -> Decimal:
        if value <= 0:
            raise serializers.ValidationError("Must be greater than 0.")
        return value

    def validate(self, attrs):
        if attrs["termEnd"] <= attrs["termStart"]:
            raise serializers.ValidationError({"termEnd": ["The term must end after it starts."]})
        return attrs


class CommittedRateOutput(serializers.Serializer):
    priceId = serializers.CharField(source="price.overrides_id", help_text="The plan price the rate replaces.")
    negotiatedPriceId = serializers.CharField(source="price_id", help_text="The negotiated rate written for it.")
    unitPrice = DecimalString(source="price.unit_price")


class CommitmentOutput(serializers.Serializer):
    object = Constant("commitment")
    id = serializers.CharField()
    customerId = serializers.CharField(source="customer_id")
    currency = serializers.CharField()
    amount = DecimalString()
    termStart = serializers.DateTimeField(source="term_start")
    termEnd = serializers.DateTimeField(source="term_end")
    metricIds = serializers.ListField(child=serializers.CharField(), source="metric_ids")
    description = serializers.CharField()
    drawn = serializers.SerializerMethodField(
        help_text="Usage debited in the term for its metrics: so far on GET /v0/commitments/{id} and on create; "
        "in lists only once trued up (null before)."
    )
    truedUpAt = serializers.DateTimeField(source="trued_up_at", allow_null=True)
    shortfall = DecimalString(allow_null=True, help_text="max(0, amount − drawn), once trued up.")
    rates = CommittedRateOutput(many=True, source="rates.all")

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_drawn(self, commitment) -> str | None:
        if commitment.drawn_amount is not None:
            return decimal_string(commitment.drawn_amount)
        drawn = self.context.get("drawn")
        return None if drawn is None else decimal_string(drawn)

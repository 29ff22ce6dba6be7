"""Input validation and output shapes for the prepaid-credit API (camelCase, amounts as decimal strings)."""

from __future__ import annotations

from rest_framework import serializers

from catalog.pricing import is_known_currency
from catalog.pricing.limits import DECIMAL_PLACES, MAX_DIGITS, QUANTUM
from core.api.serializers import TypedSerializer
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

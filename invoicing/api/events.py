"""The event endpoints with real-time billing: metering's views, ingesting through the invoicing use case.

``POST /v0/events`` and ``POST /v0/events/batch`` keep metering's request parsing and answers; only the
call that stores the events changes (``invoicing.realtime.events_ingest_and_debit``), so the events of
real-time subscriptions are debited in the same transaction. A single event refused under the block
policy is a **402** ``INSUFFICIENT_BALANCE``, one of a subscription whose real-time usage dunning blocked
(an invoice unpaid after its final notice) a **402** ``USAGE_BLOCKED``, one of a customer whose spend cap
is reached (invoicing/SPEND.md) a **402** ``SPEND_CAP_REACHED``; in a batch that item is ``rejected``
with the same code and details while the others are kept. Metering never imports invoicing: these views live here and are
routed before metering's URLs (billing_site/urls.py).
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.schema import currency_parameter
from catalog.pricing import is_known_currency
from core.api.errors import ApiError, validation_error_response
from core.api.serializers import ErrorOutput
from core.formatting import decimal_string, iso_utc
from metering.api import schema as metering_schema
from metering.api import views as metering_views
from wallets.api.serializers import wallet_out
from wallets.api.views import customer_with_wallets_or_404

from .. import realtime
from ..selectors import customer_usage_cost

PAYMENT_REQUIRED = status.HTTP_402_PAYMENT_REQUIRED


class _RealtimeIngest:
    def ingest(self, *, merchant, raw_events: list, now):
        return realtime.events_ingest_and_debit(merchant=merchant, raw_events=raw_events, now=now)


class RealtimeEventIngestApi(_RealtimeIngest, metering_views.EventIngestApi):
    """``POST /v0/events``: 202 with the event (metering's answer); 402 when the prepaid balance of a
    block-policy customer cannot pay for it (``INSUFFICIENT_BALANCE``) or dunning blocked the customer's
    real-time subscription (``USAGE_BLOCKED``); the event is not stored."""

    @extend_schema(
        operation_id="events_ingest",
        request=metering_schema.EventInput,
        responses={202: metering_schema.EventResponse, 402: ErrorOutput, **metering_schema.ERROR_RESPONSES},
        description=(
            "Ingest one usage event (202; a resent idempotencyKey answers 202 with `duplicate: true`). 402 for a "
            "real-time subscription: `INSUFFICIENT_BALANCE` (block policy, the prepaid balance cannot pay for it) "
            "or `USAGE_BLOCKED` (Meterline extension: dunning blocked its usage after an unanswered final "
            "notice, `details: {subscriptionId, blockedSince}`); for any customer `SPEND_CAP_REACHED` (Meterline "
            "extension: its spend cap for the period is reached, `details: {customerId, blockedSince}`). The event "
            "is not stored."
        ),
    )
    def post(self, request):
        return super().post(request)

    def raise_for_refusal(self, outcome) -> None:
        if 0 in outcome.refusals:
            refusal = outcome.refusals[0]
            raise ApiError(refusal.message, status_code=PAYMENT_REQUIRED, code=refusal.code, details=refusal.details)


class RealtimeEventBatchIngestApi(_RealtimeIngest, metering_views.EventBatchIngestApi):
    """``POST /v0/events/batch``: metering's per-item answer; an item refused for lack of prepaid credit
    is ``rejected`` with ``code: INSUFFICIENT_BALANCE`` and ``details: {available, required, currency}``, one
    of a customer blocked by dunning with ``code: USAGE_BLOCKED`` and ``details: {subscriptionId,
    blockedSince}``; the other items are kept."""

    @extend_schema(
        operation_id="events_ingest_batch",
        request=metering_schema.BatchInput,
        responses={200: metering_schema.BatchResponse, **metering_schema.ERROR_RESPONSES},
        description=(
            "Meterline extension: up to 5,000 events; a result per item, good items kept when others fail. An item "
            "refused for a real-time subscription is `rejected` with `code` (`INSUFFICIENT_BALANCE` or "
            "`USAGE_BLOCKED`) and `details`, one of a customer whose spend cap is reached with `SPEND_CAP_REACHED`."
        ),
    )
    def post(self, request):
        return super().post(request)

    def items_extras(self, outcome) -> dict[int, dict]:
        return {
            index: {"code": refusal.code, "details": refusal.details} for index, refusal in outcome.refusals.items()
        }


# -- reads -----------------------------------------------------------------------------------------


class CustomerUsageCostApi(APIView):
    """``GET /v0/customers/{id}/usageCost?currency=``: the current period's usage cost of each real-time
    subscription (debited so far, paid from credit, overage) with the balances, from the cached wallet
    rows and one indexed ledger aggregate per subscription."""

    # Must answer in < 10 ms (issue #7): cached key → merchant look-up, merchant used only for its id.
    api_key_cache = True

    @extend_schema(
        operation_id="customers_usage_cost",
        parameters=[currency_parameter()],
        responses={200: OpenApiTypes.OBJECT},
        tags=["prepaid credit"],
    )
    def get(self, request, customer_id: str):
        currency = (request.query_params.get("currency") or "").upper() or None
        if currency is not None and not is_known_currency(currency):
            return validation_error_response([{"field": "currency", "message": f"Unknown currency “{currency}”."}])
        customer, wallets = customer_with_wallets_or_404(request, customer_id)
        now = timezone.now()
        costs = customer_usage_cost(customer=customer, now=now, currency=currency)
        wallets = [w for w in wallets if currency is None or w.currency == currency]
        return Response(
            {
                "object": "customer_usage_cost",
                "customerId": customer.pk,
                "asOf": iso_utc(now),
                "subscriptions": [
                    {
                        "subscriptionId": cost.subscription_id,
                        "currency": cost.currency,
                        "periodStart": iso_utc(cost.period_start),
                        "periodEnd": iso_utc(cost.period_end),
                        "usageCost": decimal_string(cost.debited),
                        "paidFromBalance": decimal_string(cost.covered_by_credit),
                        "overage": decimal_string(cost.overage),
                    }
                    for cost in costs
                ],
                "balances": [wallet_out(wallet) for wallet in wallets],
            }
        )

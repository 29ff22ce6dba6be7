"""/v2/invoices/lineItems: a subscription's billing ledger, its invoiced lines then the pending ones
(what the current period would bill with the usage known now)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from catalog.pricing import PricingError
from core.api.errors import ApiError
from core.api.fields import parameter_combination_error
from core.api.pagination import page_params
from core.api.schema import paging_parameters
from invoicing import selectors
from invoicing.services.manual_lines import (
    ManualLineConflict,
    ManualLineError,
    ManualLineInput,
    idempotency_key_choose,
    manual_line_item_create,
)

from . import serializers as s
from .common import CONFLICT, ERRORS, LINE_ITEMS_MAX, BillingApi, conflict, invoice_or_404, subscription_or_404
from .manual_lines import BOUNDS, ManualLineItemInput, ManualLineItemOutput


class LedgerLineItemsApi(BillingApi):
    @extend_schema(
        operation_id="listLineItems",
        tags=["invoices"],
        parameters=[
            OpenApiParameter("subscriptionId", str, description="Give subscriptionId, invoiceId or both."),
            OpenApiParameter("invoiceId", str),
            OpenApiParameter("status", str, enum=["pending", "invoiced"]),
            OpenApiParameter("expand", str),
            *paging_parameters(default_limit=100, max_limit=LINE_ITEMS_MAX),
        ],
        responses={200: s.LedgerLinesOutput, **ERRORS},
        description="Invoiced lines (on non-void invoices) and pending lines: what the current period would "
        "bill with the usage known now (invoicing.selectors.invoice_estimate; metered amounts are estimates).",
    )
    def get(self, request):
        params = request.query_params
        subscription_id, invoice_id = params.get("subscriptionId"), params.get("invoiceId")
        if not subscription_id and not invoice_id:
            raise parameter_combination_error("subscriptionId", "Give subscriptionId or invoiceId.")
        wanted = params.get("status") or None
        if wanted not in (None, "pending", "invoiced"):
            raise exceptions.ValidationError({"status": ["Use pending or invoiced."]})
        limit, offset = page_params(request, default_limit=100, max_limit=LINE_ITEMS_MAX)
        subscription = invoice = None
        if subscription_id:
            subscription = subscription_or_404(self.merchant, subscription_id)
        if invoice_id:
            invoice = invoice_or_404(self.merchant, invoice_id)
            if subscription is not None and invoice.subscription_id != subscription.id:
                raise exceptions.NotFound("No such invoice on this subscription.")
            subscription = subscription or invoice.subscription
        try:
            page = selectors.subscription_ledger_page(
                merchant=self.merchant,
                subscription=subscription,
                invoice=invoice,
                status=wanted,
                limit=limit,
                offset=offset,
                now=timezone.now(),
            )
        except PricingError as error:  # e.g. usage beyond the bound of catalog.pricing.limits
            raise ApiError(
                f"The pending usage of this subscription cannot be rated: {error}",
                status_code=409,
                code="UNRATEABLE_USAGE",
            ) from None
        return Response(s.LedgerLinesOutput(page).data)

    @extend_schema(
        operation_id="createLineItem",
        tags=["invoices"],
        parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
        request=ManualLineItemInput,
        responses={201: ManualLineItemOutput, 200: ManualLineItemOutput, **ERRORS, **CONFLICT},
        description="A manual line (type manual): with subscriptionId it waits (pending) for the subscription's "
        "next invoice, the recurring invoice closing the first period that ends after invoiceAt (default now), "
        "and is billed there exactly once; with invoiceId it is written on that DRAFT invoice at once and the "
        "draft's discount, minimum, tax and totals are recomputed. Manual lines are taxed like the invoice; the "
        "plan discount and minimum ignore them. Idempotent per merchant by the Idempotency-Key header, else the "
        "body's idempotencyKey (both given must agree): a replay with the same body answers 200 with the first "
        "item, another body 409 IDEMPOTENCY_KEY_REUSED. 409 SUBSCRIPTION_TERMINATED, INVOICE_NOT_DRAFT. "
        f"Bounds: {BOUNDS}",
    )
    def post(self, request):
        data = self.body(ManualLineItemInput)
        subscription = invoice = None
        if data.get("subscriptionId"):
            subscription = subscription_or_404(self.merchant, data["subscriptionId"])
        else:
            invoice = invoice_or_404(self.merchant, data["invoiceId"])
        try:
            key = idempotency_key_choose(header=request.headers.get("Idempotency-Key"), body=data.get("idempotencyKey"))
            item, replayed = manual_line_item_create(
                merchant=self.merchant,
                subscription=subscription,
                invoice=invoice,
                idempotency_key=key,
                now=timezone.now(),
                data=ManualLineInput(
                    display_name=data["displayName"],
                    description=data.get("description") or "",
                    item_id=data.get("itemId") or "",
                    currency=data["currency"],
                    quantity=data["quantity"],
                    unit_price=data["unitPrice"],
                    invoice_at=data.get("invoiceAt"),
                    period_start=data.get("periodStart"),
                    period_end=data.get("periodEnd"),
                ),
            )
        except ManualLineError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        except ManualLineConflict as error:
            raise conflict(str(error), error.code) from None
        return Response(ManualLineItemOutput(item).data, status=200 if replayed else 201)

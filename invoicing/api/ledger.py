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

from . import serializers as s
from .common import ERRORS, LINE_ITEMS_MAX, BillingApi, invoice_or_404, subscription_or_404


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

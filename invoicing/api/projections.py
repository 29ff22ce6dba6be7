"""Invoices not written yet: ``GET /v2/invoices/projected`` (the client's ``listProjectedInvoices``) and our
extension ``GET /v0/subscriptions/{id}/upcomingInvoice`` (invoicing.projections)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response

from catalog.pricing import PricingError
from core.api.errors import ApiError
from core.api.pagination import page_params
from core.api.schema import paging_parameters
from core.api.serializers import list_output
from core.formatting import iso_utc
from invoicing.projections import ProjectionRangeError, invoice_projections, invoice_upcoming

from . import serializers as s
from .common import CONFLICT, ERRORS, BillingApi, conflict, subscription_or_404


def _moment(request, name: str):
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return serializers.DateTimeField().to_internal_value(raw)
    except serializers.ValidationError:
        raise exceptions.ValidationError({name: ["Enter an ISO 8601 date-time."]}) from None


def projected_body(request, projected) -> dict:
    """An ``InvoiceOutput`` of a projected (unsaved) invoice: status PROJECTED, no number, no document."""
    data = s.InvoiceOutput(projected.invoice, context={"request": request, "line_items": projected.page}).data
    data.update(
        status="PROJECTED", invoiceNumber=None, pdfUrl=None, pdfSource=None, nextActionAt=iso_utc(projected.invoice_at)
    )
    for position, line in enumerate(data["lineItems"]["lineItems"], start=1):
        line["eventId"] = line["meterEventId"] = f"{projected.invoice.id}_{position}"
    return data


class ProjectedInvoicesApi(BillingApi):
    @extend_schema(
        operation_id="listProjectedInvoices",
        tags=["invoices"],
        parameters=[
            OpenApiParameter("subscriptionId", str, required=True),
            OpenApiParameter(
                "from", {"type": "string", "format": "date-time"}, description="Default now; earlier is now."
            ),
            OpenApiParameter(
                "to",
                {"type": "string", "format": "date-time"},
                description="Default a month after from; at most a year after now.",
            ),
            *paging_parameters(),
        ],
        responses={200: list_output("ProjectedInvoiceList", s.InvoiceOutput, with_object=True), **ERRORS},
        description="The recurring invoices the subscription will issue with invoice moments (the end of the period "
        "each closes) in [from, to), earliest first, derived on each read and never stored: status PROJECTED, a "
        "stable id that GET /v2/invoices/{id} does not know, lines in lineItems. Fixed charges only: fees (the "
        "period's in-arrears fees and the next period's in-advance fees), the plan discount and the plan minimum "
        "on them, and the pending manual line items each close will bill; usage is excluded and an invoice with only usage is omitted. Tax and sequenceNumber are "
        "estimates; now is the subscription's test-clock time. A terminated subscription has none.",
    )
    def get(self, request):
        subscription_id = request.query_params.get("subscriptionId")
        if not subscription_id:
            raise exceptions.ValidationError({"subscriptionId": ["This parameter is required."]})
        start, end = _moment(request, "from"), _moment(request, "to")
        limit, offset = page_params(request)
        subscription = subscription_or_404(self.merchant, subscription_id)
        try:
            projected = invoice_projections(subscription=subscription, now=timezone.now(), start=start, end=end)
        except ProjectionRangeError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        rows = projected[offset : offset + limit]
        return Response(
            {
                "object": "list",
                "data": [projected_body(request, row) for row in rows],
                "pagination": {"limit": limit, "offset": offset, "total": len(projected)},
            }
        )


class UpcomingInvoiceApi(BillingApi):
    @extend_schema(
        operation_id="getUpcomingInvoice",
        tags=["subscriptions"],
        responses={200: s.InvoiceOutput, **ERRORS, **CONFLICT},
        description="Meterline extension: the invoice that will close the subscription's current period, rated "
        "now by the billing run's own composition with the usage to date and the pending manual line items; "
        "status PROJECTED, nothing is stored. 409 NO_CURRENT_PERIOD (terminated, pending payment or not started); 409 UNRATEABLE_USAGE when the usage "
        "exceeds the pricing bounds.",
    )
    def get(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        try:
            upcoming = invoice_upcoming(subscription=subscription, now=timezone.now())
        except PricingError as error:
            raise ApiError(
                f"The usage of this period cannot be rated: {error}", status_code=409, code="UNRATEABLE_USAGE"
            ) from None
        if upcoming is None:
            raise conflict(
                "The subscription has no current period (terminated, pending payment or not started).",
                "NO_CURRENT_PERIOD",
            )
        return Response(projected_body(request, upcoming))

"""/v2/invoices: list, read (with a page of line items), line item pages, the PDF, recorded payments."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers, status
from rest_framework.response import Response

from catalog.api.fields import check_merchant
from core.api.errors import ApiError
from core.api.pagination import paginate
from core.api.schema import paging_parameters
from core.api.serializers import ErrorOutput, list_output
from invoicing import selectors, services
from invoicing.documents import invoice_filename, invoice_pdf
from invoicing.models import Invoice

from . import serializers as s
from .common import CONFLICT, ERRORS, LINE_ITEMS_MAX, PAGING, BillingApi, invoice_or_404


def invoice_body(request, invoice: Invoice, *, line_items=None) -> dict:
    """``InvoiceOutput`` of ``invoice``, with ``line_items`` (a ``selectors.InvoiceLinePage``) when expanded."""
    return s.InvoiceOutput(invoice, context={"request": request, "line_items": line_items}).data


def _int_param(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: [f"{name} must be a whole number."]}) from None
    if not low <= value <= high:
        raise exceptions.ValidationError({name: [f"{name} must be between {low} and {high}."]})
    return value


def _line_items_page(request, invoice, *, limit_param: str, token_param: str) -> selectors.InvoiceLinePage:
    """One page of an invoice's line items, its size and position read from the two query parameters."""
    limit = _int_param(request, limit_param, 100, 1, LINE_ITEMS_MAX)
    token = request.query_params.get(token_param)
    after = None
    if token:
        try:
            after = s.page_token_position(token)
        except ValueError:
            raise exceptions.ValidationError({token_param: ["Not a page token from this API."]}) from None
    return selectors.invoice_line_page(invoice=invoice, limit=limit, after=after)


def _expand(request) -> bool:
    parts = {part.strip() for part in (request.query_params.get("expand") or "").split(",") if part.strip()}
    unknown = parts - {"lineItems", "items", "lineProvenance"}
    if unknown:
        raise exceptions.ValidationError({"expand": [f"Unknown expansion {sorted(unknown)[0]!r}; use lineItems."]})
    return bool(parts)


class InvoiceCollectionApi(BillingApi):
    @extend_schema(
        operation_id="listInvoices",
        tags=["invoices"],
        parameters=[
            OpenApiParameter("status", str, enum=list(s.WIRE_STATUSES)),
            OpenApiParameter("subscriptionId", str),
            OpenApiParameter("customerId", str),
            OpenApiParameter("merchantId", str),
            *PAGING,
        ],
        responses={200: list_output("InvoiceList", s.InvoiceOutput, with_object=True), **ERRORS},
        description="Newest period first. Status mapping: draft → DRAFT, issued → ISSUED, paid → PAID, "
        "void → CANCELLED, an open invoice whose automatic charge failed → PAYMENT_FAILED; the other Paygentic "
        "statuses are valid filters that match nothing.",
    )
    def get(self, request):
        params = request.query_params
        check_merchant(request, params.get("merchantId"))
        statuses = None
        wire_status = params.get("status")
        if wire_status:
            if wire_status not in s.WIRE_STATUSES:
                raise exceptions.ValidationError(
                    {"status": [f"Unknown status {wire_status!r}; use one of {', '.join(s.WIRE_STATUSES)}."]}
                )
            statuses = s.WIRE_TO_STATUS.get(wire_status, [])
        invoices = selectors.invoice_list(
            merchant=self.merchant,
            statuses=statuses,
            payment_failed=s.WIRE_PAYMENT_FAILED_FILTER.get(wire_status),
            subscription_id=params.get("subscriptionId"),
            customer_id=params.get("customerId"),
        )
        rows, pagination = paginate(invoices, request)
        data = s.InvoiceOutput(rows, many=True, context={"request": request}).data
        return Response({"object": "list", "data": data, "pagination": pagination})


class InvoiceDetailApi(BillingApi):
    @extend_schema(
        operation_id="getInvoice",
        tags=["invoices"],
        parameters=[
            OpenApiParameter("expand", str, description="lineItems (items and lineProvenance imply lineItems)."),
            OpenApiParameter(
                "lineItemsLimit",
                {"type": "integer", "minimum": 1, "maximum": LINE_ITEMS_MAX},
                description="Default 100.",
            ),
            OpenApiParameter("lineItemsPageToken", str),
        ],
        responses={200: s.InvoiceOutput, **ERRORS},
    )
    def get(self, request, id: str):
        invoice = invoice_or_404(self.merchant, id)
        line_items = None
        if _expand(request):
            line_items = _line_items_page(
                request, invoice, limit_param="lineItemsLimit", token_param="lineItemsPageToken"
            )
        return Response(invoice_body(request, invoice, line_items=line_items))


class InvoiceLineItemsApi(BillingApi):
    @extend_schema(
        operation_id="getInvoiceLineItems",
        tags=["invoices"],
        parameters=[
            *paging_parameters(default_limit=100, max_limit=LINE_ITEMS_MAX, offset=False),
            OpenApiParameter("pageToken", str, description="nextPageToken of the previous page."),
            OpenApiParameter("expand", str),
        ],
        responses={200: s.InvoiceLineItemsOutput, **ERRORS},
    )
    def get(self, request, id: str):
        invoice = invoice_or_404(self.merchant, id)
        _expand(request)
        page = _line_items_page(request, invoice, limit_param="limit", token_param="pageToken")
        return Response(s.InvoiceLineItemsOutput(page).data)


class PdfRenderer(renderers.BaseRenderer):
    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class InvoicePdfApi(BillingApi):
    renderer_classes = [renderers.JSONRenderer, PdfRenderer]

    @extend_schema(
        operation_id="downloadInvoicePdf",
        tags=["invoices"],
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY), **ERRORS},
        description="The invoice document (the same template as the admin's), drafts included (marked as such).",
    )
    def get(self, request, id: str):
        invoice = invoice_or_404(self.merchant, id)
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice_filename(invoice)}"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):  # an error: always JSON, whatever the Accept header asked for
            response.accepted_renderer = renderers.JSONRenderer()
            response.accepted_media_type = "application/json"
        return response


# A payment refusal's status (the service's code names why); any other refusal is a 422.
PAYMENT_REFUSAL_STATUS = {"INVOICE_ALREADY_PAID": status.HTTP_409_CONFLICT}


class InvoicePaymentApi(BillingApi):
    @extend_schema(
        operation_id="recordInvoicePayment",
        tags=["invoices"],
        request=s.RecordPaymentInput,
        responses={200: s.PaymentResultOutput, **ERRORS, **CONFLICT, 422: ErrorOutput},
        description="out_of_band: ISSUED → PAID (paying Invoice 0 activates a pending_payment subscription); "
        "already paid → 409 INVOICE_ALREADY_PAID; draft or void → 422 INVOICE_NOT_LINKABLE_STATUS. hosted_link → "
        "422 MERCHANT_NO_PAYMENT_ACCOUNT (self-hosted: no payment provider).",
    )
    def post(self, request, id: str):
        invoice = invoice_or_404(self.merchant, id)
        data = self.body(s.RecordPaymentInput)
        try:
            if data["method"] == "hosted_link":
                services.invoice_payment_link_create(invoice=invoice)
            services.invoice_record_payment(invoice=invoice, now=timezone.now(), recorded_by=str(request.user))
        except services.InvoicePaymentError as error:
            # The service's refusals (its rules); the view only names their status.
            raise ApiError(
                str(error),
                status_code=PAYMENT_REFUSAL_STATUS.get(error.code, status.HTTP_422_UNPROCESSABLE_ENTITY),
                code=error.code,
            ) from None
        invoice = invoice_or_404(self.merchant, id)
        return Response(s.PaymentResultOutput({"invoice": invoice}, context={"request": request}).data)

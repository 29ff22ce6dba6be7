"""Billing endpoints: /v0/subscriptions, /v0/testClocks and /v2/invoices, wire-compatible with the
Paygentic client.

Views parse with an input serializer, call an invoicing service or selector, and answer with the
client's shapes. Objects of another merchant are "not found" (404); a query or body naming another
merchant is refused (403). Service refusals become 400 (bad input), 409 (state conflict) or 422.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers, status
from rest_framework.fields import DateTimeField
from rest_framework.response import Response

from catalog import services as catalog_services
from catalog.api.fields import check_merchant
from catalog.api.views import CatalogApi
from catalog.models import Customer, Subscription, SubscriptionStatus, TestClock
from catalog.pricing import PricingError
from core.api.errors import ApiError
from core.api.fields import parameter_combination_error, wire_field_names
from core.api.pagination import page_params, paginate
from core.api.schema import paging_parameters
from core.api.serializers import ErrorOutput, list_output
from core.durations import add_duration, parse_duration
from invoicing import selectors, services
from invoicing.documents import invoice_filename, invoice_pdf
from invoicing.models import Invoice, InvoiceError, InvoiceStatus

from . import serializers as s

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}
CONFLICT = {409: ErrorOutput}
PAGING = paging_parameters()
SUBSCRIPTION_FIELDS = {
    "customer": "customerId",
    "plan": "planId",
    "test_clock": "testClockId",
    "ending_at": "endingAt",
    "started_at": "startedAt",
}
INLINE_CUSTOMER_FIELDS = {
    "name": "customer.name",
    "email": "customer.email",
    "phone": "customer.phone",
    "address_line1": "customer.address.line1",
    "address_line2": "customer.address.line2",
    "city": "customer.address.city",
    "state": "customer.address.state",
    "country": "customer.address.country",
    "postal_code": "customer.address.zipCode",
    "tax_rate": "customer.taxRates.default",
}
LINE_ITEMS_MAX = 1000
LIMITATIONS = (
    "Accepted without effect (no hosted checkout, no reminders): renewalReminder*, sessionExpiryMinutes, "
    "redirectUrls, changeDescription, changeMetadata, prefundAmount, minimumAccountBalance."
)


class BillingApi(CatalogApi):
    """The catalog API's base view (decimal JSON parsing, null-character refusal, merchant, body)."""


def _conflict(message: str, code: str, details=None) -> ApiError:
    return ApiError(message, status_code=status.HTTP_409_CONFLICT, code=code, details=details)


# -- subscriptions ---------------------------------------------------------------------------------


def _subscription_get(merchant, subscription_id: str) -> Subscription:
    try:
        return selectors.subscription_get(merchant=merchant, subscription_id=subscription_id)
    except Subscription.DoesNotExist:
        raise exceptions.NotFound("No such subscription.") from None


def subscription_body(request, subscriptions, *, many: bool = False, include_customer: bool = False, catch_up=None):
    """``SubscriptionOutput`` of one subscription or a page of them, Invoice 0 read in one statement."""
    rows = list(subscriptions) if many else [subscriptions]
    context = {
        "request": request,
        "openings": selectors.subscription_openings(subscriptions=rows),
        "include_customer": include_customer,
        "catch_up": catch_up,
    }
    data = s.SubscriptionOutput(rows, many=True, context=context).data
    return data if many else data[0]


class SubscriptionCollectionApi(BillingApi):
    @extend_schema(
        operation_id="listSubscriptions",
        tags=["subscriptions"],
        parameters=[
            OpenApiParameter("customerId", str, description="Not with consumerId or merchantId."),
            OpenApiParameter("consumerId", str, description="A consumer is its customer here: same as customerId."),
            OpenApiParameter("merchantId", str),
            OpenApiParameter("status", str, many=True, enum=[choice for choice, _ in SubscriptionStatus.choices]),
            OpenApiParameter("startedBefore", OpenApiTypes.DATETIME),
            OpenApiParameter("include", str, enum=["customer"]),
            *PAGING,
        ],
        responses={200: list_output("SubscriptionList", s.SubscriptionOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        params = request.query_params
        customer_id, consumer_id = params.get("customerId"), params.get("consumerId")
        if customer_id and (consumer_id or params.get("merchantId")):
            raise parameter_combination_error(
                "customerId", "customerId cannot be combined with consumerId or merchantId."
            )
        check_merchant(request, params.get("merchantId"))
        statuses = params.getlist("status")
        allowed = {choice for choice, _ in SubscriptionStatus.choices}
        bad = [value for value in statuses if value not in allowed]
        if bad:
            raise exceptions.ValidationError(
                {"status": [f"Unknown status {bad[0]!r}; use {', '.join(sorted(allowed))}."]}
            )
        before = None
        if params.get("startedBefore"):
            try:
                before = DateTimeField().to_internal_value(params["startedBefore"])
            except exceptions.ValidationError:
                raise exceptions.ValidationError({"startedBefore": ["Give an ISO 8601 date-time."]}) from None
        include = params.get("include")
        if include not in (None, "", "customer"):
            raise exceptions.ValidationError({"include": ['Only "customer" can be included.']})
        queryset = selectors.subscription_list(
            merchant=self.merchant,
            customer_id=customer_id or consumer_id,
            statuses=statuses,
            started_before=before,
        )
        rows, pagination = paginate(queryset, request)
        data = subscription_body(request, rows, many=True, include_customer=include == "customer")
        return Response({"data": data, "pagination": pagination})

    @extend_schema(
        operation_id="createSubscription",
        tags=["subscriptions"],
        request=s.SubscriptionCreateInput,
        responses={201: s.SubscriptionOutput, **ERRORS},
        description="Starts the subscription (invoicing.services.subscription_start). When the plan has in-advance "
        "or one-off fees, Invoice 0 is issued at once; with an amount due the subscription is `pending_payment` "
        "and `payment.status` is `pending` until that invoice is paid (POST /v2/invoices/{id}/payment "
        "out_of_band). A zero-amount Invoice 0 is paid at once (`payment.status: paid`). A backdated start invoices at "
        "most METERLINE_INLINE_CATCHUP_PERIODS ended periods itself; the rest are billed by a background billing run "
        "named by the extension `catchUp {status, pendingPeriods, inlinePeriodLimit, billingRunId}`. `startedAt` "
        "beyond METERLINE_BACKDATE_HORIZON_DAYS back or METERLINE_START_MAX_AHEAD_DAYS ahead → 400. " + LIMITATIONS,
    )
    def post(self, request):
        data = self.body(s.SubscriptionCreateInput)
        now = timezone.now()
        customer = data.get("customer_obj") or self._inline_customer(data["customer_new"])
        extra = {
            key: data[key]
            for key in ("auto_charge", "tax_exempt", "payment_term_days", "version_policy", "elapsed_period_billing")
            if key in data
        }
        metadata = dict(data.get("metadata") or {})
        if metadata:
            extra["metadata"] = {
                key: str(value) if isinstance(value, Decimal) else value for key, value in metadata.items()
            }
        try:
            with wire_field_names(SUBSCRIPTION_FIELDS):
                subscription = services.subscription_create_with_upfront_payment(
                    customer=customer,
                    plan=data["plan"],
                    started_at=data["started_at"],
                    now=now,
                    name=data["name"],
                    ending_at=data.get("ending_at"),
                    test_clock=data.get("test_clock"),
                    extra_fields=extra,
                )
        except services.TimeBoundError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        except InvoiceError as error:
            raise exceptions.ValidationError({"planId": [str(error)]}) from None
        body = subscription_body(
            request, _subscription_get(self.merchant, subscription.pk), catch_up=subscription.catch_up
        )
        return Response(body, status=status.HTTP_201_CREATED)

    def _inline_customer(self, fields: dict) -> Customer:
        fields = dict(fields)
        address = fields.pop("address", {}) or {}
        fields.update(address)
        fields.update(fields.pop("tax_rates", None) or {})
        with wire_field_names(INLINE_CUSTOMER_FIELDS):
            customer, _ = catalog_services.customer_create(merchant=self.merchant, **fields)
        return customer


class SubscriptionDetailApi(BillingApi):
    @extend_schema(
        operation_id="getSubscription",
        tags=["subscriptions"],
        parameters=[OpenApiParameter("include", str, enum=["customer"])],
        responses={200: s.SubscriptionOutput, **ERRORS},
    )
    def get(self, request, id: str):
        subscription = _subscription_get(self.merchant, id)
        include = request.query_params.get("include") == "customer"
        return Response(subscription_body(request, subscription, include_customer=include))

    @extend_schema(
        operation_id="updateSubscription",
        tags=["subscriptions"],
        request=s.SubscriptionUpdateInput,
        responses={200: s.SubscriptionOutput, **ERRORS, **CONFLICT},
        description="`status: terminated` terminates now (the final invoice bills the partial period); a "
        "`terminatedAt` must not lie before the subscription's current time (no backdated termination; later "
        "values are clamped to now). `endingAt` schedules the end (null clears it). `status: active` is "
        "accepted on an active subscription only. renewalReminder* and minimumAccountBalance are refused.",
    )
    def patch(self, request, id: str):
        subscription = _subscription_get(self.merchant, id)
        data = self.body(s.SubscriptionUpdateInput)
        now = timezone.now()
        for unsupported in ("renewalReminderEnabled", "renewalReminderDays", "minimumAccountBalance"):
            if unsupported in data:
                raise exceptions.ValidationError({unsupported: ["Not supported by Meterline."]})
        wanted = data.pop("status", None)
        termination = {
            key: data.pop(key) for key in ("terminated_at", "terminated_by", "termination_reason") if key in data
        }
        try:
            if wanted == "active":
                subscription = services.subscription_reactivate(subscription=subscription)
            if data:
                subscription = services.subscription_update(subscription=subscription, changes=data, now=now)
            if wanted == "terminated":
                _terminate(
                    subscription,
                    now=now,
                    reason=termination.get("termination_reason", ""),
                    by=termination.get("terminated_by") or "api",
                    requested_at=termination.get("terminated_at"),
                )
        except services.SubscriptionChangeError as error:
            if error.field:
                raise exceptions.ValidationError({error.field: [str(error)]}) from None
            raise _conflict(str(error), "SUBSCRIPTION_STATUS") from None
        return Response(subscription_body(request, _subscription_get(self.merchant, id)))


def _terminate(subscription, *, now, reason: str, by: str, change_reason=None, requested_at=None) -> Subscription:
    """``subscription_terminate`` with its refusals as API errors: 400 on ``terminatedAt``, else 409."""
    try:
        return services.subscription_terminate(
            subscription=subscription,
            now=now,
            reason=reason,
            by=by,
            change_reason=change_reason,
            requested_at=requested_at,
        )
    except services.SubscriptionTerminatedError as error:
        raise _conflict(str(error), "SUBSCRIPTION_ALREADY_TERMINATED") from None
    except services.SubscriptionChangeError as error:
        if error.field:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        raise _conflict(str(error), "SUBSCRIPTION_STATUS") from None
    except InvoiceError as error:
        raise _conflict(str(error), "SUBSCRIPTION_STATUS") from None


class SubscriptionTerminationApi(BillingApi):
    @extend_schema(
        operation_id="terminateSubscription",
        tags=["subscriptions"],
        request=s.TerminationInput,
        responses={200: s.SubscriptionOutput, **ERRORS, **CONFLICT},
        description="Terminates now (invoicing.services.subscription_terminate): the final invoice bills usage and "
        "in-arrears fees up to now and credits unused in-advance days. A terminated subscription → 409.",
    )
    def post(self, request, id: str):
        subscription = _subscription_get(self.merchant, id)
        data = self.body(s.TerminationInput)
        _terminate(
            subscription,
            now=timezone.now(),
            reason=data["reason"],
            by="api",
            change_reason=data.get("change_reason"),
        )
        return Response(subscription_body(request, _subscription_get(self.merchant, id)))


# -- test clocks -----------------------------------------------------------------------------------


def _clock_get(merchant, clock_id: str) -> TestClock:
    try:
        return selectors.test_clock_get(merchant=merchant, test_clock_id=clock_id)
    except TestClock.DoesNotExist:
        raise exceptions.NotFound("No such test clock.") from None


class TestClockCollectionApi(BillingApi):
    __test__ = False

    @extend_schema(
        operation_id="listTestClocks",
        tags=["testClocks"],
        parameters=[OpenApiParameter("merchantId", str), *PAGING],
        responses={200: list_output("TestClockList", s.TestClockOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        rows, pagination = paginate(selectors.test_clock_list(merchant=self.merchant), request)
        return Response({"data": s.TestClockOutput(rows, many=True).data, "pagination": pagination})

    @extend_schema(
        operation_id="createTestClock",
        tags=["testClocks"],
        request=s.TestClockCreateInput,
        responses={201: s.TestClockOutput, **ERRORS},
        description="currentTime defaults to now and may be in the past; at most METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS "
        "ahead of the real time (else 400 currentTime).",
    )
    def post(self, request):
        data = self.body(s.TestClockCreateInput)
        check_merchant(request, data.get("merchant_id"))
        now = timezone.now()
        try:
            clock = services.test_clock_create(
                merchant=self.merchant,
                current_time=data.get("current_time") or now,
                name=data.get("name") or "",
                description=data.get("description") or "",
                now=now,
            )
        except services.TimeBoundError as error:
            raise exceptions.ValidationError({"currentTime": [str(error)]}) from None
        return Response(s.TestClockOutput(clock).data, status=status.HTTP_201_CREATED)


class TestClockDetailApi(BillingApi):
    __test__ = False

    @extend_schema(operation_id="getTestClock", tags=["testClocks"], responses={200: s.TestClockOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.TestClockOutput(_clock_get(self.merchant, id)).data)

    @extend_schema(
        operation_id="advanceTestClock",
        tags=["testClocks"],
        request=s.TestClockAdvanceInput,
        responses={200: s.TestClockOutput, **ERRORS},
        description="Moves the clock forward (`currentTime`, or `advanceBy` an ISO 8601 duration such as P1M, P7D, "
        "PT2H, P1Y2M3DT4H5M6S; years and months are calendar months, day clamped) and bills the clock's "
        "subscriptions synchronously with the beat's code: every period ended by the new time is invoiced and "
        "drafts whose grace period ended are issued. At most METERLINE_INLINE_CATCHUP_PERIODS periods per subscription "
        "are invoiced in the request, the rest by a background billing run (extension `catchUp`). A time that does "
        "not move forward, or lies more than METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS ahead of the real time → 400.",
    )
    def patch(self, request, id: str):
        clock = _clock_get(self.merchant, id)
        data = self.body(s.TestClockAdvanceInput)
        if "advance_by" in data:
            try:
                to = add_duration(clock.current_time, parse_duration(data["advance_by"]))
            except (ValueError, OverflowError) as error:
                raise exceptions.ValidationError({"advanceBy": [str(error)]}) from None
            field = "advanceBy"
        else:
            to, field = data["current_time"], "currentTime"
        try:
            run = services.test_clock_advance(test_clock=clock, to=to, now=timezone.now())
        except services.TimeBoundError as error:
            raise exceptions.ValidationError({field: [str(error)]}) from None
        except services.TestClockError as error:
            if error.conflict:
                raise _conflict(str(error), "TEST_CLOCK_DELETED") from None
            raise exceptions.ValidationError({field: [str(error)]}) from None
        clock = _clock_get(self.merchant, id)
        return Response(s.TestClockOutput(clock, context={"catch_up": run.catch_up}).data)

    @extend_schema(
        operation_id="deleteTestClock",
        tags=["testClocks"],
        responses={200: s.TestClockOutput, **ERRORS, **CONFLICT},
        description="Soft delete: answers the clock with deletedAt. 409 TEST_CLOCK_IN_USE while a subscription on "
        "it is not terminated. A deleted clock is then 404 and cannot take new subscriptions.",
    )
    def delete(self, request, id: str):
        clock = _clock_get(self.merchant, id)
        try:
            clock = services.test_clock_delete(test_clock=clock, now=timezone.now())
        except services.TestClockError as error:
            raise _conflict(str(error), "TEST_CLOCK_IN_USE") from None
        return Response(s.TestClockOutput(clock).data)


# -- invoices --------------------------------------------------------------------------------------


def _invoice_get(merchant, invoice_id: str) -> Invoice:
    try:
        return selectors.invoice_get(merchant=merchant, invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        raise exceptions.NotFound("No such invoice.") from None


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
        "void → CANCELLED; the other Paygentic statuses are valid filters that match nothing.",
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
            stored = s.WIRE_TO_STATUS.get(wire_status)
            statuses = [stored] if stored else []
        invoices = selectors.invoice_list(
            merchant=self.merchant,
            statuses=statuses,
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
        invoice = _invoice_get(self.merchant, id)
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
        invoice = _invoice_get(self.merchant, id)
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
        invoice = _invoice_get(self.merchant, id)
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice_filename(invoice)}"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):  # an error: always JSON, whatever the Accept header asked for
            response.accepted_renderer = renderers.JSONRenderer()
            response.accepted_media_type = "application/json"
        return response


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
        invoice = _invoice_get(self.merchant, id)
        data = self.body(s.RecordPaymentInput)
        if invoice.status == InvoiceStatus.PAID:
            raise _conflict(f"Invoice {invoice} is already paid.", "INVOICE_ALREADY_PAID")
        if invoice.status != InvoiceStatus.ISSUED:
            raise self._unprocessable(
                f"Invoice {invoice} is {s.STATUS_TO_WIRE[invoice.status]}; payments are recorded on ISSUED invoices.",
                "INVOICE_NOT_LINKABLE_STATUS",
            )
        if data["method"] == "hosted_link":
            raise self._unprocessable(
                "Meterline is self-hosted and has no payment provider for payment links; record the payment "
                "with method out_of_band once received.",
                "MERCHANT_NO_PAYMENT_ACCOUNT",
            )
        try:
            services.invoice_record_payment(invoice=invoice, now=timezone.now())
        except services.InvoicePaymentError as error:
            if error.code == "INVOICE_ALREADY_PAID":
                raise _conflict(str(error), error.code) from None
            raise self._unprocessable(str(error), error.code) from None
        invoice = _invoice_get(self.merchant, id)
        return Response(s.PaymentResultOutput({"invoice": invoice}, context={"request": request}).data)

    @staticmethod
    def _unprocessable(message: str, code: str) -> ApiError:
        return ApiError(message, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, code=code)


# -- billing ledger lines (pending and invoiced) ---------------------------------------------------


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
            subscription = _subscription_get(self.merchant, subscription_id)
        if invoice_id:
            invoice = _invoice_get(self.merchant, invoice_id)
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

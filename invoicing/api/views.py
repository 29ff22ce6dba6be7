"""Billing endpoints: /v0/subscriptions, /v0/testClocks and /v2/invoices, wire-compatible with the
Paygentic client.

Views parse with an input serializer, call an invoicing service or selector, and answer with the
client's shapes. Objects of another merchant are "not found" (404); a query or body naming another
merchant is refused (403). Service refusals become 400 (bad input), 409 (state conflict) or 422.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers, status
from rest_framework.response import Response

from catalog import services as catalog_services
from catalog.api.fields import check_merchant, money_string
from catalog.api.views import CatalogApi
from catalog.models import Customer, Subscription, SubscriptionStatus, TestClock
from catalog.pricing import PricingError
from core.api.errors import ApiError
from core.api.fields import parameter_combination_error, wire_field_names
from core.api.pagination import page_params, paginate
from core.api.schema import paging_parameters
from core.api.serializers import ErrorOutput
from core.durations import add_duration, parse_duration
from core.formatting import decimal_string, iso_utc
from invoicing import selectors, services
from invoicing.calculation import subscription_period_at
from invoicing.documents import invoice_filename, invoice_pdf
from invoicing.models import OPEN_STATUSES, Invoice, InvoiceError, InvoiceKind, InvoiceLine, InvoiceStatus, LineKind
from invoicing.receivables import amount_paid_expression, invoice_amount_paid

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
SUBSCRIPTION_RELATED = ("plan", "customer", "merchant", "test_clock")
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


def _subscriptions(merchant):
    return Subscription.objects.filter(merchant=merchant).select_related(*SUBSCRIPTION_RELATED)


def _subscription_get(merchant, subscription_id: str) -> Subscription:
    try:
        return _subscriptions(merchant).get(pk=subscription_id)
    except Subscription.DoesNotExist:
        raise exceptions.NotFound("No such subscription.") from None


def _openings(subscriptions) -> dict[str, Invoice]:
    return {
        invoice.subscription_id: invoice
        for invoice in Invoice.objects.filter(
            subscription__in=[sub.pk for sub in subscriptions], kind=InvoiceKind.OPENING
        ).exclude(status=InvoiceStatus.VOID)
    }


def subscription_body(request, subscriptions, *, many: bool = False, include_customer: bool = False):
    rows = list(subscriptions) if many else [subscriptions]
    context = {"request": request, "openings": _openings(rows), "include_customer": include_customer}
    data = s.SubscriptionOutput(rows, many=True, context=context).data
    return data if many else data[0]


def catch_up_body(catch_up: services.CatchUp) -> dict:
    """Meterline's extension: ended periods this request left to a background billing run."""
    run = catch_up.billing_run
    return {
        "status": "pending",
        "pendingPeriods": catch_up.pending_periods,
        "inlinePeriodLimit": settings.METERLINE_INLINE_CATCHUP_PERIODS,
        "billingRunId": run.pk,
    }


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
        responses={200: s.list_output("SubscriptionList", s.SubscriptionOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        params = request.query_params
        customer_id, consumer_id = params.get("customerId"), params.get("consumerId")
        if customer_id and (consumer_id or params.get("merchantId")):
            raise parameter_combination_error(
                "customerId", "customerId cannot be combined with consumerId or merchantId."
            )
        check_merchant(request, params.get("merchantId"))
        queryset = _subscriptions(self.merchant)
        if customer_id or consumer_id:
            queryset = queryset.filter(customer_id=customer_id or consumer_id)
        statuses = params.getlist("status")
        allowed = {choice for choice, _ in SubscriptionStatus.choices}
        bad = [value for value in statuses if value not in allowed]
        if bad:
            raise exceptions.ValidationError(
                {"status": [f"Unknown status {bad[0]!r}; use {', '.join(sorted(allowed))}."]}
            )
        if statuses:
            queryset = queryset.filter(status__in=statuses)
        if params.get("startedBefore"):
            from rest_framework.fields import DateTimeField

            try:
                before = DateTimeField().to_internal_value(params["startedBefore"])
            except exceptions.ValidationError:
                raise exceptions.ValidationError({"startedBefore": ["Give an ISO 8601 date-time."]}) from None
            queryset = queryset.filter(started_at__lt=before)
        include = params.get("include")
        if include not in (None, "", "customer"):
            raise exceptions.ValidationError({"include": ['Only "customer" can be included.']})
        rows, pagination = paginate(queryset.order_by("-started_at", "pk"), request)
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
        catch_up = subscription.catch_up
        subscription = _subscription_get(self.merchant, subscription.pk)
        body = subscription_body(request, subscription)
        if catch_up is not None:
            body["catchUp"] = catch_up_body(catch_up)
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
        if wanted == "active" and subscription.status != SubscriptionStatus.ACTIVE:
            raise _conflict(
                f"The subscription is {subscription.status}; it becomes active when Invoice 0 is paid"
                if subscription.status == SubscriptionStatus.PENDING_PAYMENT
                else "A terminated subscription cannot be reactivated; start a new one.",
                "SUBSCRIPTION_STATUS",
            )
        termination = {
            key: data.pop(key) for key in ("terminated_at", "terminated_by", "termination_reason") if key in data
        }
        try:
            if data:
                subscription = services.subscription_update(subscription=subscription, changes=data, now=now)
            if wanted == "terminated":
                subscription = self._terminate(subscription, termination, now)
        except services.SubscriptionChangeError as error:
            if error.field:
                raise exceptions.ValidationError({error.field: [str(error)]}) from None
            raise _conflict(str(error), "SUBSCRIPTION_STATUS") from None
        return Response(subscription_body(request, _subscription_get(self.merchant, id)))

    def _terminate(self, subscription, termination: dict, now):
        sub_now = services.subscription_now(subscription, now)
        at = termination.get("terminated_at")
        if at is not None:
            if at <= subscription.started_at:
                raise exceptions.ValidationError({"terminatedAt": ["Must be after startedAt."]})
            if at < sub_now - timedelta(seconds=60):
                raise exceptions.ValidationError(
                    {"terminatedAt": ["A backdated termination is not supported; terminate now or set endingAt."]}
                )
        return _terminate(
            subscription,
            now=now,
            reason=termination.get("termination_reason", ""),
            by=termination.get("terminated_by") or "api",
        )


def _terminate(subscription, *, now, reason: str, by: str, change_reason: str | None = None):
    if subscription.status == SubscriptionStatus.TERMINATED:
        raise _conflict("The subscription is already terminated.", "SUBSCRIPTION_ALREADY_TERMINATED")
    try:
        return services.subscription_terminate(
            subscription=subscription, now=now, reason=reason, by=by, change_reason=change_reason
        )
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
        return TestClock.objects.get(merchant=merchant, pk=clock_id, deleted_at__isnull=True)
    except TestClock.DoesNotExist:
        raise exceptions.NotFound("No such test clock.") from None


class TestClockCollectionApi(BillingApi):
    __test__ = False

    @extend_schema(
        operation_id="listTestClocks",
        tags=["testClocks"],
        parameters=[OpenApiParameter("merchantId", str), *PAGING],
        responses={200: s.list_output("TestClockList", s.TestClockOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        clocks = TestClock.objects.filter(merchant=self.merchant, deleted_at__isnull=True).order_by("-created_at", "pk")
        rows, pagination = paginate(clocks, request)
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
        body = s.TestClockOutput(_clock_get(self.merchant, id)).data
        if run.catch_up is not None:
            body["catchUp"] = catch_up_body(run.catch_up)
        return Response(body)

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


def _invoices(merchant):
    return (
        Invoice.objects.filter(merchant=merchant)
        .select_related("subscription__plan", "subscription__customer", "plan", "merchant")
        .annotate(item_count=Count("lines", filter=~Q(lines__kind=LineKind.TAX)), amount_paid=amount_paid_expression())
    )


def _invoice_get(merchant, invoice_id: str) -> Invoice:
    try:
        return _invoices(merchant).get(pk=invoice_id)
    except Invoice.DoesNotExist:
        raise exceptions.NotFound("No such invoice.") from None


def _sequence_number(invoice: Invoice) -> int:
    """0 for Invoice 0 (the opening invoice), else the 1-based billing period the invoice belongs to."""
    if invoice.kind == InvoiceKind.OPENING:
        return 0
    subscription = invoice.subscription
    first = subscription_period_at(subscription, subscription.started_at).index
    return subscription_period_at(subscription, invoice.period_start).index - first + 1


def invoice_body(request, invoice: Invoice, *, line_items: dict | None = None) -> dict:
    subscription = invoice.subscription
    grace = invoice.grace_ends_at
    if grace is None:
        grace = invoice.issued_at if invoice.kind == InvoiceKind.OPENING else None
        grace = grace or invoice.period_end + invoice.merchant.invoice_grace_period
    open_ = invoice.status in (InvoiceStatus.DRAFT, *OPEN_STATUSES)
    amount_paid = getattr(invoice, "amount_paid", None)
    amount_paid = invoice_amount_paid(invoice=invoice) if amount_paid is None else amount_paid
    due_at = None
    if invoice.due_at is not None:
        due_day = invoice.due_at.date()
        due_at = f"{due_day.isoformat()}T00:00:00Z"
    body = {
        "id": invoice.id,
        "object": "invoice",
        "status": s.STATUS_TO_WIRE[invoice.status],
        "merchantId": invoice.merchant_id,
        "customerId": invoice.customer_id,
        "subscriptionId": invoice.subscription_id,
        "currency": invoice.currency,
        "periodStart": iso_utc(invoice.period_start),
        "periodEnd": iso_utc(invoice.period_end),
        "billingAnchor": iso_utc(subscription.effective_billing_anchor),
        "billingCadence": invoice.plan.billing_cadence,
        "sequenceNumber": _sequence_number(invoice),
        "gracePeriodEnd": iso_utc(grace),
        "subtotal": money_string(invoice.subtotal, invoice.currency),
        "totalTax": money_string(invoice.tax, invoice.currency),
        "grandTotal": money_string(invoice.total, invoice.currency),
        "paidAmount": money_string(amount_paid, invoice.currency),
        "unpaidAmount": money_string(invoice.amount_due if open_ else Decimal(0), invoice.currency),
        "itemCount": getattr(invoice, "item_count", None)
        if getattr(invoice, "item_count", None) is not None
        else invoice.lines.exclude(kind=LineKind.TAX).count(),
        "autoApprove": invoice.kind != InvoiceKind.ADJUSTMENT and invoice.replaces_id is None,
        "createdAt": iso_utc(invoice.created_at),
        "updatedAt": iso_utc(invoice.updated_at),
        "invoiceNumber": invoice.number,
        "issuedAt": iso_utc(invoice.issued_at),
        "dueAt": due_at,
        "paidAt": iso_utc(invoice.paid_at),
        "nextActionAt": iso_utc(invoice.grace_ends_at) if invoice.status == InvoiceStatus.DRAFT else None,
        "paymentUrl": None,
        "pdfUrl": request.build_absolute_uri(f"/v2/invoices/{invoice.id}/pdf"),
        "pdfSource": "paygentic",
        "permalink": None,
        "metadata": {
            "kind": invoice.kind,
            "replaces": invoice.replaces_id,
            "adjusts": invoice.adjusts_id,
            "voidedAt": iso_utc(invoice.voided_at),
            "voidReason": invoice.void_reason or None,
        },
        "kind": invoice.kind,
        "amountDue": money_string(invoice.amount_due, invoice.currency),
        # Extensions (invoicing/RECEIVABLES.md): our status (ISSUED on the wire may be partially paid or overdue).
        "receivableStatus": invoice.status,
        "amountPaid": money_string(amount_paid, invoice.currency),
        "taxRatePercent": invoice.tax_rate.normalize(),
        "taxBehavior": invoice.tax_behavior,
    }
    if line_items is not None:
        body["lineItems"] = line_items
    return body


def _encode_token(position: int) -> str:
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")


def _decode_token(token: str, field: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, position = text.partition(":")
        if prefix != "after":
            raise ValueError
        return int(position)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise exceptions.ValidationError({field: ["Not a page token from this API."]}) from None


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


def invoice_line_items(invoice: Invoice, *, limit: int, after: int | None) -> dict:
    """One page of the invoice's lines (tax is spread over the lines, not a line of its own)."""
    lines = list(
        InvoiceLine.objects.filter(invoice=invoice)
        .exclude(kind=LineKind.TAX)
        .select_related("price__billable_metric", "price__fee")
        .order_by("position", "pk")
    )
    taxes = s.allocate_tax(invoice, lines)
    page = [line for line in lines if after is None or line.position > after]
    more = len(page) > limit
    page = page[:limit]
    return {
        "invoiceId": invoice.id,
        "lineItems": [s.invoice_line_item(line, invoice, taxes[line.pk]) for line in page],
        "totalCount": len(lines),
        "nextPageToken": _encode_token(page[-1].position) if more else None,
    }


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
        responses={200: s.list_output("InvoiceList", s.InvoiceOutput, with_object=True), **ERRORS},
        description="Newest period first. Status mapping: draft → DRAFT, issued → ISSUED, paid → PAID, "
        "void → CANCELLED; the other Paygentic statuses are valid filters that match nothing.",
    )
    def get(self, request):
        params = request.query_params
        check_merchant(request, params.get("merchantId"))
        invoices = _invoices(self.merchant)
        wire_status = params.get("status")
        if wire_status:
            if wire_status not in s.WIRE_STATUSES:
                raise exceptions.ValidationError(
                    {"status": [f"Unknown status {wire_status!r}; use one of {', '.join(s.WIRE_STATUSES)}."]}
                )
            stored = s.WIRE_TO_STATUS.get(wire_status)
            invoices = invoices.filter(status__in=stored)
        if params.get("subscriptionId"):
            invoices = invoices.filter(subscription_id=params["subscriptionId"])
        if params.get("customerId"):
            invoices = invoices.filter(customer_id=params["customerId"])
        rows, pagination = paginate(invoices.order_by("-period_start", "-created_at", "pk"), request)
        return Response(
            {"object": "list", "data": [invoice_body(request, invoice) for invoice in rows], "pagination": pagination}
        )


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
        return Response(_line_items_page(request, invoice, limit_param="limit", token_param="pageToken"))


def _line_items_page(request, invoice, *, limit_param: str, token_param: str) -> dict:
    """One page of an invoice's line items, its size and position read from the two query parameters."""
    limit = _int_param(request, limit_param, 100, 1, LINE_ITEMS_MAX)
    token = request.query_params.get(token_param)
    after = _decode_token(token, token_param) if token else None
    return invoice_line_items(invoice, limit=limit, after=after)


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
        if invoice.status not in OPEN_STATUSES:
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
            services.invoice_record_payment(invoice=invoice, now=timezone.now(), recorded_by=str(request.user))
        except services.InvoicePaymentError as error:
            if error.code == "INVOICE_ALREADY_PAID":
                raise _conflict(str(error), error.code) from None
            raise self._unprocessable(str(error), error.code) from None
        invoice = _invoice_get(self.merchant, id)
        return Response({"method": "out_of_band", "invoice": invoice_body(request, invoice)})

    @staticmethod
    def _unprocessable(message: str, code: str) -> ApiError:
        return ApiError(message, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, code=code)


# -- billing ledger lines (pending and invoiced) ---------------------------------------------------

LEDGER_TYPE = {
    LineKind.FEE: "fee",
    LineKind.CREDIT: "fee",
    LineKind.USAGE: "metered",
    LineKind.DISCOUNT: "discount",
    LineKind.MINIMUM: "adjustment",
    LineKind.ADJUSTMENT: "adjustment",
}


def _ledger_line(*, line_id, subscription, line, status_, invoice=None, invoice_at, created_at, updated_at) -> dict:
    price = line.price
    metered = line.kind in (LineKind.USAGE, LineKind.ADJUSTMENT)
    pending_metered = metered and status_ == "pending"
    amount = decimal_string(line.amount)
    quantity = decimal_string(line.quantity) if line.quantity is not None else None
    return {
        "id": line_id,
        "subscriptionId": subscription.id,
        "customerId": subscription.customer_id,
        "type": LEDGER_TYPE.get(line.kind, line.kind),
        "status": status_,
        "displayName": price.invoice_display_name if price is not None else line.description,
        "currency": invoice.currency if invoice is not None else subscription.plan.currency,
        "periodStart": iso_utc(line.service_start or (invoice.period_start if invoice else None)),
        "periodEnd": iso_utc(line.service_end or (invoice.period_end if invoice else None)),
        "invoiceAt": iso_utc(invoice_at),
        "unitPrice": decimal_string(line.unit_price if line.unit_price is not None else Decimal(0)),
        "createdAt": iso_utc(created_at),
        "updatedAt": iso_utc(updated_at),
        "priceId": price.id if price is not None else None,
        "itemId": None,
        "invoiceId": invoice.id if invoice is not None else None,
        "description": line.description,
        "quantity": None if pending_metered else quantity,
        "meteredQuantity": quantity if metered else None,
        "paymentTerm": "in_arrears"
        if metered
        else (price.payment_term if price is not None and price.fee_id else None),
        "subtotal": "0" if pending_metered else amount,
        "total": "0" if pending_metered else amount,
        "estimatedMeteredQuantity": quantity if pending_metered else None,
        "estimatedSubtotal": amount if pending_metered else None,
        "explanation": line.explanation.get("text") or None,
    }


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
        responses={
            200: s.inline_serializer(
                name="LineItemsResponse",
                fields={
                    "object": s.Constant("list"),
                    "data": s.LedgerLineOutput(many=True),
                    "totalCount": s.serializers.IntegerField(),
                    "summary": s.LineItemsSummaryOutput,
                },
            ),
            **ERRORS,
        },
        description="Invoiced lines (on non-void invoices) and pending lines: what the current period would "
        "bill with the usage known now (invoicing.selectors.invoice_estimate; metered amounts are estimates).",
    )
    def get(self, request):
        params = request.query_params
        subscription_id, invoice_id = params.get("subscriptionId"), params.get("invoiceId")
        if not subscription_id and not invoice_id:
            raise parameter_combination_error("subscriptionId", "Give subscriptionId or invoiceId.")
        wanted = params.get("status")
        if wanted not in (None, "", "pending", "invoiced"):
            raise exceptions.ValidationError({"status": ["Use pending or invoiced."]})
        limit, offset = page_params(request, default_limit=100, max_limit=LINE_ITEMS_MAX)
        invoices = Invoice.objects.filter(merchant=self.merchant).exclude(status=InvoiceStatus.VOID)
        subscription = None
        if subscription_id:
            subscription = _subscription_get(self.merchant, subscription_id)
            invoices = invoices.filter(subscription=subscription)
        if invoice_id:
            invoice = _invoice_get(self.merchant, invoice_id)
            if subscription is not None and invoice.subscription_id != subscription.id:
                raise exceptions.NotFound("No such invoice on this subscription.")
            subscription = subscription or invoice.subscription
            invoices = invoices.filter(pk=invoice.pk)
        rows: list[dict] = []
        fee_subtotal = metered_subtotal = Decimal(0)
        if wanted in (None, "", "invoiced"):
            for line in (
                InvoiceLine.objects.filter(invoice__in=invoices)
                .exclude(kind=LineKind.TAX)
                .select_related("invoice", "price")
                .order_by("invoice__period_start", "invoice__created_at", "position")
            ):
                invoice = line.invoice
                rows.append(
                    _ledger_line(
                        line_id=f"inl_{line.pk}",
                        subscription=subscription,
                        line=line,
                        status_="invoiced",
                        invoice=invoice,
                        invoice_at=invoice.issued_at or invoice.grace_ends_at or invoice.period_end,
                        created_at=invoice.created_at,
                        updated_at=invoice.updated_at,
                    )
                )
        if wanted in (None, "", "pending") and not invoice_id:
            now = timezone.now()
            try:
                preview = selectors.invoice_estimate(subscription=subscription, now=now)
            except PricingError as error:  # e.g. usage beyond the bound of catalog.pricing.limits
                raise ApiError(
                    f"The pending usage of this subscription cannot be rated: {error}",
                    status_code=409,
                    code="UNRATEABLE_USAGE",
                ) from None
            if preview is not None:
                moment = services.subscription_now(subscription, now)
                for position, line in enumerate(preview.lines, start=1):
                    if line.kind == LineKind.TAX:
                        continue
                    if line.kind == LineKind.USAGE:
                        metered_subtotal += line.amount
                    elif line.kind in (LineKind.FEE, LineKind.CREDIT):
                        fee_subtotal += line.amount
                    rows.append(
                        _ledger_line(
                            line_id=f"pending_{subscription.id}_{int(preview.period_start.timestamp())}_{position}",
                            subscription=subscription,
                            line=line,
                            status_="pending",
                            invoice_at=preview.period_end,
                            created_at=moment,
                            updated_at=moment,
                        )
                    )
        return Response(
            {
                "object": "list",
                "data": rows[offset : offset + limit],
                "totalCount": len(rows),
                "summary": {
                    "feeSubtotal": decimal_string(fee_subtotal),
                    "meteredEstimatedSubtotal": decimal_string(metered_subtotal),
                    "currency": subscription.plan.currency,
                },
            }
        )

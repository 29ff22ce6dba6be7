"""/v0/subscriptions: start, list, read, change, terminate (invoicing.services for every rule)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, status
from rest_framework.fields import DateTimeField
from rest_framework.response import Response

from catalog import services as catalog_services
from catalog.api.fields import check_merchant
from catalog.models import Customer, Subscription, SubscriptionStatus
from catalog.selectors import subscription_initial_versions
from core.api.fields import parameter_combination_error, wire_field_names
from core.api.pagination import paginate
from core.api.serializers import list_output
from invoicing import selectors, services
from invoicing.models import InvoiceError
from invoicing.services import plan_versions

from . import serializers as s
from .common import CONFLICT, ERRORS, PAGING, BillingApi, conflict, subscription_or_404

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
LIMITATIONS = (
    "Accepted without effect (no hosted checkout, no reminders): renewalReminder*, sessionExpiryMinutes, "
    "redirectUrls, changeDescription, changeMetadata, prefundAmount, minimumAccountBalance."
)


def subscription_body(request, subscriptions, *, many: bool = False, include_customer: bool = False, catch_up=None):
    """``SubscriptionOutput`` of one subscription or a page of them, Invoice 0 read in one statement."""
    rows = list(subscriptions) if many else [subscriptions]
    context = {
        "request": request,
        "openings": selectors.subscription_openings(subscriptions=rows),
        "versions": subscription_initial_versions(subscriptions=rows),
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
            for key in (
                "auto_charge",
                "tax_exempt",
                "payment_term_days",
                "version_policy",
                "elapsed_period_billing",
                "threshold_amount",
                "threshold_ladder",
                "threshold_recurring",
            )
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
                    trial_ends_at=data.get("trial_end"),
                    test_clock=data.get("test_clock"),
                    extra_fields=extra,
                )
        except services.TimeBoundError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        except InvoiceError as error:
            raise exceptions.ValidationError({"planId": [str(error)]}) from None
        body = subscription_body(
            request, subscription_or_404(self.merchant, subscription.pk), catch_up=subscription.catch_up
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
        subscription = subscription_or_404(self.merchant, id)
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
        subscription = subscription_or_404(self.merchant, id)
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
            raise conflict(str(error), "SUBSCRIPTION_STATUS") from None
        return Response(subscription_body(request, subscription_or_404(self.merchant, id)))


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
        raise conflict(str(error), "SUBSCRIPTION_ALREADY_TERMINATED") from None
    except services.SubscriptionChangeError as error:
        if error.field:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        raise conflict(str(error), "SUBSCRIPTION_STATUS") from None
    except InvoiceError as error:
        raise conflict(str(error), "SUBSCRIPTION_STATUS") from None


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
        subscription = subscription_or_404(self.merchant, id)
        data = self.body(s.TerminationInput)
        _terminate(
            subscription,
            now=timezone.now(),
            reason=data["reason"],
            by="api",
            change_reason=data.get("change_reason"),
        )
        return Response(subscription_body(request, subscription_or_404(self.merchant, id)))


class SubscriptionVersionMigrationApi(BillingApi):
    @extend_schema(
        operation_id="migrateSubscriptionVersion",
        tags=["subscriptions"],
        request=s.VersionMigrationInput,
        responses={
            200: inline_serializer(
                "MigrateSubscriptionVersionResponse",
                {
                    "subscription": s.SubscriptionOutput(),
                    "migration": s.VersionMigrationOutput(),
                    "lineItems": s.LineItemsSyncOutput(),
                },
            ),
            **ERRORS,
            **CONFLICT,
        },
        description="Pins the subscription to a published version of its plan (versionPolicy becomes pinned). "
        "`next_period` (the default: the plan's versionTransition) moves it at the end of the current period; "
        "`immediate` rates the whole current period's in-arrears prices at the target and in-advance prices from "
        "the next period. A closed period is never re-rated. A version the plan does not have → 404; a "
        "subscription that is not live (NOT_LIVE) or ends by the boundary (ENDS_BEFORE_BOUNDARY), or a version with a line "
        "keyed as one of its subscription-only intervals still billing after the boundary (INTERVAL_KEY_CONFLICT) → 409.",
    )
    def post(self, request, id: str):
        subscription = subscription_or_404(self.merchant, id)
        data = self.body(s.VersionMigrationInput)
        try:
            migration = plan_versions.subscription_version_migrate(
                subscription=subscription,
                target_version_number=data["target_version_number"],
                timing=data.get("timing"),
                now=timezone.now(),
            )
        except plan_versions.VersionNotFound as error:
            raise exceptions.NotFound(str(error)) from None
        except plan_versions.VersionMigrationConflict as error:
            raise conflict(str(error), error.code) from None
        body = {
            "subscription": subscription_body(request, subscription_or_404(self.merchant, id)),
            "migration": s.VersionMigrationOutput(migration).data,
            "lineItems": {"syncFailed": False},
        }
        return Response(body)

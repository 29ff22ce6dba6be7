"""Wire shapes of the billing API (subscriptions, test clocks, invoices), as the Paygentic client reads them.

Inputs are camelCase and strict (unknown keys are a 400). Outputs carry every key the client's models
require; money goes out as decimal strings, quantities and tax-rate fractions as JSON numbers.

Kept whole for now because the output shapes nest into each other (invoice, lines, subscription, customer)
and the views were just split by resource; the next split is one module per resource beside its views.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog import models as catalog
from catalog.api.fields import (
    DecimalNumber,
    DecimalString,
    MerchantScopedId,
    MoneyString,
    ThresholdLadderField,
    money_string,
)
from catalog.api.serializers import AddressInput, tax_rates_value
from catalog.pricing.limits import QUANTUM
from core.api.fields import UtcDateTimeField
from core.api.serializers import Constant, StrictSerializer
from core.formatting import decimal_string, iso_utc
from invoicing.documents import breakdown_of
from invoicing.models import OPEN_STATUSES, InvoiceKind, InvoiceStatus, LineKind
from invoicing.pay_links import invoice_pay_link
from invoicing.receivables import invoice_amount_paid

ZERO = Decimal(0)
HUNDRED = Decimal(100)

# Our stored invoice states → the client's Invoice.status literals (and back, for the list filter).
# The client's enum has no partially paid or overdue invoice: both are ISSUED on the wire (money is still due),
# and the extension field ``receivableStatus`` names our status (invoicing/RECEIVABLES.md).
STATUS_TO_WIRE = {
    InvoiceStatus.DRAFT: "DRAFT",
    InvoiceStatus.ISSUED: "ISSUED",
    InvoiceStatus.PARTIALLY_PAID: "ISSUED",
    InvoiceStatus.OVERDUE: "ISSUED",
    InvoiceStatus.PAID: "PAID",
    InvoiceStatus.VOID: "CANCELLED",
}
WIRE_STATUSES = (
    "ACTIVE",
    "CLOSING",
    "CLOSED",
    "CALCULATING",
    "DRAFT",
    "ISSUED",
    "PAYMENT_FAILED",
    "PAID",
    "CANCELLED",
    "WRITTEN_OFF",
    "FAILED",
)
# A wire status filter matches every stored status shown as it (ISSUED: issued, partially paid, overdue).
WIRE_TO_STATUS = {wire: [stored for stored, shown in STATUS_TO_WIRE.items() if shown == wire] for wire in WIRE_STATUSES}
# An open invoice whose automatic charge failed (``payment_failed_at``) is PAYMENT_FAILED on the wire, not ISSUED.
WIRE_TO_STATUS["PAYMENT_FAILED"] = list(OPEN_STATUSES)
WIRE_PAYMENT_FAILED_FILTER = {"PAYMENT_FAILED": True, "ISSUED": False}
CHANGE_REASONS = ("commercial", "correction", "migration", "unspecified")


# -- subscriptions ---------------------------------------------------------------------------------


class InlineCustomerInput(StrictSerializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField()
    address = AddressInput()
    phone = serializers.CharField(max_length=50, allow_blank=True, required=False)
    taxRates = serializers.DictField(source="tax_rates", required=False)

    def validate_taxRates(self, value):
        return tax_rates_value(value)

    def validate_address(self, value):
        missing = [wire for wire, field in (("country", "country"), ("zipCode", "postal_code")) if not value.get(field)]
        if missing:
            raise serializers.ValidationError({name: ["This field is required."] for name in missing})
        return value


class TestClockId(MerchantScopedId):
    """A live (not deleted) test clock of the caller."""

    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


class SubscriptionThresholdInput(StrictSerializer):
    """Meterline extension on subscription create and update: threshold (progressive) billing, overriding the
    plan's (invoicing/THRESHOLDS.md)."""

    thresholdAmount = DecimalString(
        source="threshold_amount",
        allow_null=True,
        required=False,
        min_value=catalog.THRESHOLD_AMOUNT_MIN,
        max_value=catalog.THRESHOLD_AMOUNT_MAX,
        help_text="Meterline extension: invoice the period's usage as soon as it reaches this amount, overriding "
        "the plan's thresholdAmount; null = the plan's. From 0.01 to 1000000000 in the plan's currency.",
    )
    thresholdLadder = ThresholdLadderField(
        source="threshold_ladder",
        allow_null=True,
        required=False,
        help_text="Meterline extension: further thresholds after the subscription's own first one, increasing "
        "(at most 20, each 0.01 to 1000000000).",
    )
    thresholdRecurring = serializers.BooleanField(
        source="threshold_recurring",
        allow_null=True,
        required=False,
        help_text="Meterline extension: after the threshold, invoice again each time usage grows by the same amount; "
        "null = the plan's.",
    )


class SubscriptionCreateInput(SubscriptionThresholdInput):
    name = serializers.CharField(max_length=200)
    planId = MerchantScopedId(catalog.Plan, source="plan")
    startedAt = serializers.DateTimeField(source="started_at")
    customerId = MerchantScopedId(catalog.Customer, source="customer_obj", required=False)
    customer = InlineCustomerInput(source="customer_new", required=False)
    endingAt = serializers.DateTimeField(source="ending_at", required=False)
    testClockId = TestClockId(catalog.TestClock, source="test_clock", required=False)
    autoCharge = serializers.BooleanField(source="auto_charge", required=False)
    taxExempt = serializers.BooleanField(source="tax_exempt", required=False)
    elapsedPeriodBilling = serializers.ChoiceField(
        source="elapsed_period_billing", choices=["none", "per_period"], required=False
    )
    paymentTermDays = serializers.IntegerField(source="payment_term_days", min_value=0, max_value=365, required=False)
    versionPolicy = serializers.ChoiceField(source="version_policy", choices=["floating", "pinned"], required=False)
    metadata = serializers.DictField(required=False)
    # Accepted for compatibility, without effect (documented): no checkout, no reminders, no version history.
    renewalReminderEnabled = serializers.BooleanField(allow_null=True, required=False)
    renewalReminderDays = serializers.IntegerField(allow_null=True, min_value=0, required=False)
    sessionExpiryMinutes = DecimalString(required=False)
    redirectUrls = serializers.DictField(required=False)
    changeReason = serializers.ChoiceField(choices=CHANGE_REASONS, required=False)
    changeDescription = serializers.CharField(allow_blank=True, required=False)
    changeMetadata = serializers.DictField(required=False)
    prefundAmount = serializers.CharField(allow_blank=True, required=False)
    minimumAccountBalance = serializers.CharField(allow_blank=True, required=False)
    # Our extension (the client has no trial): no recurring fee and no usage before the trial ends, as the
    # admin's "trial ends at"; the end moment, or a number of days from the start.
    trialEnd = serializers.DateTimeField(source="trial_end", required=False)
    trialDays = serializers.IntegerField(source="trial_days", min_value=1, max_value=730, required=False)

    def validate_metadata(self, value):
        for key, item in value.items():
            if not isinstance(item, (str, bool, int, Decimal)):
                raise serializers.ValidationError(f"metadata.{key}: use a string, number or boolean.")
        return value

    def validate(self, attrs):
        if ("customer_obj" in attrs) == ("customer_new" in attrs):
            raise serializers.ValidationError({"customerId": ["Give either customerId or customer."]})
        if attrs.get("ending_at") and attrs["ending_at"] <= attrs["started_at"]:
            raise serializers.ValidationError({"endingAt": ["The end must be after the start."]})
        if "trial_end" in attrs and "trial_days" in attrs:
            raise serializers.ValidationError({"trialDays": ["Give either trialEnd or trialDays."]})
        if "trial_days" in attrs:
            attrs["trial_end"] = attrs["started_at"] + timedelta(days=attrs.pop("trial_days"))
        if "trial_end" in attrs and attrs["trial_end"] <= attrs["started_at"]:
            raise serializers.ValidationError({"trialEnd": ["The trial must end after the start."]})
        if "trial_end" in attrs and attrs.get("ending_at") and attrs["trial_end"] > attrs["ending_at"]:
            raise serializers.ValidationError({"trialEnd": ["The trial must end by the subscription's end."]})
        return attrs


class SubscriptionUpdateInput(SubscriptionThresholdInput):
    endingAt = serializers.DateTimeField(source="ending_at", allow_null=True, required=False)
    status = serializers.ChoiceField(choices=["active", "terminated"], required=False)
    terminatedAt = serializers.DateTimeField(source="terminated_at", required=False)
    terminatedBy = serializers.CharField(source="terminated_by", max_length=100, allow_blank=True, required=False)
    terminationReason = serializers.CharField(source="termination_reason", allow_blank=True, required=False)
    autoCharge = serializers.BooleanField(source="auto_charge", required=False)
    taxExempt = serializers.BooleanField(source="tax_exempt", required=False)
    paymentTermDays = serializers.IntegerField(source="payment_term_days", min_value=0, max_value=365, required=False)
    versionPolicy = serializers.ChoiceField(source="version_policy", choices=["floating", "pinned"], required=False)
    renewalReminderEnabled = serializers.BooleanField(allow_null=True, required=False)
    renewalReminderDays = serializers.IntegerField(allow_null=True, min_value=0, required=False)
    minimumAccountBalance = serializers.CharField(allow_blank=True, required=False)

    def validate(self, attrs):
        termination = {"terminated_at", "terminated_by", "termination_reason"} & set(attrs)
        if termination and attrs.get("status") != "terminated":
            raise serializers.ValidationError(
                {"status": ['Send "status": "terminated" with terminatedAt, terminatedBy or terminationReason.']}
            )
        return attrs


class TerminationInput(StrictSerializer):
    reason = serializers.CharField(allow_blank=True)
    changeReason = serializers.ChoiceField(source="change_reason", choices=CHANGE_REASONS, required=False)


class VersionMigrationInput(StrictSerializer):
    targetVersionNumber = serializers.IntegerField(source="target_version_number", min_value=1)
    timing = serializers.ChoiceField(choices=["next_period", "immediate"], required=False)


class VersionMigrationOutput(serializers.Serializer):
    fromVersionNumber = serializers.IntegerField(source="from_version_number", allow_null=True)
    toVersionNumber = serializers.IntegerField(source="to_version_number")
    effectiveAt = UtcDateTimeField(source="effective_at", allow_null=True)
    entitlementsEffectiveAt = UtcDateTimeField(source="entitlements_effective_at", allow_null=True)
    changed = serializers.BooleanField()


class LineItemsSyncOutput(serializers.Serializer):
    syncFailed = serializers.BooleanField()


class BreakdownOutput(serializers.Serializer):
    upfrontCharges = DecimalString()
    walletCharge = DecimalString()


class PaymentOutput(serializers.Serializer):
    """``Subscription.payment`` (a union keyed on ``status``): ``pending`` (Invoice 0 unpaid) or ``paid``."""

    status = serializers.ChoiceField(choices=["pending", "paid"])
    amount = DecimalString()
    invoiceId = serializers.CharField()
    breakdown = BreakdownOutput(required=False)
    checkoutUrl = serializers.CharField(required=False)
    paymentSessionId = serializers.CharField(required=False)


def payment_of(subscription, opening, request) -> dict | None:
    """The ``payment`` object: ``pending`` while Invoice 0 waits to be paid, ``paid`` once it is."""
    if opening is None:
        return None
    # Invoice 0's amount to pay: what is still due plus what payments already took of it.
    amount = money_string(opening.amount_due + invoice_amount_paid(invoice=opening), opening.currency)
    if subscription.status == catalog.SubscriptionStatus.PENDING_PAYMENT and opening.status in OPEN_STATUSES:
        return {
            "status": "pending",
            "amount": amount,
            "breakdown": {"upfrontCharges": amount, "walletCharge": money_string(Decimal(0), opening.currency)},
            # The customer's pay link (payments: a page that opens a fresh Stripe Checkout Session at each
            # visit, valid 30 days) when the merchant's Stripe is connected; without a provider, the invoice in
            # the admin, where finance marks it paid. The "payment session" is the invoice itself either way:
            # the link opens a new Stripe session per visit (listed by GET /v0/paymentSessions).
            "checkoutUrl": invoice_pay_link(opening)
            or request.build_absolute_uri(f"/admin/invoicing/invoice/{opening.id}/change/"),
            "paymentSessionId": opening.id,
            "invoiceId": opening.id,
        }
    if opening.status == InvoiceStatus.PAID:
        return {"status": "paid", "invoiceId": opening.id, "amount": amount}
    return None


class SubscriptionCustomerOutput(serializers.Serializer):
    id = serializers.CharField()
    merchantId = serializers.CharField()
    merchant = serializers.DictField()
    consumer = serializers.DictField()


class OptionalMethodField(serializers.SerializerMethodField):
    """A computed key the response leaves out when it has no value, so the schema marks it optional.

    drf-spectacular documents every read-only field as required; this field is only ever serialised
    (output serializers), so it can drop the read-only flag.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_only = False
        self.required = False


class CatchUpOutput(serializers.Serializer):
    """Meterline extension: the ended periods this request left to a background billing run (a backdated
    start or a test clock advance invoices at most ``inlinePeriodLimit`` periods itself)."""

    # Renders a services.CatchUp.

    status = Constant("pending")
    pendingPeriods = serializers.IntegerField(source="pending_periods")
    inlinePeriodLimit = serializers.SerializerMethodField()
    billingRunId = serializers.IntegerField(source="billing_run.pk")

    def get_inlinePeriodLimit(self, _catch_up) -> int:
        return settings.METERLINE_INLINE_CATCHUP_PERIODS


def catch_up_of(serializer) -> dict | None:
    """The ``catchUp`` a create or advance passes in the context (``catch_up``), rendered; else None."""
    catch_up = serializer.context.get("catch_up")
    return CatchUpOutput(catch_up).data if catch_up is not None else None


class SubscriptionOutput(serializers.Serializer):
    # Context: request, openings (Invoice 0 by subscription id: selectors.subscription_openings), versions
    # (catalog.selectors.subscription_initial_versions),
    # include_customer, catch_up (a services.CatchUp of this request, else None).

    id = serializers.CharField()
    object = Constant("subscription")
    merchantId = serializers.CharField(source="merchant_id")
    customerId = serializers.CharField(source="customer_id")
    name = serializers.CharField()
    planId = serializers.CharField(source="plan_id")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    startedAt = serializers.DateTimeField(source="started_at")
    endingAt = serializers.DateTimeField(source="ending_at", allow_null=True, required=False)
    versionPolicy = serializers.CharField(source="version_policy")
    elapsedPeriodBilling = serializers.CharField(source="elapsed_period_billing", allow_null=True)
    billingStartsAt = serializers.DateTimeField(source="trial_ends_at", allow_null=True)
    billingAnchor = serializers.DateTimeField(source="effective_billing_anchor")
    billingCadence = serializers.CharField(source="plan.billing_cadence")
    status = serializers.CharField()
    paymentTermDays = serializers.IntegerField(source="payment_term_days")
    autoCharge = serializers.BooleanField(source="auto_charge")
    taxExempt = serializers.BooleanField(source="tax_exempt")
    thresholdAmount = DecimalString(
        source="threshold_amount",
        allow_null=True,
        help_text="Meterline extension: the subscription's own usage threshold; null = the plan's.",
    )
    thresholdLadder = ThresholdLadderField(
        source="threshold_ladder",
        allow_null=True,
        help_text="Meterline extension: further thresholds of its own after thresholdAmount.",
    )
    thresholdRecurring = serializers.BooleanField(
        source="threshold_recurring",
        allow_null=True,
        help_text="Meterline extension: whether its own threshold recurs; null = the plan's.",
    )
    estimatedTaxRate = serializers.SerializerMethodField()
    payment = OptionalMethodField()
    terminatedAt = serializers.DateTimeField(source="terminated_at", allow_null=True, required=False)
    terminatedBy = OptionalMethodField()
    terminationReason = OptionalMethodField()
    terminationChangeReason = serializers.SerializerMethodField()
    testClockId = serializers.CharField(source="test_clock_id", allow_null=True, required=False)
    metadata = serializers.SerializerMethodField()
    customer = OptionalMethodField()
    catchUp = OptionalMethodField()
    planVersionId = OptionalMethodField(help_text="The plan version pinned to this subscription at creation.")
    versionNumber = OptionalMethodField(
        help_text="The version number of the plan version referenced by planVersionId, as of subscription creation."
    )
    # Meterline extensions (receivables, RECEIVABLES.md "Dunning"): null unless dunning acted.
    pastDueSince = serializers.DateTimeField(
        source="past_due_since",
        allow_null=True,
        help_text="Meterline extension: a final payment notice went out unanswered at this moment (dunning); null "
        "once the overdue invoices are paid, credited or voided. The subscription is still billed.",
    )
    usageBlockedSince = serializers.DateTimeField(
        source="usage_blocked_since",
        allow_null=True,
        help_text="Meterline extension: since when dunning refuses this subscription's real-time usage "
        "(402 USAGE_BLOCKED on /v0/events); null when not blocked. Cleared with pastDueSince.",
    )

    @extend_schema_field(OpenApiTypes.NUMBER)
    def get_estimatedTaxRate(self, subscription):
        from invoicing.calculation import tax_rate_for

        return tax_rate_for(subscription).normalize()

    @extend_schema_field(PaymentOutput(allow_null=True))
    def get_payment(self, subscription):
        openings = self.context.get("openings", {})
        return payment_of(subscription, openings.get(subscription.id), self.context["request"])

    @extend_schema_field({"type": "string", "nullable": True})
    def get_terminatedBy(self, subscription):
        return subscription.terminated_by or None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_terminationReason(self, subscription):
        return subscription.termination_reason or None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_terminationChangeReason(self, subscription):
        return (subscription.metadata or {}).get("terminationChangeReason")

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metadata(self, subscription):
        return {key: value for key, value in (subscription.metadata or {}).items() if key != "terminationChangeReason"}

    @extend_schema_field(OpenApiTypes.STR)
    def get_planVersionId(self, subscription):
        # Context ``versions``: catalog.selectors.subscription_initial_versions of the rows (absent: no versions).
        found = self.context.get("versions", {}).get(subscription.id)
        return found[0] if found else None

    @extend_schema_field(OpenApiTypes.INT)
    def get_versionNumber(self, subscription):
        found = self.context.get("versions", {}).get(subscription.id)
        return found[1] if found else None

    @extend_schema_field(SubscriptionCustomerOutput(allow_null=True))
    def get_customer(self, subscription):
        if not self.context.get("include_customer"):
            return None
        merchant, customer = subscription.merchant, subscription.customer
        return {
            "id": customer.id,
            "merchantId": merchant.id,
            "merchant": {"id": merchant.id, "name": merchant.name, "email": merchant.email},
            "consumer": {"id": customer.id, "name": customer.name, "email": customer.email},
        }

    @extend_schema_field(CatchUpOutput)
    def get_catchUp(self, _subscription):
        return catch_up_of(self)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Optional keys the client types as non-nullable are left out rather than sent as null.
        for key in (
            "payment",
            "customer",
            "endingAt",
            "terminatedAt",
            "terminatedBy",
            "terminationReason",
            "catchUp",
            "planVersionId",
            "versionNumber",
        ):
            if data.get(key) is None:
                data.pop(key, None)
        if data.get("testClockId") is None:
            data.pop("testClockId", None)
        return data


# -- test clocks -----------------------------------------------------------------------------------


class TestClockCreateInput(StrictSerializer):
    __test__ = False

    currentTime = serializers.DateTimeField(source="current_time", required=False)
    name = serializers.CharField(max_length=200, allow_blank=True, allow_null=True, required=False)
    description = serializers.CharField(allow_blank=True, allow_null=True, required=False)
    merchantId = serializers.CharField(source="merchant_id", required=False)


class TestClockAdvanceInput(StrictSerializer):
    __test__ = False

    currentTime = serializers.DateTimeField(source="current_time", required=False)
    advanceBy = serializers.CharField(source="advance_by", required=False)

    def validate(self, attrs):
        if ("current_time" in attrs) == ("advance_by" in attrs):
            raise serializers.ValidationError({"currentTime": ["Give either currentTime or advanceBy."]})
        return attrs


class TestClockOutput(serializers.Serializer):
    __test__ = False

    id = serializers.CharField()
    merchantId = serializers.CharField(source="merchant_id")
    currentTime = serializers.DateTimeField(source="current_time")
    name = serializers.SerializerMethodField()
    description = serializers.SerializerMethodField()
    deletedAt = serializers.DateTimeField(source="deleted_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    @extend_schema_field({"type": "string", "nullable": True})
    def get_name(self, clock):
        return clock.name or None

    catchUp = OptionalMethodField()

    @extend_schema_field({"type": "string", "nullable": True})
    def get_description(self, clock):
        return clock.description or None

    @extend_schema_field(CatchUpOutput)
    def get_catchUp(self, _clock):
        return catch_up_of(self)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data["catchUp"] is None:
            del data["catchUp"]
        return data


# -- invoices --------------------------------------------------------------------------------------


class RecordPaymentInput(StrictSerializer):
    method = serializers.ChoiceField(choices=["out_of_band", "hosted_link"])
    reason = serializers.CharField(allow_blank=True, required=False)


EVENT_TYPE = {
    LineKind.USAGE: "usage",
    LineKind.ADJUSTMENT: "usage",
    LineKind.THRESHOLD_BILLED: "usage",
    LineKind.FEE: "fee",
    LineKind.CREDIT: "fee",
    LineKind.MINIMUM: "fee",
    LineKind.DISCOUNT: "discount",
}
METERED = (LineKind.USAGE, LineKind.ADJUSTMENT)


def line_payment_term(line) -> str | None:
    """``in_arrears`` for usage, the fee's payment term for a fee line, else None."""
    if line.kind in METERED:
        return "in_arrears"
    price = line.price
    return price.payment_term if price is not None and price.fee_id else None


def line_display_name(line) -> str:
    return line.price.invoice_display_name if line.price is not None else line.description


class InvoiceLineItemOutput(serializers.Serializer):
    """An invoice line with its share of the invoice's tax; ``kind``, ``description``, ``explanation`` and
    ``breakdown`` are Meterline extensions."""

    # Renders a selectors.TaxedLine.

    eventType = serializers.SerializerMethodField()
    eventId = serializers.SerializerMethodField()
    meterEventId = serializers.SerializerMethodField()
    eventSourceId = serializers.SerializerMethodField()
    billableMetricId = serializers.SerializerMethodField()
    invoiceDisplayName = serializers.SerializerMethodField()
    lineItemType = serializers.SerializerMethodField()
    metricName = serializers.SerializerMethodField()
    metricDescription = serializers.SerializerMethodField()
    metricUnit = serializers.SerializerMethodField()
    quantity = serializers.SerializerMethodField()
    taxRate = serializers.SerializerMethodField(help_text="A fraction: 0.1 = 10%.")
    unitPrice = serializers.SerializerMethodField()
    totalPrice = serializers.SerializerMethodField()
    totalTax = serializers.SerializerMethodField()
    totalAmount = serializers.SerializerMethodField()
    itemId = serializers.SerializerMethodField()
    priceId = serializers.CharField(source="line.price_id", allow_null=True)
    periodStart = serializers.SerializerMethodField()
    periodEnd = serializers.SerializerMethodField()
    paymentTerm = serializers.SerializerMethodField()
    kind = serializers.CharField(
        source="line.kind",
        help_text="Meterline: fee, usage, credit, discount, minimum, adjustment, threshold_billed (what a threshold "
        "invoice of the period already billed of a charge, negative).",
    )
    description = serializers.CharField(source="line.description")
    explanation = serializers.SerializerMethodField(help_text="Meterline: how the amount was computed.")
    breakdown = serializers.SerializerMethodField(
        help_text="Meterline: the computation's steps, then the days billed (proration); empty when the line is "
        "explained by its text alone (that text is `explanation`)."
    )

    @staticmethod
    def _source(item):
        """The line's billable metric, else its fee, else None."""
        price = item.line.price
        if price is None:
            return None
        return price.billable_metric if price.billable_metric_id else (price.fee if price.fee_id else None)

    @staticmethod
    def _line_id(item) -> str:
        return f"inl_{item.line.pk}"

    @staticmethod
    def _inclusive(item) -> bool:
        return item.invoice.tax_behavior == "inclusive"

    @extend_schema_field(OpenApiTypes.STR)
    def get_eventType(self, item):
        return EVENT_TYPE.get(item.line.kind, item.line.kind)

    @extend_schema_field(OpenApiTypes.STR)
    def get_eventId(self, item):
        return self._line_id(item)

    @extend_schema_field(OpenApiTypes.STR)
    def get_meterEventId(self, item):
        return self._line_id(item)

    @extend_schema_field(OpenApiTypes.STR)
    def get_eventSourceId(self, item):
        source = self._source(item)
        return source.id if source else ""

    @extend_schema_field(OpenApiTypes.STR)
    def get_billableMetricId(self, item):
        return self.get_eventSourceId(item)

    @extend_schema_field(OpenApiTypes.STR)
    def get_invoiceDisplayName(self, item):
        return line_display_name(item.line)

    @extend_schema_field(serializers.ChoiceField(choices=["charge", "refund"]))
    def get_lineItemType(self, item):
        return "refund" if item.line.kind == LineKind.CREDIT else "charge"

    @extend_schema_field(OpenApiTypes.STR)
    def get_metricName(self, item):
        source = self._source(item)
        return source.name if source else item.line.description

    @extend_schema_field(OpenApiTypes.STR)
    def get_metricDescription(self, item):
        source = self._source(item)
        return source.description if source else item.line.get_kind_display()

    @extend_schema_field(OpenApiTypes.STR)
    def get_metricUnit(self, item):
        price = item.line.price
        return price.billable_metric.unit if price is not None and price.billable_metric_id else "charge"

    @extend_schema_field(DecimalNumber)
    def get_quantity(self, item):
        return (item.line.quantity if item.line.quantity is not None else Decimal(1)).normalize()

    @extend_schema_field(DecimalNumber(help_text="A fraction: 0.1 = 10%."))
    def get_taxRate(self, item):
        return (item.invoice.tax_rate / HUNDRED).normalize()

    @extend_schema_field(DecimalString)
    def get_unitPrice(self, item):
        line = item.line
        quantity = line.quantity if line.quantity is not None else Decimal(1)
        if line.unit_price is not None:
            return decimal_string(line.unit_price)
        if quantity:
            return decimal_string((line.amount / quantity).quantize(QUANTUM).normalize())
        return decimal_string(line.amount)

    @extend_schema_field(DecimalString)
    def get_totalPrice(self, item):
        amount = item.line.amount - item.tax if self._inclusive(item) else item.line.amount
        return money_string(amount, item.invoice.currency)

    @extend_schema_field(DecimalString)
    def get_totalTax(self, item):
        return money_string(item.tax, item.invoice.currency)

    @extend_schema_field(DecimalString)
    def get_totalAmount(self, item):
        amount = item.line.amount if self._inclusive(item) else item.line.amount + item.tax
        return money_string(amount, item.invoice.currency)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_itemId(self, _item):
        return None

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_periodStart(self, item):
        return iso_utc(item.line.service_start or item.invoice.period_start)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_periodEnd(self, item):
        return iso_utc(item.line.service_end or item.invoice.period_end)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_paymentTerm(self, item):
        return line_payment_term(item.line)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_explanation(self, item):
        return item.line.explanation.get("text") or None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_breakdown(self, item):
        # The document's sentences without its text fallback: the text already goes out as ``explanation``.
        return breakdown_of(item.line.explanation, text_fallback=False)


def page_token(position: int) -> str:
    """The opaque cursor of the page after ``position`` (``page_token_position`` reads it back)."""
    return base64.urlsafe_b64encode(f"after:{position}".encode()).decode().rstrip("=")


def page_token_position(token: str) -> int:
    """The position a ``page_token`` names; ValueError for anything else."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(token) from None
    prefix, _, position = text.partition(":")
    if prefix != "after":
        raise ValueError(token)
    return int(position)


class InvoiceLineItemsOutput(serializers.Serializer):
    # Renders a selectors.InvoiceLinePage.

    invoiceId = serializers.CharField(source="invoice.id")
    lineItems = InvoiceLineItemOutput(source="lines", many=True)
    totalCount = serializers.IntegerField(source="total")
    nextPageToken = serializers.SerializerMethodField()

    @extend_schema_field({"type": "string", "nullable": True})
    def get_nextPageToken(self, page):
        return page_token(page.next_after) if page.next_after is not None else None


class InvoiceStatusField(serializers.ChoiceField):
    """The stored status as the client's Invoice.status literal (void → CANCELLED); an open invoice whose
    automatic charge failed (``payment_failed_at``) is PAYMENT_FAILED. Reads the whole invoice (``source="*"``)."""

    def __init__(self, **kwargs):
        # PROJECTED: projected invoices only
        super().__init__(choices=(*WIRE_STATUSES, "PROJECTED"), source="*", **kwargs)

    def to_representation(self, invoice):
        if invoice.payment_failed_at is not None and invoice.status in OPEN_STATUSES:
            return "PAYMENT_FAILED"
        return STATUS_TO_WIRE[invoice.status]


def invoice_sequence_number(invoice) -> int:
    """0 for Invoice 0 (the opening invoice), else the 1-based billing period the invoice belongs to."""
    from invoicing.calculation import subscription_period_at

    if invoice.kind == InvoiceKind.OPENING:
        return 0
    subscription = invoice.subscription
    first = subscription_period_at(subscription, subscription.started_at).index
    return subscription_period_at(subscription, invoice.period_start).index - first + 1


class InvoiceOutput(serializers.Serializer):
    # Context: request; line_items, a selectors.InvoiceLinePage of this invoice when the request expands
    # them (lineItems is left out otherwise).

    id = serializers.CharField()
    object = Constant("invoice")
    status = InvoiceStatusField()
    merchantId = serializers.CharField(source="merchant_id")
    customerId = serializers.CharField(source="customer_id")
    subscriptionId = serializers.CharField(source="subscription_id")
    currency = serializers.CharField()
    periodStart = UtcDateTimeField(source="period_start")
    periodEnd = UtcDateTimeField(source="period_end")
    billingAnchor = UtcDateTimeField(source="subscription.effective_billing_anchor")
    billingCadence = serializers.CharField(source="plan.billing_cadence")
    sequenceNumber = serializers.SerializerMethodField()
    gracePeriodEnd = serializers.SerializerMethodField()
    subtotal = MoneyString()
    totalTax = MoneyString(source="tax")
    grandTotal = MoneyString(source="total")
    paidAmount = serializers.SerializerMethodField()
    unpaidAmount = serializers.SerializerMethodField()
    itemCount = serializers.SerializerMethodField()
    autoApprove = serializers.SerializerMethodField()
    createdAt = UtcDateTimeField(source="created_at")
    updatedAt = UtcDateTimeField(source="updated_at")
    invoiceNumber = serializers.CharField(source="number", allow_null=True)
    issuedAt = UtcDateTimeField(source="issued_at", allow_null=True)
    dueAt = serializers.SerializerMethodField()
    paidAt = UtcDateTimeField(source="paid_at", allow_null=True)
    nextActionAt = serializers.SerializerMethodField()
    paymentUrl = serializers.SerializerMethodField()
    pdfUrl = serializers.SerializerMethodField()
    pdfSource = serializers.SerializerMethodField()
    permalink = serializers.SerializerMethodField()
    metadata = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=InvoiceKind.choices, help_text="Meterline extension.")
    amountDue = MoneyString(
        source="amount_due", help_text="Meterline extension: what the customer owes (0 for a credit)."
    )
    receivableStatus = serializers.ChoiceField(
        source="status",
        choices=InvoiceStatus.choices,
        help_text="Meterline extension: the stored status; ISSUED on the wire is issued, partially_paid or overdue.",
    )
    amountPaid = serializers.SerializerMethodField(help_text="Meterline extension: payments allocated to the invoice.")
    taxRatePercent = DecimalNumber(source="tax_rate", help_text="Meterline extension.")
    taxBehavior = serializers.CharField(source="tax_behavior", help_text="Meterline extension.")
    lineItems = OptionalMethodField()

    @extend_schema_field(OpenApiTypes.INT)
    def get_sequenceNumber(self, invoice):
        return invoice_sequence_number(invoice)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_gracePeriodEnd(self, invoice):
        grace = invoice.grace_ends_at
        if grace is None:
            grace = invoice.issued_at if invoice.kind == InvoiceKind.OPENING else None
            grace = grace or invoice.period_end + invoice.merchant.invoice_grace_period
        return iso_utc(grace)

    def _amount_paid(self, invoice):
        amount_paid = getattr(invoice, "amount_paid", None)  # annotated by the invoicing selectors
        return invoice_amount_paid(invoice=invoice) if amount_paid is None else amount_paid

    @extend_schema_field(DecimalString)
    def get_paidAmount(self, invoice):
        return money_string(self._amount_paid(invoice), invoice.currency)

    @extend_schema_field(DecimalString)
    def get_amountPaid(self, invoice):
        return money_string(self._amount_paid(invoice), invoice.currency)

    @extend_schema_field(DecimalString)
    def get_unpaidAmount(self, invoice):
        open_ = invoice.status in (InvoiceStatus.DRAFT, *OPEN_STATUSES)
        return money_string(invoice.amount_due if open_ else ZERO, invoice.currency)

    @extend_schema_field(OpenApiTypes.INT)
    def get_itemCount(self, invoice):
        count = getattr(invoice, "item_count", None)  # annotated by the invoicing selectors
        return count if count is not None else invoice.lines.exclude(kind=LineKind.TAX).count()

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_autoApprove(self, invoice):
        return invoice.kind != InvoiceKind.ADJUSTMENT and invoice.replaces_id is None

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_dueAt(self, invoice):
        if invoice.due_at is None:
            return None
        due_day = invoice.due_at.date()
        return f"{due_day.isoformat()}T00:00:00Z"

    @extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
    def get_nextActionAt(self, invoice):
        return iso_utc(invoice.grace_ends_at) if invoice.status == InvoiceStatus.DRAFT else None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_paymentUrl(self, _invoice):
        return None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_pdfUrl(self, invoice):
        return self.context["request"].build_absolute_uri(f"/v2/invoices/{invoice.id}/pdf")

    @extend_schema_field({"type": "string", "nullable": True})
    def get_pdfSource(self, _invoice):
        return "paygentic"

    @extend_schema_field({"type": "string", "nullable": True})
    def get_permalink(self, _invoice):
        return None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metadata(self, invoice):
        return {
            "kind": invoice.kind,
            "replaces": invoice.replaces_id,
            "adjusts": invoice.adjusts_id,
            "voidedAt": iso_utc(invoice.voided_at),
            "voidReason": invoice.void_reason or None,
        }

    @extend_schema_field(InvoiceLineItemsOutput(allow_null=True))
    def get_lineItems(self, invoice):
        page = self.context.get("line_items")
        if page is None or page.invoice.pk != invoice.pk:
            return None
        return InvoiceLineItemsOutput(page, context=self.context).data

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data["lineItems"] is None:
            del data["lineItems"]
        return data


class PaymentResultOutput(serializers.Serializer):
    method = Constant("out_of_band")
    invoice = InvoiceOutput()


LEDGER_TYPE = {
    LineKind.FEE: "fee",
    LineKind.CREDIT: "fee",
    LineKind.USAGE: "metered",
    LineKind.DISCOUNT: "discount",
    LineKind.MINIMUM: "adjustment",
    LineKind.ADJUSTMENT: "adjustment",
    LineKind.THRESHOLD_BILLED: "adjustment",
}


class LedgerTypeField(serializers.ChoiceField):
    """A line's kind as the ledger's ``type``."""

    def __init__(self, **kwargs):
        super().__init__(choices=["fee", "metered", "manual", "discount", "adjustment"], **kwargs)

    def to_representation(self, value):
        return LEDGER_TYPE.get(value, value)


class LedgerLineOutput(serializers.Serializer):
    """A billing ledger line: invoiced, or pending (the current period's estimate: a pending metered line's
    amounts are in ``estimated*``, its ``quantity`` is null and its ``subtotal`` and ``total`` are 0)."""

    # Renders a selectors.LedgerLine.

    id = serializers.SerializerMethodField()
    subscriptionId = serializers.CharField(source="subscription.id")
    customerId = serializers.CharField(source="subscription.customer_id")
    type = LedgerTypeField(source="line.kind")
    status = serializers.ChoiceField(choices=["pending", "invoiced"])
    displayName = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()
    periodStart = serializers.SerializerMethodField()
    periodEnd = serializers.SerializerMethodField()
    invoiceAt = UtcDateTimeField(source="invoice_at")
    unitPrice = serializers.SerializerMethodField()
    createdAt = UtcDateTimeField(source="created_at")
    updatedAt = UtcDateTimeField(source="updated_at")
    priceId = serializers.SerializerMethodField()
    itemId = serializers.SerializerMethodField()
    invoiceId = serializers.SerializerMethodField()
    description = serializers.CharField(source="line.description", allow_null=True)
    quantity = serializers.SerializerMethodField()
    meteredQuantity = serializers.SerializerMethodField()
    paymentTerm = serializers.SerializerMethodField()
    subtotal = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    estimatedMeteredQuantity = serializers.SerializerMethodField()
    estimatedSubtotal = serializers.SerializerMethodField()
    explanation = serializers.SerializerMethodField(help_text="Meterline: how the amount was computed.")

    @staticmethod
    def _pending_metered(entry) -> bool:
        return entry.status == "pending" and entry.line.kind in METERED

    @staticmethod
    def _quantity(entry) -> str | None:
        return decimal_string(entry.line.quantity) if entry.line.quantity is not None else None

    @extend_schema_field(OpenApiTypes.STR)
    def get_id(self, entry):
        if entry.status == "invoiced":
            return f"inl_{entry.line.pk}"
        return f"pending_{entry.subscription.id}_{int(entry.period_start.timestamp())}_{entry.position}"

    @extend_schema_field(OpenApiTypes.STR)
    def get_displayName(self, entry):
        return line_display_name(entry.line)

    @extend_schema_field(OpenApiTypes.STR)
    def get_currency(self, entry):
        return entry.invoice.currency if entry.invoice is not None else entry.subscription.plan.currency

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_periodStart(self, entry):
        return iso_utc(entry.line.service_start or (entry.invoice.period_start if entry.invoice else None))

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_periodEnd(self, entry):
        return iso_utc(entry.line.service_end or (entry.invoice.period_end if entry.invoice else None))

    @extend_schema_field(DecimalString)
    def get_unitPrice(self, entry):
        unit_price = entry.line.unit_price
        return decimal_string(unit_price if unit_price is not None else ZERO)

    @extend_schema_field({"type": "string", "nullable": True})
    def get_priceId(self, entry):
        return entry.line.price.id if entry.line.price is not None else None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_itemId(self, _entry):
        return None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_invoiceId(self, entry):
        return entry.invoice.id if entry.invoice is not None else None

    @extend_schema_field(DecimalString(allow_null=True))
    def get_quantity(self, entry):
        return None if self._pending_metered(entry) else self._quantity(entry)

    @extend_schema_field(DecimalString(allow_null=True))
    def get_meteredQuantity(self, entry):
        return self._quantity(entry) if entry.line.kind in METERED else None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_paymentTerm(self, entry):
        return line_payment_term(entry.line)

    @extend_schema_field(DecimalString)
    def get_subtotal(self, entry):
        return "0" if self._pending_metered(entry) else decimal_string(entry.line.amount)

    @extend_schema_field(DecimalString)
    def get_total(self, entry):
        return self.get_subtotal(entry)

    @extend_schema_field(DecimalString(allow_null=True))
    def get_estimatedMeteredQuantity(self, entry):
        return self._quantity(entry) if self._pending_metered(entry) else None

    @extend_schema_field(DecimalString(allow_null=True))
    def get_estimatedSubtotal(self, entry):
        return decimal_string(entry.line.amount) if self._pending_metered(entry) else None

    @extend_schema_field({"type": "string", "nullable": True})
    def get_explanation(self, entry):
        return entry.line.explanation.get("text") or None


class LineItemsSummaryOutput(serializers.Serializer):
    # The pending lines' subtotals, read from a selectors.LedgerPage.

    feeSubtotal = DecimalString(source="fee_subtotal")
    meteredEstimatedSubtotal = DecimalString(source="metered_subtotal")
    currency = serializers.CharField()

    class Meta:
        ref_name = "LineItemsSummary"


class LedgerLinesOutput(serializers.Serializer):
    # Renders a selectors.LedgerPage.

    object = Constant("list")
    data = LedgerLineOutput(source="lines", many=True)
    totalCount = serializers.IntegerField(source="total")
    summary = LineItemsSummaryOutput(source="*")

    class Meta:
        ref_name = "LineItemsResponse"

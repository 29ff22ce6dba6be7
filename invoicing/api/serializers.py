"""Wire shapes of the billing API (subscriptions, test clocks, invoices), as the Paygentic client reads them.

Inputs are camelCase and strict (unknown keys are a 400). Outputs carry every key the client's models
require; money goes out as decimal strings, quantities and tax-rate fractions as JSON numbers.
"""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from catalog import models as catalog
from catalog.api.fields import DecimalNumber, DecimalString, MerchantScopedId, money_string
from catalog.api.serializers import AddressInput, _tax_rates
from core.api.serializers import Constant, PaginationOutput, StrictSerializer
from core.formatting import decimal_string, iso_utc
from invoicing.models import OPEN_STATUSES, InvoiceKind, InvoiceStatus, LineKind
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
CHANGE_REASONS = ("commercial", "correction", "migration", "unspecified")


# -- subscriptions ---------------------------------------------------------------------------------


class InlineCustomerInput(StrictSerializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField()
    address = AddressInput()
    phone = serializers.CharField(max_length=50, allow_blank=True, required=False)
    taxRates = serializers.DictField(source="tax_rates", required=False)

    def validate_taxRates(self, value):
        return _tax_rates(value)

    def validate_address(self, value):
        missing = [wire for wire, field in (("country", "country"), ("zipCode", "postal_code")) if not value.get(field)]
        if missing:
            raise serializers.ValidationError({name: ["This field is required."] for name in missing})
        return value


class TestClockId(MerchantScopedId):
    """A live (not deleted) test clock of the caller."""

    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


class SubscriptionCreateInput(StrictSerializer):
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
        return attrs


class SubscriptionUpdateInput(StrictSerializer):
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
            # Self-hosted: no hosted checkout. The link opens the invoice in the admin, where finance marks
            # it paid; the "payment session" is the invoice itself.
            "checkoutUrl": request.build_absolute_uri(f"/admin/invoicing/invoice/{opening.id}/change/"),
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


class SubscriptionOutput(serializers.Serializer):
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
    estimatedTaxRate = serializers.SerializerMethodField()
    payment = OptionalMethodField()
    terminatedAt = serializers.DateTimeField(source="terminated_at", allow_null=True, required=False)
    terminatedBy = OptionalMethodField()
    terminationReason = OptionalMethodField()
    terminationChangeReason = serializers.SerializerMethodField()
    testClockId = serializers.CharField(source="test_clock_id", allow_null=True, required=False)
    metadata = serializers.SerializerMethodField()
    customer = OptionalMethodField()

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

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Optional keys the client types as non-nullable are left out rather than sent as null.
        for key in ("payment", "customer", "endingAt", "terminatedAt", "terminatedBy", "terminationReason"):
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

    @extend_schema_field({"type": "string", "nullable": True})
    def get_description(self, clock):
        return clock.description or None


# -- invoices --------------------------------------------------------------------------------------


class RecordPaymentInput(StrictSerializer):
    method = serializers.ChoiceField(choices=["out_of_band", "hosted_link"])
    reason = serializers.CharField(allow_blank=True, required=False)


def allocate_tax(invoice, lines) -> dict[int, Decimal]:
    """The invoice's tax spread over its lines (each rounded to the currency; the difference from the
    invoice's tax, a few minor units at most, goes to the largest line), so the lines add up exactly."""
    from catalog.pricing import round_money

    if not lines or invoice.tax == 0:
        return {line.pk: ZERO for line in lines}
    rate = invoice.tax_rate
    shares = {}
    for line in lines:
        if invoice.tax_behavior == "inclusive":
            share = line.amount * rate / (HUNDRED + rate)
        else:
            share = line.amount * rate / HUNDRED
        shares[line.pk] = round_money(share, invoice.currency)
    difference = invoice.tax - sum(shares.values(), ZERO)
    if difference:
        largest = max(lines, key=lambda line: abs(line.amount))
        shares[largest.pk] += difference
    return shares


EVENT_TYPE = {
    LineKind.USAGE: "usage",
    LineKind.ADJUSTMENT: "usage",
    LineKind.FEE: "fee",
    LineKind.CREDIT: "fee",
    LineKind.MINIMUM: "fee",
    LineKind.DISCOUNT: "discount",
}


def line_breakdown(explanation: dict) -> list[str]:
    parts = [entry["description"] for entry in explanation.get("lines", []) if entry.get("description")]
    proration = explanation.get("proration")
    if proration:
        parts.append(
            proration.get("description") or f"Prorated {proration['covered_days']} of {proration['period_days']} days"
        )
    return parts


def invoice_line_item(line, invoice, tax: Decimal) -> dict:
    """An invoice line as the client's InvoiceLineItem, plus our ``kind``, ``description``, ``explanation``."""
    price = line.price
    metric = price.billable_metric if price is not None and price.billable_metric_id else None
    fee = price.fee if price is not None and price.fee_id else None
    source = metric or fee
    inclusive = invoice.tax_behavior == "inclusive"
    total_price = line.amount - tax if inclusive else line.amount
    total_amount = line.amount if inclusive else line.amount + tax
    quantity = line.quantity if line.quantity is not None else Decimal(1)
    if line.unit_price is not None:
        unit_price = line.unit_price
    elif quantity:
        unit_price = (line.amount / quantity).quantize(Decimal("1e-12")).normalize()
    else:
        unit_price = line.amount
    if line.kind in (LineKind.USAGE, LineKind.ADJUSTMENT):
        term = "in_arrears"
    elif fee is not None:
        term = price.payment_term
    else:
        term = None
    line_id = f"inl_{line.pk}"
    return {
        "eventType": EVENT_TYPE.get(line.kind, line.kind),
        "eventId": line_id,
        "meterEventId": line_id,
        "eventSourceId": source.id if source else "",
        "billableMetricId": source.id if source else "",
        "invoiceDisplayName": price.invoice_display_name if price is not None else line.description,
        "lineItemType": "refund" if line.kind == LineKind.CREDIT else "charge",
        "metricName": source.name if source else line.description,
        "metricDescription": source.description if source else line.get_kind_display(),
        "metricUnit": metric.unit if metric else "charge",
        "quantity": quantity.normalize(),
        "taxRate": (invoice.tax_rate / HUNDRED).normalize(),
        "unitPrice": decimal_string(unit_price),
        "totalPrice": money_string(total_price, invoice.currency),
        "totalTax": money_string(tax, invoice.currency),
        "totalAmount": money_string(total_amount, invoice.currency),
        "itemId": None,
        "priceId": price.id if price is not None else None,
        "periodStart": iso_utc(line.service_start or invoice.period_start),
        "periodEnd": iso_utc(line.service_end or invoice.period_end),
        "paymentTerm": term,
        # Meterline extensions (ignored by the client): what the line is and how it was computed.
        "kind": line.kind,
        "description": line.description,
        "explanation": line.explanation.get("text") or None,
        "breakdown": line_breakdown(line.explanation),
    }


class InvoiceLineItemOutput(serializers.Serializer):
    """Schema only: ``invoice_line_item`` builds the dict."""

    eventType = serializers.CharField()
    eventId = serializers.CharField()
    meterEventId = serializers.CharField()
    eventSourceId = serializers.CharField()
    billableMetricId = serializers.CharField()
    invoiceDisplayName = serializers.CharField()
    lineItemType = serializers.ChoiceField(choices=["charge", "refund"])
    metricName = serializers.CharField()
    metricDescription = serializers.CharField()
    metricUnit = serializers.CharField()
    quantity = DecimalNumber()
    taxRate = DecimalNumber(help_text="A fraction: 0.1 = 10%.")
    unitPrice = DecimalString()
    totalPrice = DecimalString()
    totalTax = DecimalString()
    totalAmount = DecimalString()
    itemId = serializers.CharField(allow_null=True)
    priceId = serializers.CharField(allow_null=True)
    periodStart = serializers.DateTimeField()
    periodEnd = serializers.DateTimeField()
    paymentTerm = serializers.CharField(allow_null=True)
    kind = serializers.CharField(help_text="Meterline: fee, usage, credit, discount, minimum, adjustment.")
    description = serializers.CharField()
    explanation = serializers.CharField(allow_null=True, help_text="Meterline: how the amount was computed.")
    breakdown = serializers.ListField(child=serializers.CharField())


class InvoiceLineItemsOutput(serializers.Serializer):
    invoiceId = serializers.CharField()
    lineItems = InvoiceLineItemOutput(many=True)
    totalCount = serializers.IntegerField()
    nextPageToken = serializers.CharField(allow_null=True)


class InvoiceOutput(serializers.Serializer):
    """Schema of the Invoice; ``invoice_body`` in views builds the dict."""

    id = serializers.CharField()
    object = Constant("invoice")
    status = serializers.ChoiceField(choices=WIRE_STATUSES)
    merchantId = serializers.CharField()
    customerId = serializers.CharField()
    subscriptionId = serializers.CharField()
    currency = serializers.CharField()
    periodStart = serializers.DateTimeField()
    periodEnd = serializers.DateTimeField()
    billingAnchor = serializers.DateTimeField()
    billingCadence = serializers.CharField()
    sequenceNumber = serializers.IntegerField()
    gracePeriodEnd = serializers.DateTimeField()
    subtotal = DecimalString()
    totalTax = DecimalString()
    grandTotal = DecimalString()
    paidAmount = DecimalString()
    unpaidAmount = DecimalString()
    itemCount = serializers.IntegerField()
    autoApprove = serializers.BooleanField()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    invoiceNumber = serializers.CharField(allow_null=True)
    issuedAt = serializers.DateTimeField(allow_null=True)
    dueAt = serializers.DateTimeField(allow_null=True)
    paidAt = serializers.DateTimeField(allow_null=True)
    nextActionAt = serializers.DateTimeField(allow_null=True)
    paymentUrl = serializers.CharField(allow_null=True)
    pdfUrl = serializers.CharField(allow_null=True)
    pdfSource = serializers.CharField(allow_null=True)
    permalink = serializers.CharField(allow_null=True)
    metadata = serializers.DictField()
    lineItems = InvoiceLineItemsOutput(required=False, allow_null=True)
    kind = serializers.ChoiceField(choices=InvoiceKind.choices, help_text="Meterline extension.")
    amountDue = DecimalString(help_text="Meterline extension: what the customer owes (0 for a credit).")
    receivableStatus = serializers.ChoiceField(
        choices=InvoiceStatus.choices,
        help_text="Meterline extension: the stored status; ISSUED on the wire is issued, partially_paid or overdue.",
    )
    amountPaid = DecimalString(help_text="Meterline extension: payments allocated to the invoice.")
    taxRatePercent = DecimalNumber(help_text="Meterline extension.")
    taxBehavior = serializers.CharField(help_text="Meterline extension.")


class PaymentResultOutput(serializers.Serializer):
    method = Constant("out_of_band")
    invoice = InvoiceOutput()


class LedgerLineOutput(serializers.Serializer):
    """LineItem of ``GET /v2/invoices/lineItems`` (schema; the view builds the dicts)."""

    id = serializers.CharField()
    subscriptionId = serializers.CharField()
    customerId = serializers.CharField()
    type = serializers.ChoiceField(choices=["fee", "metered", "manual", "discount", "adjustment"])
    status = serializers.ChoiceField(choices=["pending", "invoiced"])
    displayName = serializers.CharField()
    currency = serializers.CharField()
    periodStart = serializers.DateTimeField()
    periodEnd = serializers.DateTimeField()
    invoiceAt = serializers.DateTimeField()
    unitPrice = DecimalString()
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    priceId = serializers.CharField(allow_null=True)
    invoiceId = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    quantity = DecimalString(allow_null=True)
    meteredQuantity = DecimalString(allow_null=True)
    paymentTerm = serializers.CharField(allow_null=True)
    subtotal = DecimalString()
    total = DecimalString()
    estimatedMeteredQuantity = DecimalString(allow_null=True)
    estimatedSubtotal = DecimalString(allow_null=True)


LineItemsSummaryOutput = inline_serializer(
    name="LineItemsSummary",
    fields={
        "feeSubtotal": DecimalString(),
        "meteredEstimatedSubtotal": DecimalString(),
        "currency": serializers.CharField(),
    },
)


def list_output(name: str, item, *, with_object: bool):
    fields = {"data": item(many=True), "pagination": PaginationOutput()}
    if with_object:
        fields = {"object": Constant("list"), **fields}
    return inline_serializer(name=name, fields=fields)

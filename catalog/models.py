"""The catalog: who sells (Merchant), what is sold and measured, and at what price.

Product → BillableMetric / Fee → Plan → Price (+ PriceTier, DynamicRate), Customer → Subscription.
A negotiated rate is a Price row that names a customer and the plan price it replaces, so the admin,
the validation and the rating engine treat it exactly like any other price.

Kept whole because the models above are one chain of foreign keys read in that order, and ``Price`` (a fifth
of the file) carries its every pricing model's fields, validated together by ``catalog.validation``. The seam
when it grows: a ``models/`` package with merchants and keys, the product catalog (products to prices), and
customers and subscriptions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from core.formatting import decimal_string
from core.ids import PublicIdField

from .pricing.limits import QUANTUM
from .validators import (
    THRESHOLD_AMOUNT_MAX,
    THRESHOLD_AMOUNT_MIN,
    email_list_split,
    validate_currency_code,
    validate_email_list,
    validate_json_path,
    validate_threshold_ladder,
    validate_time_zone,
)

# Rates keep 12 decimal places ($0.000002 per token is normal); amounts on invoices are rounded
# to the currency's minor unit only when an invoice line is written.
RATE_DIGITS = {"max_digits": 30, "decimal_places": 12}
QUANTITY_DIGITS = {"max_digits": 30, "decimal_places": 12}
ZERO = Decimal("0")


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True, editable=False)

    class Meta:
        abstract = True


class ApiKeyAttributedHistory(models.Model):
    """The base of every historical model: which API key made the change.

    Set by ``catalog.history.history_api_key_attach`` for changes made through the REST API, where
    ``history_user`` stays empty (an API request has no Django user); empty for the admin, beat and
    management commands. Revoking a key keeps its attribution; deleting the key row empties it.
    """

    history_api_key = models.ForeignKey(
        "catalog.ApiKey",  # app-qualified: invoicing's historical models inherit it too
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="API key",
    )

    class Meta:
        abstract = True


class RoundingMode(models.TextChoices):
    HALF_UP = "ROUND_HALF_UP", "Half up (0.005 → 0.01)"
    HALF_EVEN = "ROUND_HALF_EVEN", "Half even, banker's (0.005 → 0.00, 0.015 → 0.02)"
    UP = "ROUND_UP", "Always up, away from zero"
    DOWN = "ROUND_DOWN", "Always down, toward zero"


class Merchant(TimeStamped):
    """The organization that sells. Every catalog object and customer belongs to one merchant."""

    id = PublicIdField(prefix="org")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    address_line1 = models.CharField("address line 1", max_length=200, blank=True)
    address_line2 = models.CharField("address line 2", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 alpha-2 code, e.g. US.")
    tax_id = models.CharField("tax ID", max_length=50, blank=True)
    default_currency = models.CharField(max_length=3, default="USD", validators=[validate_currency_code])
    rounding_mode = models.CharField(
        max_length=20,
        choices=RoundingMode.choices,
        default=RoundingMode.HALF_UP,
        help_text="How each invoice line is rounded to the currency's minor unit.",
    )
    invoice_grace_period = models.DurationField(
        default=timedelta(hours=24),
        help_text="How long a draft invoice stays open for late usage before it is issued (default 24 h).",
    )
    invoice_number_prefix = models.CharField(
        max_length=20, blank=True, help_text="Printed before invoice numbers, e.g. NLE. Defaults to INV."
    )
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """A merchant's API key. Only a SHA-256 digest is stored; the key is shown once, at creation."""

    id = PublicIdField(prefix="key")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The key's first characters, to tell keys apart."
    )
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Product(TimeStamped):
    """Something sold: an LLM API, a data pipeline."""

    id = PublicIdField(prefix="prod")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=200, help_text="Customer-facing title, used on invoices.")
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Aggregation(models.TextChoices):
    SUM = "SUM", "Sum of a value"
    COUNT = "COUNT", "Count of events"
    AVG = "AVG", "Average of a value"
    MIN = "MIN", "Minimum of a value"
    MAX = "MAX", "Maximum of a value"
    UNIQUE_COUNT = "UNIQUE_COUNT", "Count of distinct values"
    LATEST = "LATEST", "Latest value"


class BillableMetric(TimeStamped):
    """What is measured, and how a period's usage events aggregate into one quantity."""

    id = PublicIdField(prefix="bm")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="billable_metrics")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="billable_metrics")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    unit = models.CharField(max_length=50, help_text="e.g. tokens, GB, calls, seconds.")
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    event_type = models.CharField(
        max_length=200, db_index=True, help_text="Usage events of this type feed the metric, e.g. llm.completion."
    )
    value_property = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_json_path],
        help_text="Where the value sits in the event data, as $.path (e.g. $.input_tokens). "
        "Required for every aggregation except COUNT; optional for UNIQUE_COUNT.",
    )
    group_by = models.JSONField(
        default=dict, blank=True, help_text='Dimensions for usage queries: {"model": "$.model"}.'
    )
    event_from = models.DateTimeField(
        null=True, blank=True, help_text="Only events at or after this time count (meter versioning)."
    )
    item_id = models.CharField("accounting item", max_length=100, blank=True)
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["product__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        needs_value = self.aggregation not in {Aggregation.COUNT, Aggregation.UNIQUE_COUNT}
        if needs_value and not self.value_property:
            errors["value_property"] = (
                f"A {self.get_aggregation_display().lower()} needs the event property that holds the value, "
                "for example $.tokens."
            )
        if self.aggregation == Aggregation.COUNT and self.value_property:
            errors["value_property"] = "A count of events does not read a value; leave this empty."
        if self.product_id and self.merchant_id and self.product.merchant_id != self.merchant_id:
            errors["product"] = "The product belongs to another merchant."
        if not isinstance(self.group_by, dict):
            errors["group_by"] = 'Dimensions must be an object such as {"model": "$.model"}.'
        else:
            for dimension, path in self.group_by.items():
                if not isinstance(path, str) or not path.startswith("$."):
                    errors["group_by"] = f'Dimension "{dimension}" must point into the event data with $.path.'
        if errors:
            raise ValidationError(errors)


class MetricFilterOperator(models.TextChoices):
    EQUALS = "eq", "equals"
    NOT_EQUALS = "neq", "does not equal"
    IN = "in", "is one of"
    NOT_IN = "not_in", "is none of"


class MetricFilter(models.Model):
    """Only events whose property matches count toward the metric (e.g. only status = "ok")."""

    metric = models.ForeignKey(BillableMetric, on_delete=models.CASCADE, related_name="filters")
    property_path = models.CharField(
        "property", max_length=200, validators=[validate_json_path], help_text="$.path into the event data."
    )
    operator = models.CharField(
        max_length=10, choices=MetricFilterOperator.choices, default=MetricFilterOperator.EQUALS
    )
    values = models.JSONField(
        default=list, help_text='The value(s) to compare with, as a JSON list of strings: ["ok"].'
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.property_path} {self.get_operator_display()} {', '.join(map(str, self.values))}"

    def clean(self) -> None:
        if not isinstance(self.values, list) or not self.values:
            raise ValidationError({"values": 'Give at least one value, as a list such as ["ok"].'})
        if self.operator in {MetricFilterOperator.EQUALS, MetricFilterOperator.NOT_EQUALS} and len(self.values) != 1:
            raise ValidationError({"values": "“equals” compares with exactly one value; use “is one of” for several."})


class Fee(TimeStamped):
    """A fixed charge definition (setup, platform access, support); its amount lives on a Price."""

    id = PublicIdField(prefix="fee")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="fees")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="fees")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    item_id = models.CharField("accounting item", max_length=100, blank=True)
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["product__name", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.product_id and self.merchant_id and self.product.merchant_id != self.merchant_id:
            raise ValidationError({"product": "The product belongs to another merchant."})


class BillingCadence(models.TextChoices):
    MONTHLY = "P1M", "Monthly"
    QUARTERLY = "P3M", "Quarterly"
    YEARLY = "P1Y", "Yearly"


class TaxBehavior(models.TextChoices):
    EXCLUSIVE = "exclusive", "Exclusive (tax added on top)"
    INCLUSIVE = "inclusive", "Inclusive (prices include tax)"


class BillingMode(models.TextChoices):
    """When usage is charged: at period end on the invoice, or as each event arrives (prepaid balance)."""

    POST_PAID = "post_paid", "Post-paid (invoiced at period end)"
    REAL_TIME = "real_time", "Real-time (debited from the prepaid balance as events arrive)"


class Plan(TimeStamped):
    """A package of prices for one customer segment of a product, in one currency and cadence."""

    id = PublicIdField(prefix="plan")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="plans")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    invoice_display_name = models.CharField(max_length=200, blank=True)
    currency = models.CharField(max_length=3, validators=[validate_currency_code], help_text="ISO 4217, e.g. USD.")
    billing_cadence = models.CharField(max_length=3, choices=BillingCadence.choices, default=BillingCadence.MONTHLY)
    billing_anchor = models.DateTimeField(
        null=True, blank=True, help_text="Aligns every subscription's periods to this moment (optional)."
    )
    tax_behavior = models.CharField(max_length=10, choices=TaxBehavior.choices, default=TaxBehavior.EXCLUSIVE)
    default_tax_code = models.CharField(max_length=50, default="eservice", blank=True)
    default_tax_rate = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        default=ZERO,
        validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
        help_text="Percent: 8.5 means 8.5 %.",
    )
    minimum_commitment = models.DecimalField(
        **RATE_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO)],
        help_text="Guaranteed minimum per billing period; a true-up line makes up any shortfall.",
    )
    discount_percent = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
        help_text="Percent taken off the whole subscription's charges (e.g. 10 for 10 % off).",
    )
    # Threshold (progressive) billing (invoicing/THRESHOLDS.md): invoice the period's usage as soon as it
    # reaches this amount, then (recurring) every further multiple of it; None: at the period end only.
    threshold_amount = models.DecimalField(
        **RATE_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(THRESHOLD_AMOUNT_MIN), MaxValueValidator(THRESHOLD_AMOUNT_MAX)],
        help_text="Invoice the period's usage as soon as it reaches this amount (progressive billing); "
        "empty: at the period end only.",
    )
    threshold_ladder = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_threshold_ladder],
        help_text='Further thresholds after the first, increasing, as decimal strings: ["500", "1000"].',
    )
    threshold_recurring = models.BooleanField(
        default=False,
        help_text="After the last threshold, invoice again every time usage grows by the last step "
        "(by the threshold itself when it is the only one).",
    )
    billing_mode = models.CharField(
        max_length=10,
        choices=BillingMode.choices,
        default=BillingMode.POST_PAID,
        help_text="Real-time: each event's cost is debited from the customer's prepaid balance when it arrives; "
        "the period's invoice then settles against what was debited.",
    )
    renewal_reminder_enabled = models.BooleanField(default=True)
    renewal_reminder_days = models.PositiveIntegerField(default=3)
    archived_at = models.DateTimeField(null=True, blank=True)
    # The version floating subscriptions bill from (written only by the plan-version services, with a
    # ``PlanDefaultChange`` row each time): a period bills from the version that was default when it started.
    default_version = models.ForeignKey(
        "PlanVersion", on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    default_version_since = models.DateTimeField(null=True, blank=True, editable=False)
    # The default before the latest change, and since when: a period that started between the two (the
    # current one, right after a change) is rated from these without reading the log.
    previous_default_version = models.ForeignKey(
        "PlanVersion", on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    previous_default_since = models.DateTimeField(null=True, blank=True, editable=False)
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["product__name", "name"]

    def __str__(self) -> str:
        return f"{self.product.name} · {self.name}" if self.product_id else self.name

    def clean(self) -> None:
        if self.currency:
            self.currency = self.currency.upper()
        if self.product_id and self.merchant_id and self.product.merchant_id != self.merchant_id:
            raise ValidationError({"product": "The product belongs to another merchant."})


class PriceModel(models.TextChoices):
    STANDARD = "standard", "Standard (per unit)"
    GRADUATED = "graduated", "Graduated tiers"
    VOLUME = "volume", "Volume tiers"
    PACKAGE = "package", "Package"
    PERCENTAGE = "percentage", "Percentage of amount"
    DYNAMIC = "dynamic", "Dynamic rate"


class PaymentTerm(models.TextChoices):
    IN_ADVANCE = "in_advance", "In advance (start of period)"
    IN_ARREARS = "in_arrears", "In arrears (end of period)"


class PackageRounding(models.TextChoices):
    EXACT = "exact", "Exact (1,500 units = 1.5 packages)"
    UP = "up", "Round up to whole packages"
    DOWN = "down", "Round down to whole packages"


class DynamicMode(models.TextChoices):
    SCHEDULE = "schedule", "Rate schedule (rate in force at each event's time)"
    EVENT_PRICE = "event_price", "Price carried on each event"


class RatePer(models.IntegerChoices):
    """How many units a rate is entered and shown for. Rates are always stored per unit (exact, 12
    decimal places), so the rating engine never changes; this is how people read them: "$0.002 per 1K"."""

    UNIT = 1, "per unit"
    THOUSAND = 1_000, "per 1K units"
    MILLION = 1_000_000, "per 1M units"


class RateType(models.TextChoices):
    AMOUNT = "amount", "Amount per unit"
    PROPORTION = "proportion", "Proportion of a money amount"


class Price(TimeStamped):
    """What a plan charges for one metric or one fee.

    A price with ``customer`` set is a negotiated rate: it replaces ``overrides`` (a price of the
    same plan) for that customer only, in the billing periods its window covers (``effective_from``,
    ``effective_until``; see ``in_window``).
    """

    id = PublicIdField(prefix="price")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="prices")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="prices", null=True, blank=True)
    plan_line_key = models.SlugField(
        "plan line key", max_length=64, blank=True, help_text="Name of this line within the plan, e.g. input_tokens."
    )
    billable_metric = models.ForeignKey(
        BillableMetric, on_delete=models.PROTECT, related_name="prices", null=True, blank=True
    )
    fee = models.ForeignKey(Fee, on_delete=models.PROTECT, related_name="prices", null=True, blank=True)
    customer = models.ForeignKey(
        "Customer",
        on_delete=models.CASCADE,
        related_name="negotiated_prices",
        null=True,
        blank=True,
        help_text="Set for a negotiated rate that applies to this customer only.",
    )
    overrides = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        related_name="negotiated_overrides",
        null=True,
        blank=True,
        help_text="The plan price this negotiated rate replaces.",
    )
    # A negotiated rate's effective window, on billing-period starts: it rates the periods that start in
    # [effective_from, effective_until) (empty: from the first / open-ended); the plan price rates the others.
    # Rating reads the price set once per period, so an end inside a period keeps the rate for that whole
    # period. The windows of one customer's rates over one plan price never overlap (PostgreSQL: an
    # exclusion constraint, migration 0019; elsewhere the writing services check under a row lock).
    effective_from = models.DateTimeField(
        "effective from",
        null=True,
        blank=True,
        help_text="Negotiated rates: rates the billing periods starting on or after this (empty: every period).",
    )
    effective_until = models.DateTimeField(
        "effective until",
        null=True,
        blank=True,
        help_text="Negotiated rates: the plan price rates the billing periods starting on or after this "
        "(empty: open-ended).",
    )
    invoice_display_name = models.CharField(max_length=200)
    invoice_display_group = models.CharField(max_length=100, blank=True)
    payment_term = models.CharField(max_length=10, choices=PaymentTerm.choices, default=PaymentTerm.IN_ARREARS)
    model = models.CharField(max_length=12, choices=PriceModel.choices, default=PriceModel.STANDARD)
    billing_cadence = models.CharField(
        max_length=20,
        blank=True,
        help_text="ISO 8601 duration. Fees: P0D for one-off, P1M monthly… Metric prices follow the plan.",
    )
    quantity = models.PositiveIntegerField(default=1, help_text="Fee prices: units charged each period.")
    # standard and package
    unit_price = models.DecimalField(
        **RATE_DIGITS, null=True, blank=True, help_text="Price per unit (or per package when a package size is set)."
    )
    package_size = models.DecimalField(
        **QUANTITY_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(QUANTUM)],
        help_text='Units per package, e.g. 1000 for "per 1K tokens".',
    )
    package_rounding = models.CharField(max_length=5, choices=PackageRounding.choices, default=PackageRounding.EXACT)
    # Rates below (unit price, tier and scheduled rates, dynamic clamps) are stored per unit; this is
    # only the scale they are typed and printed in, so the engine rates exactly the same either way.
    rate_per = models.PositiveIntegerField(
        "price per",
        choices=RatePer.choices,
        default=RatePer.UNIT,
        help_text="Enter and show usage rates per unit, per 1,000 or per 1,000,000 units "
        "(stored per unit, e.g. $0.002 per 1K is 0.000002 per token).",
    )
    # percentage
    percentage_rate = models.DecimalField(
        **RATE_DIGITS,
        null=True,
        blank=True,
        help_text="A fraction between 0 and 10: 0.029 means 2.9 %.",
    )
    fixed_fee_per_event = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    min_charge_per_event = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    max_charge_per_event = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    min_charge_per_period = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    max_charge_per_period = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    # dynamic
    dynamic_mode = models.CharField(max_length=12, choices=DynamicMode.choices, blank=True)
    event_price_property = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_json_path],
        help_text="Dynamic prices carried on events: where the unit price sits in the event data ($.unit_price).",
    )
    min_unit_price = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    max_unit_price = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    # allowances, discounts, commitments
    free_units = models.DecimalField(
        **QUANTITY_DIGITS,
        default=ZERO,
        validators=[MinValueValidator(ZERO)],
        help_text="The first units of each period cost nothing (e.g. 10000 free tokens monthly).",
    )
    usage_discount_units = models.DecimalField(
        **QUANTITY_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO)],
        help_text="Units removed from each period's usage before pricing.",
    )
    discount_percent = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
        help_text="Percent taken off this line (40 for 40 % off).",
    )
    minimum_commitment = models.DecimalField(
        **RATE_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO)],
        help_text="Minimum charged for this line each period; a true-up makes up any shortfall.",
    )
    allows_rebate = models.BooleanField(
        default=False, help_text="Standard metered prices only: allow a negative unit price (a usage rebate)."
    )
    is_obligation = models.BooleanField(
        default=False, help_text="Fees only: owed whole, never prorated for a partial period."
    )
    grant_discount_enabled = models.BooleanField(default=False)
    rate_type = models.CharField(max_length=10, choices=RateType.choices, default=RateType.AMOUNT)
    tax_supply_scope = models.CharField(
        max_length=15, choices=[("IN_SCOPE", "In scope"), ("OUTSIDE_SCOPE", "Outside scope")], default="IN_SCOPE"
    )
    pricing_unit_id = models.CharField(max_length=100, blank=True)
    # Rates per combination of event property values (catalog/pricing/README.md, "Dimensional prices"),
    # in the engine's JSON form, validated by catalog.pricing.parse_dimensional; the price's own model
    # is the default rate for unmatched values. None: one rate for every event.
    dimensional_rates = models.JSONField(
        "dimensional rates",
        null=True,
        blank=True,
        help_text='Rates per event property value, e.g. {"dimensions": ["model"], "unmatched": "default", '
        '"rates": [{"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000004"}]}. '
        'The price\'s own rate prices unmatched values (or they are refused with "unmatched": "refuse").',
    )
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["plan__name", "invoice_display_name"]
        constraints = [
            models.CheckConstraint(
                name="price_on_exactly_one_of_metric_or_fee",
                condition=(
                    Q(billable_metric__isnull=False, fee__isnull=True)
                    | Q(billable_metric__isnull=True, fee__isnull=False)
                ),
            ),
            models.CheckConstraint(name="price_free_units_not_negative", condition=Q(free_units__gte=0)),
            models.UniqueConstraint(
                name="one_unwindowed_negotiated_rate_per_customer_and_price",
                fields=["customer", "overrides"],
                condition=Q(customer__isnull=False, effective_from__isnull=True),
            ),
            models.UniqueConstraint(
                name="one_negotiated_rate_per_customer_price_and_start",
                fields=["customer", "overrides", "effective_from"],
                condition=Q(customer__isnull=False),
            ),
            models.CheckConstraint(
                name="price_window_on_negotiated_rates_only",
                condition=Q(customer__isnull=False) | Q(effective_from__isnull=True, effective_until__isnull=True),
            ),
            models.CheckConstraint(
                name="price_window_ends_after_it_starts",
                condition=Q(effective_from__isnull=True)
                | Q(effective_until__isnull=True)
                | Q(effective_until__gt=models.F("effective_from")),
            ),
        ]

    def __str__(self) -> str:
        who = f" for {self.customer}" if self.customer_id else ""
        return f"{self.invoice_display_name}{who}"

    @property
    def is_metered(self) -> bool:
        return self.billable_metric_id is not None

    def in_window(self, period_start: datetime | None) -> bool:
        """Whether this negotiated rate rates the billing period starting at ``period_start``; None asks
        about the periods after every window has started (only an open-ended rate rates them)."""
        if period_start is None:
            return self.effective_until is None
        return (self.effective_from is None or self.effective_from <= period_start) and (
            self.effective_until is None or period_start < self.effective_until
        )

    @property
    def currency(self) -> str | None:
        return self.plan.currency if self.plan_id else None

    def clean(self) -> None:
        from .validation import price_errors

        if self.model == PriceModel.PACKAGE and self.package_rounding == PackageRounding.EXACT:
            # A package price bills whole packages by definition; "exact" is the standard model's option.
            self.package_rounding = PackageRounding.UP

        errors = price_errors(self)
        if errors:
            raise ValidationError(errors)


class PriceTier(models.Model):
    """One row of a graduated or volume tier table: units up to ``up_to`` at ``unit_price``."""

    price = models.ForeignKey(Price, on_delete=models.CASCADE, related_name="tiers")
    up_to = models.DecimalField(
        "up to (units)", **QUANTITY_DIGITS, null=True, blank=True, help_text="Leave empty on the last, open-ended tier."
    )
    unit_price = models.DecimalField(**RATE_DIGITS, validators=[MinValueValidator(ZERO)])
    flat_fee = models.DecimalField(**RATE_DIGITS, default=ZERO, validators=[MinValueValidator(ZERO)])

    class Meta:
        ordering = [models.F("up_to").asc(nulls_last=True)]
        constraints = [models.UniqueConstraint(fields=["price", "up_to"], name="tier_bound_unique_per_price")]

    def __str__(self) -> str:
        bound = f"up to {self.up_to.normalize():,f}" if self.up_to is not None else "and above"
        return f"{bound} @ {decimal_string(self.unit_price)}"


class DynamicRate(models.Model):
    """A rate schedule entry for a dynamic price: ``unit_price`` is in force from ``effective_from``."""

    price = models.ForeignKey(Price, on_delete=models.CASCADE, related_name="dynamic_rates")
    effective_from = models.DateTimeField()
    unit_price = models.DecimalField(**RATE_DIGITS, validators=[MinValueValidator(ZERO)])

    class Meta:
        ordering = ["effective_from"]
        constraints = [models.UniqueConstraint(fields=["price", "effective_from"], name="dynamic_rate_unique_start")]

    def __str__(self) -> str:
        return f"{decimal_string(self.unit_price)} from {self.effective_from:%Y-%m-%d %H:%M}"


class PlanVersionStatus(models.TextChoices):
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class PlanVersion(models.Model):
    """One price set of a plan, numbered from 1. Versions are never edited: a new price set is a new
    version (``plan_version_mint``), and the plan's ``default_version`` says which one floating
    subscriptions bill from. ``PlanVersionPrice`` rows hold the set, each line under its key."""

    id = PublicIdField(prefix="pv")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=PlanVersionStatus.choices, default=PlanVersionStatus.PUBLISHED)
    based_on = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="The version it changed."
    )
    prices = models.ManyToManyField("Price", through="PlanVersionPrice", related_name="plan_versions")
    created_by = models.CharField(max_length=200, blank=True, help_text="Who minted it: an admin user or an API key.")
    created_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["plan", "-number"]
        constraints = [models.UniqueConstraint(fields=["plan", "number"], name="plan_version_number_unique")]

    def __str__(self) -> str:
        return f"version {self.number}"


class PlanVersionPrice(models.Model):
    """A line of a plan version: the price it bills, under a key that names the line across versions."""

    version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="lines")
    # PROTECT: a price some version still bills cannot be deleted (old periods are rated from it).
    price = models.ForeignKey("Price", on_delete=models.PROTECT, related_name="version_lines")
    key = models.CharField(max_length=64)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="plan_version_key_unique"),
            models.UniqueConstraint(fields=["version", "price"], name="plan_version_price_unique"),
        ]

    def __str__(self) -> str:
        return self.key


class PlanDefaultChange(models.Model):
    """When a version became the plan's default: the log ``Plan.default_version`` is the latest row of.
    Rating reads it for a period that started before the latest change (never for the common case)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="default_changes")
    version = models.ForeignKey(PlanVersion, on_delete=models.CASCADE, related_name="+")
    effective_at = models.DateTimeField()

    class Meta:
        ordering = ["plan", "effective_at", "id"]
        indexes = [models.Index(fields=["plan", "effective_at"])]

    def __str__(self) -> str:
        return f"version {self.version.number} default from {self.effective_at:%Y-%m-%d %H:%M}"


class Customer(TimeStamped):
    """Who buys. ``external_id`` is the merchant's own key, used by events' ``externalSubject``."""

    id = PublicIdField(prefix="cus")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="customers")
    name = models.CharField(max_length=200)
    email = models.EmailField()
    billing_emails = models.CharField(
        "billing e-mails",
        max_length=1000,
        blank=True,
        validators=[validate_email_list],
        help_text="Where invoices and credit notes are e-mailed, comma-separated (accounts payable, a shared "
        "inbox…). Empty: the customer's e-mail.",
    )
    phone = models.CharField(max_length=50, blank=True)
    address_line1 = models.CharField("address line 1", max_length=200, blank=True)
    address_line2 = models.CharField("address line 2", max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 alpha-2 code, e.g. US.")
    tax_id = models.CharField("tax ID", max_length=50, blank=True)
    tax_rate = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(ZERO), MaxValueValidator(Decimal("100"))],
        help_text="Percent; overrides the plan's default tax rate for this customer.",
    )
    external_id = models.CharField(
        "external ID",
        max_length=200,
        null=True,
        blank=True,
        validators=[RegexValidator(r"^[^\s]+$", "The external ID cannot contain spaces.")],
    )
    currency = models.CharField(max_length=3, default="USD", validators=[validate_currency_code])
    time_zone = models.CharField(
        max_length=64, default="UTC", validators=[validate_time_zone], help_text="IANA name, e.g. Europe/Paris."
    )
    credit_before_payment = models.BooleanField(
        "credit before payment",
        default=False,
        help_text="Trusted: prepaid credit and reserved capacity bought on an invoice are credited at once. "
        "Otherwise they are credited when the invoice is paid.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    # Set by invoicing's spend caps (``invoicing.spend``, the one place of the rule) when the customer's accrued
    # usage cost of the period reaches a cap that refuses usage; cleared when finance lifts the cap, the cap is
    # removed or its period ends. While set, ingestion refuses the customer's events (402 SPEND_CAP_REACHED):
    # the one-statement insert's guard reads it from the customer row it resolves anyway, so a customer
    # without a reached cap costs no statement.
    spend_blocked_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Usage refused since the customer's spend cap for the period was reached (spend caps).",
    )
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "external_id"],
                name="customer_external_id_unique_per_merchant",
                condition=Q(external_id__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.currency:
            self.currency = self.currency.upper()
        if self.external_id == "":
            self.external_id = None

    @property
    def is_spend_blocked(self) -> bool:
        """A spend cap refusing usage is reached for the current period (``spend_blocked_since``)."""
        return self.spend_blocked_since is not None

    @property
    def billing_recipients(self) -> list[str]:
        """Where documents are e-mailed: the billing e-mails, else the customer's e-mail."""
        return email_list_split(self.billing_emails) or [self.email]


class TestClock(TimeStamped):
    """Simulated time for subscriptions attached to it (never used in production billing)."""

    __test__ = False  # not a pytest test class

    id = PublicIdField(prefix="tc")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="test_clocks")
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    current_time = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or self.id


class SubscriptionStatus(models.TextChoices):
    PENDING_PAYMENT = "pending_payment", "Pending payment"
    ACTIVE = "active", "Active"
    TERMINATED = "terminated", "Terminated"


# "Billed in real time" (usage debited from the prepaid balance as it arrives): the subscription's own billing
# mode, else its plan's. Written three ways, all here and tested against each other
# (tests/catalog/test_subscription_real_time.py): ``Subscription.is_real_time`` for a loaded row,
# ``Subscription.objects.real_time()`` for the ORM, and this fragment with its parameters for hand-written SQL
# that aliases the subscription table ``s`` and joins its plan as ``p`` (the real-time look-up of the hot path).
SUBSCRIPTION_REAL_TIME_SQL = "(s.billing_mode = %s OR (s.billing_mode = '' AND p.billing_mode = %s))"
SUBSCRIPTION_REAL_TIME_PARAMS = (BillingMode.REAL_TIME, BillingMode.REAL_TIME)


class SubscriptionQuerySet(models.QuerySet):
    def real_time(self) -> SubscriptionQuerySet:
        """The subscriptions billed in real time: ``SUBSCRIPTION_REAL_TIME_SQL`` in the ORM."""
        return self.filter(
            Q(billing_mode=BillingMode.REAL_TIME) | Q(billing_mode="", plan__billing_mode=BillingMode.REAL_TIME)
        )


# The subscription's terms that change no amount already billed: what invoicing's ``subscription_update``
# applies, from the API and from the admin's subscription page alike.
SUBSCRIPTION_TERMS_FIELDS = (
    "name",
    "auto_charge",
    "tax_exempt",
    "payment_term_days",
    "version_policy",
    "metadata",
    "threshold_amount",
    "threshold_ladder",
    "threshold_recurring",
)


class Subscription(TimeStamped):
    """A customer on a plan. Billing periods follow the plan cadence from ``billing_anchor``."""

    id = PublicIdField(prefix="sub")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="subscriptions")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    started_at = models.DateTimeField()
    ending_at = models.DateTimeField(null=True, blank=True)
    billing_anchor = models.DateTimeField(
        null=True, blank=True, help_text="Periods start here; defaults to the plan's anchor, else the start."
    )
    trial_ends_at = models.DateTimeField(null=True, blank=True, help_text="No charges before this moment.")
    terminated_at = models.DateTimeField(null=True, blank=True)
    # Written by invoicing with every applied plan change, in its transaction (never edited by hand):
    # inside a period, the current plan is billed — and debited in real time — from this moment.
    plan_changed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the current plan took effect (the last plan change)."
    )
    terminated_by = models.CharField(max_length=100, blank=True)
    termination_reason = models.TextField(blank=True)
    test_clock = models.ForeignKey(
        TestClock, on_delete=models.PROTECT, related_name="subscriptions", null=True, blank=True
    )
    auto_charge = models.BooleanField(default=False)
    tax_exempt = models.BooleanField(default=False)
    payment_term_days = models.PositiveIntegerField(default=0)
    version_policy = models.CharField(max_length=10, default="floating")
    # The subscription's latest version move (written only by ``invoicing.services.plan_versions``, with a
    # ``SubscriptionVersionChange`` row): from ``plan_version_from`` (None: from the start) it bills from
    # ``plan_version``, or from its plan's default version when that is None (floating). Periods that started
    # earlier are rated from the change rows, so a move never re-rates a period already started.
    plan_version = models.ForeignKey(
        PlanVersion, on_delete=models.PROTECT, null=True, blank=True, editable=False, related_name="subscriptions"
    )
    plan_version_from = models.DateTimeField(null=True, blank=True, editable=False)
    # Once moved (``plan_version_from`` set): the version before the move (None: floating) and since when (None:
    # from the start), so the period running up to a move is rated without reading the change rows.
    previous_plan_version = models.ForeignKey(
        PlanVersion, on_delete=models.PROTECT, null=True, blank=True, editable=False, related_name="+"
    )
    previous_plan_version_from = models.DateTimeField(null=True, blank=True, editable=False)
    elapsed_period_billing = models.CharField(max_length=12, default="none")
    billing_mode = models.CharField(
        max_length=10,
        choices=BillingMode.choices,
        blank=True,
        default="",
        help_text="Overrides the plan's billing mode for this subscription; empty = the plan's.",
    )
    # Overrides of the plan's threshold billing (None: the plan's), read by ``effective_threshold``.
    threshold_amount = models.DecimalField(
        **RATE_DIGITS,
        null=True,
        blank=True,
        validators=[MinValueValidator(THRESHOLD_AMOUNT_MIN), MaxValueValidator(THRESHOLD_AMOUNT_MAX)],
        help_text="Overrides the plan's usage threshold (with this subscription's ladder); empty = the plan's.",
    )
    threshold_ladder = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_threshold_ladder],
        help_text="Further thresholds after the subscription's own first one; empty = none.",
    )
    threshold_recurring = models.BooleanField(
        null=True, blank=True, help_text="Overrides whether the plan's threshold recurs; empty = the plan's."
    )
    metadata = models.JSONField(default=dict, blank=True)
    # Set by invoicing's dunning when a final notice goes out and the merchant chose "mark the subscription
    # past due" (or "block real-time usage", which marks it too); cleared when the invoice is paid. A flag
    # beside ``status``, not a status: a past-due subscription is still billed and still collects usage.
    past_due_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A final payment notice went out unanswered (dunning)."
    )
    # Set with ``past_due_since`` when the merchant chose "block real-time usage", cleared with it (both by
    # ``invoicing.receivables.past_due``, the one place of the rule). While set, the real-time ingest path
    # refuses this customer's events (402 USAGE_BLOCKED); read from the hot path's own look-up row, so the
    # block costs no query. Post-paid usage is not looked up on the hot path and is never refused.
    usage_blocked_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Real-time usage refused since the final payment notice (dunning), until the invoice is settled.",
    )
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["merchant", "status"])]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.customer_id and self.merchant_id and self.customer.merchant_id != self.merchant_id:
            errors["customer"] = "The customer belongs to another merchant."
        if self.plan_id and self.merchant_id and self.plan.merchant_id != self.merchant_id:
            errors["plan"] = "The plan belongs to another merchant."
        if self.ending_at and self.started_at and self.ending_at <= self.started_at:
            errors["ending_at"] = "The end must be after the start."
        if self.test_clock_id and self.merchant_id and self.test_clock.merchant_id != self.merchant_id:
            errors["test_clock"] = "The test clock belongs to another merchant."
        if errors:
            raise ValidationError(errors)

    @property
    def effective_billing_mode(self) -> str:
        return self.billing_mode or (self.plan.billing_mode if self.plan_id else BillingMode.POST_PAID)

    @property
    def is_real_time(self) -> bool:
        """Usage is debited from the prepaid balance as it arrives (its own mode, else its plan's): the Python
        form of ``SUBSCRIPTION_REAL_TIME_SQL``."""
        return self.effective_billing_mode == BillingMode.REAL_TIME

    @property
    def is_usage_blocked(self) -> bool:
        """Dunning blocked this subscription's real-time usage (an invoice unpaid after its final notice)."""
        return self.usage_blocked_since is not None

    @property
    def effective_threshold(self) -> tuple[tuple[Decimal, ...], bool] | None:
        """The usage thresholds that bill this subscription progressively (increasing) and whether the last one
        recurs: its own first threshold and ladder when it has a threshold, else its plan's; its own
        ``threshold_recurring`` when set, else the plan's. None when neither has a threshold."""
        own = self.threshold_amount is not None
        amount = self.threshold_amount if own else self.plan.threshold_amount
        if amount is None:
            return None
        ladder = (self.threshold_ladder or []) if own else self.plan.threshold_ladder
        amounts = tuple(sorted({amount, *(Decimal(str(step)) for step in ladder or [])}))
        recurring = self.threshold_recurring if self.threshold_recurring is not None else self.plan.threshold_recurring
        return amounts, recurring

    @property
    def effective_billing_anchor(self):
        return self.billing_anchor or (self.plan.billing_anchor if self.plan_id else None) or self.started_at


class SubscriptionVersionChange(models.Model):
    """One move of a subscription between plan versions: from ``effective_at`` (None: from its start) it
    bills from ``version`` (None: its plan's default version at each period's start). The latest row is
    cached on the subscription; a move deletes the rows it supersedes (those not yet in force)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="version_changes")
    version = models.ForeignKey(PlanVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    effective_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["subscription", "effective_at", "id"]
        indexes = [models.Index(fields=["subscription", "effective_at"])]

    def __str__(self) -> str:
        what = f"version {self.version.number}" if self.version_id else "the plan's default"
        when = f"{self.effective_at:%Y-%m-%d %H:%M}" if self.effective_at else "the start"
        return f"{what} from {when}"


# --- Features (what entitlements grant access to) -------------------------------------------------


class FeatureType(models.TextChoices):
    METERED = "metered", "Metered (a usage allowance with a balance)"
    STATIC = "static", "Static (a fixed configuration)"
    BOOLEAN = "boolean", "Boolean (on or off)"


FEATURE_KEY_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
FEATURE_KEY_VALIDATOR = RegexValidator(
    FEATURE_KEY_PATTERN, "Use lowercase letters, digits and single hyphens, e.g. api-calls."
)


class Feature(TimeStamped):
    """A capability of a product that entitlements grant to customers. A metered feature may name the
    billable metric whose usage draws its entitlements' balances down."""

    id = PublicIdField(prefix="feat")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="features")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="features")
    key = models.CharField(max_length=100, validators=[FEATURE_KEY_VALIDATOR], help_text="Unique within the product.")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=8, choices=FeatureType.choices, default=FeatureType.BOOLEAN)
    metadata = models.JSONField(default=dict, blank=True)
    billable_metric = models.ForeignKey(
        BillableMetric,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="features",
        help_text="Metered features: the metric whose usage in a period draws the balance down.",
    )

    class Meta:
        ordering = ["product__name", "key"]
        constraints = [models.UniqueConstraint(fields=["product", "key"], name="feature_key_unique_per_product")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    def clean(self) -> None:
        errors = {}
        if self.product_id and self.merchant_id and self.product.merchant_id != self.merchant_id:
            errors["product"] = "The product belongs to another merchant."
        if self.billable_metric_id:
            if self.type != FeatureType.METERED:
                errors["billable_metric"] = "Only a metered feature draws on a billable metric."
            elif self.billable_metric.merchant_id != self.merchant_id:
                errors["billable_metric"] = "The billable metric belongs to another merchant."
        if errors:
            raise ValidationError(errors)


class StaffMerchantAccess(models.Model):
    """Limits a staff user to some merchants in the admin: one row per merchant they may work on.

    A staff user with no row works on every merchant (staff created before bindings existed keep working);
    a user with one or more rows sees, searches, exports and changes only those merchants' objects on
    every admin page, autocomplete, CSV and the billing home. Superusers always see every merchant,
    whatever rows they have. Only superusers edit these rows (on the user's admin page).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_accesses")
    # PROTECT: deleting the last merchant of a bound user must not silently widen them to every merchant.
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="staff_accesses")
    created_at = models.DateTimeField(auto_now_add=True, editable=False)

    class Meta:
        ordering = ["merchant__name"]
        verbose_name = "merchant access"
        verbose_name_plural = "merchant access (empty: every merchant)"
        constraints = [models.UniqueConstraint(fields=["user", "merchant"], name="staff_merchant_access_unique")]

    def __str__(self) -> str:
        return f"{self.user} → {self.merchant}"

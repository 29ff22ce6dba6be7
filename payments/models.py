"""Payments: a merchant's connection to a payment provider, the provider's customer for each of our
customers, saved payment methods and hosted payment sessions."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from catalog.models import Customer, Merchant
from catalog.pricing.currency import format_money
from core.ids import PublicIdField
from invoicing.models import CreditNote, DocumentDelivery, Invoice, Payment


class Provider(models.TextChoices):
    STRIPE = "stripe", "Stripe"


class IntegrationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISCONNECTED = "disconnected", "Disconnected"
    ERROR = "error", "Error"


class ProviderMode(models.TextChoices):
    """Stripe's test and live modes: a secret key belongs to one, and so does every object it creates."""

    TEST = "test", "Test"
    LIVE = "live", "Live"


class MerchantIntegration(models.Model):
    """A merchant's credentials for a payment provider (the client's ``merchantIntegrations``), one per
    merchant and provider: upserted, disconnected and connected again in place.

    The secrets are stored encrypted (``payments/secrets.py``, Fernet with keys from the environment) and
    never leave the server again: the API and the admin show only ``secret_key_hint``. Disconnecting erases
    them; connecting again needs the key again."""

    id = PublicIdField(prefix="mi")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="payment_integrations")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    status = models.CharField(max_length=20, choices=IntegrationStatus.choices, default=IntegrationStatus.ACTIVE)
    mode = models.CharField(max_length=4, choices=ProviderMode.choices, default=ProviderMode.TEST, editable=False)
    external_id = models.CharField(
        "account id", max_length=100, blank=True, help_text="The provider's account id (Stripe: acct_…), if known."
    )
    secret_key_encrypted = models.TextField(blank=True, editable=False)
    secret_key_hint = models.CharField(max_length=40, blank=True, editable=False)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    webhook_secret_hint = models.CharField(max_length=40, blank=True, editable=False)
    publishable_key = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    connected_at = models.DateTimeField(editable=False)
    disconnected_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "provider"], name="payments_one_integration_per_provider"),
            # An active integration always has the key it charges with.
            models.CheckConstraint(
                condition=~Q(status="active") | ~Q(secret_key_encrypted=""), name="payments_active_has_secret_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} for {self.merchant} ({self.status}, {self.mode} mode)"


class ProviderCustomer(models.Model):
    """The provider's customer object standing for one of our customers (Stripe: ``cus_…``), created on
    demand and remembered: one per integration, customer and mode (a test-mode customer does not exist in
    live mode)."""

    integration = models.ForeignKey(MerchantIntegration, on_delete=models.CASCADE, related_name="customers")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="provider_customers")
    mode = models.CharField(max_length=4, choices=ProviderMode.choices)
    reference = models.CharField(max_length=100)
    created_at = models.DateTimeField(editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "customer", "mode"], name="payments_one_provider_customer_per_mode"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.customer})"


class PaymentMethod(models.Model):
    """A customer's saved payment method at the provider (Stripe: ``pm_…``), mirrored here so invoices can
    be charged off-session and the API lists it without a provider call per field. At most one current
    default per provider customer, that is per customer and mode (a partial unique constraint: test-mode
    cards never stand in for live ones); a method detached at the provider keeps its row with
    ``detached_at``."""

    id = PublicIdField(prefix="cpm")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_methods")
    provider_customer = models.ForeignKey(ProviderCustomer, on_delete=models.CASCADE, related_name="payment_methods")
    reference = models.CharField(max_length=100)
    type = models.CharField(max_length=40)
    brand = models.CharField(max_length=40, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(editable=False)
    detached_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_customer", "reference"], name="payments_payment_method_once_per_provider_customer"
            ),
            models.UniqueConstraint(
                fields=["provider_customer"],
                condition=Q(is_default=True, detached_at__isnull=True),
                name="payments_one_default_payment_method",
            ),
        ]

    def __str__(self) -> str:
        label = f"{self.brand} •••• {self.last4}" if self.last4 else self.type
        return f"{label} ({self.customer})"

    @property
    def label(self) -> str:
        """How the customer knows the method: "Visa •••• 4242", else its type."""
        return f"{self.brand.title()} •••• {self.last4}" if self.last4 else self.type.replace("_", " ")


class PaymentSessionMode(models.TextChoices):
    PAYMENT = "payment", "Payment"
    SETUP = "setup", "Set up a payment method"


class PaymentSessionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class PaymentSession(models.Model):
    """A hosted page where the customer pays or saves a payment method (the client's ``paymentSession``),
    backed by the provider's hosted page (Stripe Checkout: ``reference`` is the ``cs_…`` id)."""

    id = PublicIdField(prefix="ps")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="payment_sessions")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_sessions")
    provider_customer = models.ForeignKey(ProviderCustomer, on_delete=models.PROTECT, related_name="sessions")
    mode = models.CharField(max_length=10, choices=PaymentSessionMode.choices)
    status = models.CharField(max_length=12, choices=PaymentSessionStatus.choices, default=PaymentSessionStatus.PENDING)
    reference = models.CharField(max_length=200, unique=True)
    url = models.URLField(max_length=2000)
    success_redirect_url = models.URLField(max_length=2000, blank=True)
    failure_redirect_url = models.URLField(max_length=2000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Payment mode: what the session pays (an invoice's amount due when it was opened) and, once the
    # customer paid, the provider's payment (Stripe: pi_…) and the Payment recorded for it, exactly once.
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="payment_sessions"
    )
    amount = models.DecimalField(max_digits=20, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    payment_reference = models.CharField(
        "provider payment", max_length=100, blank=True, help_text="Stripe: the PaymentIntent (pi_…)."
    )
    payment = models.OneToOneField(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="payment_session"
    )
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    completed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            # A payment-mode session pays a positive amount of an invoice; a setup session pays nothing.
            models.CheckConstraint(
                condition=Q(mode="setup", invoice__isnull=True, amount__isnull=True)
                | Q(mode="payment", invoice__isnull=False, amount__gt=0),
                name="payments_session_pays_an_invoice_in_payment_mode",
            ),
            models.CheckConstraint(
                condition=Q(payment__isnull=True) | Q(status="completed"), name="payments_session_payment_if_completed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.get_mode_display()}, {self.status})"


MAX_RETRIES = 8
MAX_RETRY_DAY = 60


def validate_retry_days(value) -> None:
    """0 to ``MAX_RETRIES`` distinct whole days after the first failed charge, ascending, each from 1 to
    ``MAX_RETRY_DAY`` (Stripe's Smart Retries stop within 2 months too); empty: no automatic retry."""
    if not isinstance(value, list) or not all(isinstance(day, int) and not isinstance(day, bool) for day in value):
        raise ValidationError("Give whole days after the first failed charge, e.g. [3, 5, 7].")
    if len(value) > MAX_RETRIES:
        raise ValidationError(f"Give at most {MAX_RETRIES} retry days.")
    if any(not 1 <= day <= MAX_RETRY_DAY for day in value):
        raise ValidationError(f"Each retry day is from 1 to {MAX_RETRY_DAY} days after the first failed charge.")
    if value != sorted(set(value)):
        raise ValidationError("Retry days are distinct and in ascending order, e.g. [3, 5, 7].")


def default_retry_days() -> list[int]:
    return [3, 5, 7]


class PaymentRetrySettings(models.Model):
    """A merchant's schedule of automatic charge retries (``payments.retries``): after the first failed
    charge of an invoice, it is charged again on each of ``retry_days`` days after that failure, on the
    customer's default method as it is then, until one succeeds; after the last, the invoice stays
    ``PAYMENT_FAILED`` and dunning goes on. A merchant without a row retries on the default days."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="payment_retry_settings"
    )
    retry_days = models.JSONField(
        "retry days",
        default=default_retry_days,
        blank=True,
        validators=[validate_retry_days],
        help_text="Days after the first failed charge on which it is retried, ascending, e.g. [3, 5, 7]; "
        "empty: never retried automatically.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "payment retry settings"
        verbose_name_plural = "payment retry settings"

    def __str__(self) -> str:
        return f"Payment retry settings of {self.merchant}"


class PaymentAttemptStatus(models.TextChoices):
    # Claimed, the provider not answered yet (or the worker died in between: resumed with the same key).
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    PROCESSING = "processing", "Processing"
    REQUIRES_ACTION = "requires_action", "Requires action"
    FAILED = "failed", "Failed"


class AttemptTrigger(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic charge"
    RETRY = "retry", "Scheduled retry"
    REQUESTED = "requested", "Retry requested (API)"


class PaymentAttempt(models.Model):
    """One try at charging an invoice through the provider (``payments.charges``), numbered per invoice.

    Exactly once by constraints: one row per (invoice, attempt number), claimed before the provider is called
    and charged with the idempotency key ``meterline-charge-{invoice}-{number}`` (a second worker, a re-sent
    task or a crash between the call and the record replays the same PaymentIntent); one row per provider
    reference (``pi_…``); one attempt per ``Payment`` (``payment`` is one-to-one), and that payment carries
    the idempotency key ``charge-{pi_…}``, so one PaymentIntent is recorded as money received once."""

    id = PublicIdField(prefix="pat")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payment_attempts")
    number = models.PositiveSmallIntegerField("attempt")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, null=True, blank=True, related_name="attempts"
    )
    reference = models.CharField(
        "provider reference", max_length=100, null=True, blank=True, help_text="Stripe: the PaymentIntent (pi_…)."
    )
    status = models.CharField(max_length=16, choices=PaymentAttemptStatus.choices, default=PaymentAttemptStatus.PENDING)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    payment = models.OneToOneField(
        Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="payment_attempt"
    )
    trigger = models.CharField(max_length=10, choices=AttemptTrigger.choices, default=AttemptTrigger.AUTOMATIC)
    requested_reason = models.CharField(
        max_length=500, blank=True, help_text="The reason given with a retry requested through the API (audit)."
    )
    # Set when the attempt failed and the merchant's schedule has a retry left; cleared when the next attempt
    # is claimed (the scheduled retry, or one requested earlier), so only the latest attempt can be due.
    next_retry_at = models.DateTimeField("next retry", null=True, blank=True)
    # The customer's e-mail about this attempt (failed, or needs their action): at most one, written in the
    # transaction that records the outcome (which runs once per attempt).
    notice = models.OneToOneField(
        DocumentDelivery, on_delete=models.PROTECT, null=True, blank=True, related_name="payment_attempt"
    )
    # What the provider reports after the charge (webhooks, ``payments.webhooks``), shown to finance; no money
    # is moved here. ``provider_refunded`` is the charge's refunded total as Stripe last reported it (it only
    # grows: a late, older event never lowers it); refunds Meterline records are refund credit notes.
    provider_refunded = models.DecimalField(
        "refunded at the provider", max_digits=20, decimal_places=4, default=0, editable=False
    )
    provider_refunded_at = models.DateTimeField("refund reported at", null=True, blank=True, editable=False)
    # The customer disputed the charge with their bank (Stripe: charge.dispute.created): the money is held.
    disputed_at = models.DateTimeField(null=True, blank=True, editable=False)
    dispute_reference = models.CharField(max_length=100, blank=True, editable=False, help_text="Stripe: dp_…")
    dispute_reason = models.CharField(max_length=100, blank=True, editable=False)
    created_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(editable=False)

    class Meta:
        ordering = ["invoice", "number"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "number"], name="payments_attempt_number_once_per_invoice"),
            models.UniqueConstraint(
                fields=["reference"], condition=Q(reference__isnull=False), name="payments_attempt_reference_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payments_attempt_amount_positive"),
            # Money recorded only for a charge that succeeded.
            models.CheckConstraint(
                condition=Q(payment__isnull=True) | Q(status="succeeded"), name="payments_attempt_payment_if_succeeded"
            ),
            # Only a failed attempt is retried.
            models.CheckConstraint(
                condition=Q(next_retry_at__isnull=True) | Q(status="failed"), name="payments_attempt_retry_if_failed"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_retry_at"], condition=Q(next_retry_at__isnull=False), name="payments_attempt_retry_due"
            )
        ]

    def __str__(self) -> str:
        return f"Attempt {self.number} of {self.invoice} ({format_money(self.amount, self.currency)}, {self.status})"


class ProviderRefundStatus(models.TextChoices):
    # Claimed with the credit note, the provider not answered yet (or the worker died in between: resumed
    # with the same key after the lease).
    PENDING = "pending", "Pending"
    # The provider accepted it and will settle it later (Stripe's refund status "pending").
    PROCESSING = "processing", "Processing"
    SUCCEEDED = "succeeded", "Succeeded"
    # Refused or failed at the provider, or no provider to send it to: finance retries it (a new try) or
    # refunds by transfer.
    FAILED = "failed", "Failed"


# What still counts against a card payment's refundable amount: every try but a failed one.
LIVE_REFUND_STATUSES = (ProviderRefundStatus.PENDING, ProviderRefundStatus.PROCESSING, ProviderRefundStatus.SUCCEEDED)


class ProviderRefund(models.Model):
    """The part of a refund credit note given back through the provider against one card payment
    (``payments.refunds``), one row per try.

    Claimed ``pending`` in the transaction that issues the credit note, sent to the provider after commit with
    the row's ``idempotency_key`` (``meterline-refund-{credit note}``; ``-{payment}`` appended when the refund
    spans several card payments; ``-{try}`` appended from the second try on), then recorded. At most one try
    per credit note and payment is not failed (a partial unique constraint), so a portion is never refunded
    twice at the provider, whatever runs twice."""

    id = PublicIdField(prefix="prf")
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="provider_refunds")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="provider_refunds")
    number = models.PositiveSmallIntegerField("try")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    charge_reference = models.CharField(
        "refunded payment", max_length=100, help_text="Stripe: the PaymentIntent (pi_…) the money goes back from."
    )
    idempotency_key = models.CharField(max_length=255, unique=True)
    reference = models.CharField(
        "provider reference", max_length=100, null=True, blank=True, help_text="Stripe: the refund (re_…)."
    )
    status = models.CharField(max_length=12, choices=ProviderRefundStatus.choices, default=ProviderRefundStatus.PENDING)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.TextField(blank=True)
    created_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(editable=False)

    class Meta:
        ordering = ["credit_note", "-created_at", "payment", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["credit_note", "payment", "number"], name="payments_refund_try_once_per_note_and_payment"
            ),
            models.UniqueConstraint(
                fields=["credit_note", "payment"],
                condition=~Q(status="failed"),
                name="payments_refund_one_live_try",
            ),
            models.UniqueConstraint(
                fields=["reference"], condition=Q(reference__isnull=False), name="payments_refund_reference_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payments_refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund of {format_money(self.amount, self.currency)} on {self.charge_reference} ({self.status})"


class ProviderEvent(models.Model):
    """One event a provider sent to the integration's webhook (``POST /webhooks/stripe/{integration}``), its
    signature verified, kept with how it was handled (``payments.webhooks``).

    Exactly once by a constraint: one row per integration and provider event id, inserted before the event is
    handled; a delivery finding its row already processed is acknowledged and ignored (providers deliver at
    least once, and retry until answered 2xx). A row not processed (its handling raised: ``error``) is handled
    again on the next delivery; every handler is safe to repeat and to meet events out of order."""

    integration = models.ForeignKey(MerchantIntegration, on_delete=models.CASCADE, related_name="events")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    event_id = models.CharField("event id", max_length=255, help_text="Stripe: evt_…")
    type = models.CharField(max_length=100)
    created_at = models.DateTimeField("created at the provider")
    received_at = models.DateTimeField()
    deliveries = models.PositiveIntegerField(default=1)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # Links for the admin, without a database constraint: the row is written after the handler (whose
    # transaction locks the invoice, then the attempt, FOR UPDATE), and a foreign key check would take a share
    # lock on both in its own order: a duplicate delivery's handler and this write deadlocked on PostgreSQL.
    # Invoices and attempts are never deleted (PROTECT elsewhere).
    invoice = models.ForeignKey(
        Invoice,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="provider_events",
    )
    attempt = models.ForeignKey(
        PaymentAttempt,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="provider_events",
    )
    # The library parses Stripe's ``*_decimal`` fields (``unit_amount_decimal``) into Decimal: stored as strings.
    payload = models.JSONField("event object", default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-received_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "event_id"], name="payments_provider_event_once"),
        ]
        indexes = [models.Index(fields=["integration", "-received_at"], name="payments_event_received")]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"

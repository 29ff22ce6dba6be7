"""Prepaid credit: one wallet per customer and currency, an append-only ledger, and credit lots.

* ``LedgerEntry`` is the source of truth: every change of a balance is one row, never edited or
  deleted; the balance is the sum of the wallet's entries and each row stores ``balance_after``.
* ``Wallet`` caches that sum (and a few derived totals) so a balance read is one indexed query.
  Services update it under ``select_for_update`` in the same transaction as the entry they append.
* ``CreditLot`` is one block of credit (a grant, a top-up, a reserved-capacity purchase) with what
  is left of it; debits consume lots in the documented order (README "Order of consumption") and
  ``LedgerAllocation`` rows record which lot paid for which entry.
* ``Commitment`` is a minimum spend over a term, trued up once at its end.
* ``WebhookSettings`` / ``WebhookEndpoint`` / ``WebhookDelivery`` carry signed events to the merchant.

Kept whole for now because the tables reference each other in one migration history; the next split is a
``models/`` package (ledger, entitlements, webhooks) when the webhooks move to their own app.
"""

from __future__ import annotations

import base64
import re
import secrets
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from catalog.descriptions import format_number
from catalog.models import RATE_DIGITS, BillableMetric, Customer, Merchant, Subscription
from catalog.validators import validate_currency_code
from core.formatting import decimal_string
from core.ids import PublicIdField

from .errors import LedgerImmutable

ZERO = Decimal("0")
# Amounts stay unrounded (12 places, like rates): real-time debits are differences of unrounded
# engine results, and rounding each one would drift from the period-end invoice.
MONEY = RATE_DIGITS


class BalancePolicy(models.TextChoices):
    BLOCK = "block", "Block usage when the credit runs out"
    ALLOW_OVERAGE = "allow_overage", "Allow overage (billed on the next invoice)"
    AUTO_TOP_UP = "auto_top_up", "Top up automatically under a threshold"


class Wallet(models.Model):
    """A customer's prepaid balance in one currency, with the policy for when it runs out.

    The money fields are caches of the ledger and of the open lots, written only by
    ``wallets.services`` while this row is locked: ``balance`` = Σ ledger amounts;
    ``reserved_credit`` = what is left on reserved-capacity lots; ``overage_outstanding`` = usage
    debited beyond the credit and not yet moved to an invoice. ``available`` (credit any metric may
    use) = balance − reserved_credit + overage_outstanding.
    """

    id = PublicIdField(prefix="wal")
    # No single-column indexes: (merchant, low_balance_since) and the unique (customer, currency) lead
    # with these columns (see "Indexes of the debit path" in wallets/README.md).
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="wallets", db_index=False)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="wallets", db_index=False)
    currency = models.CharField(max_length=3, validators=[validate_currency_code])

    balance = models.DecimalField(**MONEY, default=ZERO, editable=False)
    reserved_credit = models.DecimalField(**MONEY, default=ZERO, editable=False)
    overage_outstanding = models.DecimalField(**MONEY, default=ZERO, editable=False)
    expiring_credit = models.DecimalField(
        **MONEY, default=ZERO, editable=False, help_text="Credit left on lots that have an expiry date."
    )
    next_expiry_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Ledger rows are numbered 1, 2, 3… per wallet under the row lock: the order of the running balance.
    last_sequence = models.PositiveBigIntegerField(default=0, editable=False)

    policy = models.CharField(max_length=20, choices=BalancePolicy.choices, default=BalancePolicy.ALLOW_OVERAGE)
    low_balance_threshold = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        help_text="A low-balance notice (webhook + admin list) fires when the balance falls below this.",
    )
    auto_top_up_threshold = models.DecimalField(**MONEY, null=True, blank=True)
    auto_top_up_amount = models.DecimalField(**MONEY, null=True, blank=True)
    # Armed = the next crossing under the threshold fires; disarmed after a top-up (or a notice) until
    # the balance is back at or above the threshold, so one crossing fires exactly once.
    auto_top_up_armed = models.BooleanField(default=True, editable=False)
    low_balance_since = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer__name", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"], name="wallet_one_per_customer_currency"),
            models.CheckConstraint(name="wallet_reserved_not_negative", condition=Q(reserved_credit__gte=0)),
            models.CheckConstraint(name="wallet_overage_not_negative", condition=Q(overage_outstanding__gte=0)),
        ]
        indexes = [models.Index(fields=["merchant", "low_balance_since"])]

    def __str__(self) -> str:
        return f"{self.customer} · {self.currency}"

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved_credit + self.overage_outstanding


class LowBalanceWalletManager(models.Manager):
    def get_queryset(self):
        return (
            super().get_queryset().filter(low_balance_threshold__isnull=False, balance__lt=F("low_balance_threshold"))
        )


class LowBalanceWallet(Wallet):
    """Wallets whose balance is under their low-balance threshold (an admin list for finance)."""

    objects = LowBalanceWalletManager()

    class Meta:
        proxy = True
        verbose_name = "low balance"
        verbose_name_plural = "low balances"


class LotKind(models.TextChoices):
    GRANT = "grant", "Free grant"
    TOP_UP = "top_up", "Paid top-up"
    AUTO_TOP_UP = "auto_top_up", "Automatic top-up"
    RESERVED = "reserved", "Reserved capacity"
    USAGE_CREDIT = "usage_credit", "Usage credited back"


class CreditLot(models.Model):
    """One block of credit and what is left of it. ``remaining`` is written only by services, under the
    wallet's lock, together with the ledger entry (and allocation) that explains the change."""

    id = PublicIdField(prefix="lot")
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="lots", db_index=False)
    kind = models.CharField(max_length=20, choices=LotKind.choices)
    original_amount = models.DecimalField(**MONEY)
    remaining = models.DecimalField(**MONEY)
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="When the expiry sweep removed the rest.")
    metric_ids = models.JSONField(
        default=list, blank=True, help_text="Reserved capacity: the billable metrics (bm_…) this credit pays for."
    )
    price_paid = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Reserved capacity: what the customer paid for the credit."
    )
    purchase_invoice_ref = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                name="lot_remaining_within_original", condition=Q(remaining__gte=0, remaining__lte=F("original_amount"))
            ),
        ]
        # No index names ``remaining``: every debit rewrites it, and an indexed column makes the update
        # non-HOT (a new entry in every index of the table per debit).
        indexes = [
            models.Index(fields=["wallet"], name="credit_lot_wallet"),
            models.Index(fields=["expires_at", "expired_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {decimal_string(self.original_amount)} {self.wallet.currency}"


class EntryKind(models.TextChoices):
    TOP_UP = "top_up", "Top-up"
    AUTO_TOP_UP = "auto_top_up", "Automatic top-up"
    GRANT = "grant", "Grant"
    RESERVED_PURCHASE = "reserved_purchase", "Reserved capacity purchase"
    USAGE_DEBIT = "usage_debit", "Usage debit"
    EXPIRY = "expiry", "Expiry"
    REFUND = "refund", "Refund"
    INVOICE_SETTLEMENT = "invoice_settlement", "Invoice settlement"


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only and cannot be updated.")

    def delete(self):
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only and cannot be deleted.")


class AppendOnly(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        # ``_state.adding`` is documented by Django ("Model._state" in the model instance reference: False
        # once loaded or saved). The primary key cannot tell (a public id is set when the instance is
        # built), and asking the database would add a statement to every append.
        if not self._state.adding:
            raise LedgerImmutable(f"{type(self).__name__} {self.pk} is append-only and cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutable(f"{type(self).__name__} {self.pk} is append-only and cannot be deleted.")


class LedgerEntry(AppendOnly):
    """One change of a wallet's balance. ``amount`` is signed (credit +, debit −)."""

    id = PublicIdField(prefix="le")
    # Every real-time debit inserts a row here: indexes are only those a read or a constraint needs
    # (wallets/README.md, "Indexes of the debit path"); ``wallet`` and ``subscription`` lead composite ones.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries", db_index=False)
    sequence = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=20, choices=EntryKind.choices)
    amount = models.DecimalField(**MONEY)
    balance_after = models.DecimalField(**MONEY)
    # Usage debits: the part the credit did not cover (balance went negative for it). Settlements: the
    # negative of the overage moved to an invoice. Σ over a wallet = its outstanding overage.
    overage_amount = models.DecimalField(**MONEY, default=ZERO)
    lot = models.ForeignKey(
        CreditLot,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="entries",
        help_text="Lot created or expired.",
        db_index=False,
    )
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    metric = models.ForeignKey(
        BillableMetric, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=100, blank=True, help_text="Invoice id (purchase or settlement).")
    event_ids = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["wallet", "sequence"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["wallet", "sequence"], name="ledger_sequence_unique_per_wallet"),
            models.UniqueConstraint(
                fields=["wallet", "kind", "idempotency_key"],
                name="ledger_idempotency_key_unique",
                condition=~Q(idempotency_key=""),
            ),
            models.UniqueConstraint(
                fields=["wallet", "reference"],
                name="ledger_one_settlement_per_invoice",
                condition=Q(kind="invoice_settlement"),
            ),
            models.UniqueConstraint(fields=["lot"], name="ledger_one_expiry_per_lot", condition=Q(kind="expiry")),
        ]
        indexes = [
            models.Index(fields=["subscription", "period_start", "period_end"]),
            models.Index(fields=["wallet", "kind", "occurred_at"]),
            # Plain B-trees (no varchar_pattern_ops twin): what PROTECT checks a lot or metric delete with.
            models.Index(fields=["lot"], name="ledger_entry_lot"),
            models.Index(fields=["metric"], name="ledger_entry_metric"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.get_kind_display()} {decimal_string(self.amount)}"


class LedgerAllocation(AppendOnly):
    """Which lot paid (or received) how much of a ledger entry. ``amount`` is signed like the entry."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations", db_index=False)
    lot = models.ForeignKey(CreditLot, on_delete=models.PROTECT, related_name="allocations", db_index=False)
    amount = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["entry"], name="ledger_allocation_entry"),
            models.Index(fields=["lot"], name="ledger_allocation_lot"),
        ]

    def __str__(self) -> str:
        return f"{decimal_string(self.amount)} on {self.lot_id}"


class Commitment(models.Model):
    """A guaranteed minimum spend over a term (e.g. $120,000 over a year), drawn down by usage debits
    of its metrics (all metrics when ``metric_ids`` is empty). At the end of the term the shortfall
    is recorded exactly once (``trued_up_at``) for invoicing to bill."""

    id = PublicIdField(prefix="cmt")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="commitments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="commitments")
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    amount = models.DecimalField(**MONEY)
    term_start = models.DateTimeField()
    term_end = models.DateTimeField()
    metric_ids = models.JSONField(default=list, blank=True, help_text="Empty = usage of every metric counts.")
    description = models.CharField(max_length=255, blank=True)
    trued_up_at = models.DateTimeField(null=True, blank=True, editable=False)
    drawn_amount = models.DecimalField(**MONEY, null=True, blank=True, editable=False)
    shortfall = models.DecimalField(**MONEY, null=True, blank=True, editable=False)
    billed_invoice_ref = models.CharField(max_length=100, blank=True, editable=False)
    # The API caller's key, unique per customer when given (the constraint below decides between concurrent
    # retries); ``fingerprint`` hashes the request so that the key replayed with another body is a 409. The
    # admin creates without a key (null: not idempotent).
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, editable=False)
    fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-term_end"]
        constraints = [
            models.CheckConstraint(name="commitment_term_ordered", condition=Q(term_end__gt=F("term_start"))),
            models.CheckConstraint(name="commitment_amount_positive", condition=Q(amount__gt=0)),
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="commitment_key_unique",
            ),
        ]
        indexes = [models.Index(fields=["trued_up_at", "term_end"])]

    def __str__(self) -> str:
        return f"{self.customer} commits {decimal_string(self.amount)} {self.currency}"


class CommitmentRate(models.Model):
    """A lower rate a commitment buys (e.g. $0.001 instead of $0.002 per 1K tokens while committed): the
    customer's negotiated rate over one plan price, windowed on the commitment's term (``Price.effective_from``
    = ``term_start``, ``effective_until`` = ``term_end``), so usage in the term's billing periods is rated at
    it and draws the commitment down as any usage debit does; after the term the plan (or a later negotiated)
    rate applies. Written with the commitment, in its transaction (``commitment_create``)."""

    commitment = models.ForeignKey(Commitment, on_delete=models.CASCADE, related_name="rates")
    price = models.OneToOneField(
        "catalog.Price",
        on_delete=models.PROTECT,
        related_name="commitment_rate",
        help_text="The negotiated rate the commitment wrote over the term.",
    )

    class Meta:
        ordering = ["commitment", "price"]

    def __str__(self) -> str:
        return f"{self.price} while committed ({self.commitment_id})"


class WebhookEventType(models.TextChoices):
    """The events Meterline sends to merchants, named as Paygentic names them (``invoice.paid.v0``): a
    family (``invoice.paid``) and the version of its payload. An endpoint may subscribe to a family,
    which matches every version of it."""

    INVOICE_CREATED = "invoice.created.v0", "Invoice created (draft)"
    INVOICE_ISSUED = "invoice.issued.v0", "Invoice issued"
    INVOICE_PAID = "invoice.paid.v0", "Invoice paid"
    INVOICE_OVERDUE = "invoice.overdue.v0", "Invoice overdue"
    INVOICE_VOIDED = "invoice.voided.v0", "Invoice voided"
    CREDIT_NOTE_ISSUED = "credit_note.issued.v0", "Credit note issued"
    REFUND_CREATED = "refund.created.v0", "Refund created"
    PAYMENT_RECORDED = "payment.recorded.v0", "Payment recorded"
    SUBSCRIPTION_CREATED = "subscription.created.v0", "Subscription created"
    SUBSCRIPTION_TERMINATED = "subscription.terminated.v0", "Subscription terminated"
    BALANCE_LOW = "balance.low.v0", "Prepaid balance low"
    BALANCE_AUTO_TOP_UP = "balance.auto_top_up.v0", "Prepaid balance topped up automatically"
    # Meterline extensions (invoicing/SPEND.md): a spend alert's threshold crossed, a spend cap reached.
    SPEND_ALERT_FIRED = "spend.alert.fired.v0", "Spend alert fired"
    SPEND_CAP_REACHED = "spend.cap.reached.v0", "Spend cap reached"


_VERSION_SUFFIX = re.compile(r"\.v\d+$")


def webhook_event_family(event_type: str) -> str:
    """``invoice.paid.v0`` → ``invoice.paid``."""
    return _VERSION_SUFFIX.sub("", event_type)


WEBHOOK_EVENT_FAMILIES = frozenset(webhook_event_family(value) for value in WebhookEventType.values)


def validate_webhook_event_types(value) -> None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("A list of event type names.")
    unknown = [name for name in value if name not in WebhookEventType.values and name not in WEBHOOK_EVENT_FAMILIES]
    if unknown:
        raise ValidationError(f"Unknown event types: {', '.join(unknown)}.")


WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 32


def webhook_secret_new() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes (the HMAC key)."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()


class WebhookSettings(models.Model):
    """A merchant's webhook switch (the API's ``/v0/webhooks``): created once by "enable", then turned
    off and on. While ``enabled`` is false no event is recorded for the merchant and pending deliveries
    wait; a merchant without this row (endpoints added in the admin) receives events."""

    id = PublicIdField(prefix="app")  # the API's applicationId
    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="webhook_settings")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(editable=False)

    class Meta:
        verbose_name = verbose_name_plural = "webhook settings"

    def __str__(self) -> str:
        return f"{self.merchant} webhooks ({'on' if self.enabled else 'paused'})"


class WebhookEndpoint(models.Model):
    """Where a merchant receives events, signed per Standard Webhooks with ``secret`` (``whsec_`` +
    base64 of the key; README "Webhook signing"). After a rotation the previous secret also signs until
    ``previous_secret_expires_at``, so receivers can switch without losing a delivery."""

    id = PublicIdField(prefix="whe")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=200, default=webhook_secret_new, editable=False)
    previous_secret = models.CharField(max_length=200, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    event_types = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_webhook_event_types],
        help_text='e.g. ["invoice.paid.v0", "balance.low"] (a name without version: every version); empty = every event.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant", "url"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.enabled and (
            not self.event_types
            or event_type in self.event_types
            or webhook_event_family(event_type) in self.event_types
        )


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event for one endpoint, with its attempts. Retried with exponential back-off until delivered
    or ``WEBHOOK_MAX_ATTEMPTS`` is reached. ``event_id`` is the Standard Webhooks ``webhook-id``: the same
    for every attempt and replay, so receivers can drop what they already processed."""

    id = PublicIdField(prefix="whd")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        constraints = [
            # An event reaches an endpoint once, however often its emitter runs (ids of events about one
            # object are derived from it: see ``webhook_event_id``).
            models.UniqueConstraint(fields=["event_id", "endpoint"], name="webhook_delivery_once_per_endpoint")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery and what came back (the portal's and the admin's attempt log)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    manual = models.BooleanField(default=False, help_text="A replay asked for by the merchant or an operator.")

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}"


# --- Entitlements (wallets/ENTITLEMENTS.md) -------------------------------------------------------


class Entitlement(models.Model):
    """A customer's access to one feature, from ``active_from`` until ``active_to`` (null: no end).

    The template of the feature's type is kept as parsed columns: ``config`` (static), and for metered
    features ``is_soft_limit``, the usage period (``usage_period`` ISO duration from ``usage_period_anchor``;
    empty: one period from ``active_from`` that never resets) and ``issue_after_reset`` (an allowance
    granted in every period) with its burn priority and rollover bounds, and ``preserve_overage_at_reset``.
    Metered balances are computed, never stored (``wallets.entitlements``, ``wallets.burndown``).
    """

    id = PublicIdField(prefix="ent")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="entitlements")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="entitlements")
    feature = models.ForeignKey("catalog.Feature", on_delete=models.PROTECT, related_name="entitlements")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="entitlements"
    )
    active_from = models.DateTimeField()
    active_to = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    config = models.JSONField(null=True, blank=True, help_text="Static features: the configuration granted.")
    is_soft_limit = models.BooleanField(default=False, help_text="Metered: keep access past a zero balance.")
    usage_period = models.CharField(max_length=40, blank=True, help_text="Metered: ISO 8601 duration, e.g. P1M.")
    usage_period_anchor = models.DateTimeField(null=True, blank=True)
    issue_after_reset = models.DecimalField(**MONEY, null=True, blank=True)
    issue_after_reset_priority = models.IntegerField(
        null=True, blank=True, help_text="Metered: where the allowance burns among the grants (empty: first)."
    )
    preserve_overage_at_reset = models.BooleanField(
        default=False, help_text="Metered: carry overage into the next usage period."
    )
    reset_max_rollover = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Metered: most of the unused allowance kept at a reset (empty: 0)."
    )
    reset_min_rollover = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Metered: least of the allowance kept at a reset (empty: 0)."
    )
    template = models.JSONField(default=dict, blank=True, help_text="The template as issued (audit).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.feature_id} for {self.customer_id}"


class EntitlementGrant(models.Model):
    """Credits added to a metered entitlement's balance while effective, unexpired and not voided.

    ``idempotency_key`` is unique per entitlement: a retried create returns the first grant. Purchased
    grants carry the key ``purchase:<purchase key>``."""

    id = PublicIdField(prefix="grnt")
    entitlement = models.ForeignKey(Entitlement, on_delete=models.PROTECT, related_name="grants")
    amount = models.DecimalField(**MONEY)
    idempotency_key = models.CharField(max_length=255)
    # The client's default is 0 ("Defaults to 0", paygentic_sdk models/creategrantrequest.py).
    priority = models.IntegerField(default=0, help_text="Lower burns first.")
    effective_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    reset_max_rollover = models.DecimalField(**MONEY, null=True, blank=True)
    reset_min_rollover = models.DecimalField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", F("expires_at").asc(nulls_last=True), "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entitlement", "idempotency_key"], name="entitlement_grant_idempotency_key_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="entitlement_grant_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{format_number(self.amount)} on {self.entitlement_id}"


class GrantPurchase(models.Model):
    """A grant bought on a one-off invoice (``invoice_ref``: the invoice id; wallets never imports
    invoicing). The grant is created when that invoice is paid (``grant_purchase_fulfil``)."""

    id = PublicIdField(prefix="gp")
    entitlement = models.ForeignKey(Entitlement, on_delete=models.PROTECT, related_name="purchases")
    idempotency_key = models.CharField(max_length=255)
    invoice_ref = models.CharField(max_length=40, unique=True)
    amount = models.DecimalField(**MONEY)
    price = models.DecimalField(max_digits=20, decimal_places=9)
    currency = models.CharField(max_length=3)
    effective_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    payment_expires_at = models.DateTimeField(null=True, blank=True)
    reset_max_rollover = models.DecimalField(**MONEY, null=True, blank=True)
    reset_min_rollover = models.DecimalField(**MONEY, null=True, blank=True)
    grant = models.OneToOneField(
        EntitlementGrant, on_delete=models.PROTECT, null=True, blank=True, related_name="purchase"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["entitlement", "idempotency_key"], name="grant_purchase_key_unique")
        ]

    def __str__(self) -> str:
        return f"{format_number(self.amount)} on {self.entitlement_id} ({self.invoice_ref})"


class CreditPurchaseKind(models.TextChoices):
    TOP_UP = "top_up", "Prepaid top-up"
    RESERVED = "reserved", "Reserved capacity"


class CreditPurchase(models.Model):
    """Prepaid credit sold on a one-off invoice (``invoice_ref``: the invoice id; wallets never imports
    invoicing): a top-up, or reserved capacity (credit for ``metric_ids`` only, usually at a discount).
    The lot is credited when the invoice is paid, or at once for a customer trusted with credit before
    payment (``Customer.credit_before_payment``); ``credit_purchase_fulfil`` sets ``lot`` exactly once
    (one-to-one, and the ledger's idempotency key ``purchase:<id>``)."""

    id = PublicIdField(prefix="cp")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_purchases")
    kind = models.CharField(max_length=20, choices=CreditPurchaseKind.choices)
    currency = models.CharField(max_length=3, validators=[validate_currency_code])
    amount = models.DecimalField(**MONEY, help_text="The credit bought (its face value).")
    price = models.DecimalField(**MONEY, help_text="What the invoice bills for it.")
    metric_ids = models.JSONField(
        default=list, blank=True, help_text="Reserved capacity: the billable metrics (bm_…) this credit pays for."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255)
    invoice_ref = models.CharField("invoice", max_length=40, unique=True)
    lot = models.OneToOneField(
        CreditLot, on_delete=models.PROTECT, null=True, blank=True, related_name="purchase", help_text="Once credited."
    )
    credited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "kind", "idempotency_key"], name="credit_purchase_key_unique"),
            models.CheckConstraint(name="credit_purchase_amount_positive", condition=Q(amount__gt=0)),
            models.CheckConstraint(name="credit_purchase_price_not_negative", condition=Q(price__gte=0)),
            models.CheckConstraint(
                name="credit_purchase_credited_with_its_lot",
                condition=Q(lot__isnull=True, credited_at__isnull=True)
                | Q(lot__isnull=False, credited_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {decimal_string(self.amount)} {self.currency} ({self.invoice_ref})"


class PeriodDebitTotal(models.Model):
    """The usage debited in real time for one subscription period segment, kept as a running total:
    Σ of the ``usage_debit`` ledger entries with this (subscription, period_start, period_end), added
    in the transaction that appends each entry (``wallets.services``; never edited otherwise). It
    answers "usage cost so far" in one row whatever the number of debits; invoices still settle from
    the ledger itself."""

    # The unique (subscription, period_start, period_end) leads with it: no index of its own.
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+", db_index=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    debited = models.DecimalField(**MONEY, default=ZERO, help_text="Σ of the debits (credits back subtracted).")
    overage = models.DecimalField(**MONEY, default=ZERO, help_text="Σ of their parts no credit covered.")
    entries = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start", "period_end"], name="period_debit_total_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.period_start:%Y-%m-%d}: {self.debited}"

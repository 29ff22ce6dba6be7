"""Invoices, credit notes, billing runs and scheduled plan changes.

An invoice is written in one transaction with its lines; a recurring invoice exists at most once per
(subscription, period start) — a partial unique constraint, not application logic, guarantees it.
Issued invoices never change: the service layer refuses, and ``Invoice.save`` refuses changed amounts
on a row that was loaded in a non-draft state.

Kept whole for now because invoices, credit notes, receivables and deliveries reference each other in one
migration history; the next split is a ``models/`` package (documents, runs, receivables, delivery).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Round
from simple_history.models import HistoricalRecords

from catalog.models import (
    QUANTITY_DIGITS,
    RATE_DIGITS,
    ApiKeyAttributedHistory,
    BillableMetric,
    Customer,
    Merchant,
    Plan,
    Price,
    Subscription,
)
from catalog.pricing.currency import format_money
from catalog.validators import validate_email_list
from core.ids import PublicIdField

# Amounts on documents are rounded to the currency's minor unit (at most 3 places: KWD, BHD…).
MONEY_DIGITS = {"max_digits": 20, "decimal_places": 4}
ZERO = Decimal("0")


class InvoiceKind(models.TextChoices):
    OPENING = "opening", "Opening (in-advance fees at the start)"
    RECURRING = "recurring", "Recurring (end of a billing period)"
    PLAN_CHANGE = "plan_change", "Plan change (proration)"
    ADJUSTMENT = "adjustment", "Adjustment (late usage)"
    CREDIT_PURCHASE = "credit_purchase", "Prepaid credit purchase"
    ONE_OFF = "one_off", "One-off (set-up work, add-ons, credits)"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ISSUED = "issued", "Issued"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    OVERDUE = "overdue", "Overdue"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


# Issued and not settled: money is still due (or was, until a payment or credit note settles it). The
# receivables services move an invoice between these and PAID; nothing else does (invoicing/RECEIVABLES.md).
OPEN_STATUSES = (InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.OVERDUE)


class InvoiceError(Exception):
    """A refused change to an invoice or credit note (wrong state, amounts out of range)."""


class Invoice(models.Model):
    id = PublicIdField(prefix="inv")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="invoices")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="invoices")
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, related_name="+", help_text="The plan whose charges this invoice bills."
    )
    kind = models.CharField(max_length=16, choices=InvoiceKind.choices, default=InvoiceKind.RECURRING)
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    # Drafts have no number: numbers are assigned at issue so that a deleted or voided draft never
    # leaves a hole in the merchant's yearly sequence (tax authorities audit gaps).
    number = models.CharField(max_length=40, null=True, blank=True)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    grace_ends_at = models.DateTimeField(
        null=True, blank=True, help_text="The draft is refreshed with late usage and issued at this moment."
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    # Fixed at issue (issue moment + the subscription's payment term): a later change of the term does not
    # move the due date of an invoice already sent. ``invoices_mark_overdue`` compares it with the time.
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)
    tax_behavior = models.CharField(max_length=10, default="exclusive")
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=ZERO, help_text="Percent.")
    subtotal = models.DecimalField(**MONEY_DIGITS, default=ZERO, help_text="Net of tax.")
    tax = models.DecimalField(**MONEY_DIGITS, default=ZERO)
    total = models.DecimalField(**MONEY_DIGITS, default=ZERO)
    # What the customer still owes: total − paid from prepaid balance − applied customer credit − payments
    # allocated − credit notes applied. Written at issue and then only by the receivables services, each under
    # the invoice's row lock (``invoicing.receivables``); never negative.
    amount_due = models.DecimalField(**MONEY_DIGITS, default=ZERO)
    replaces = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="replaced_by",
        help_text="The voided invoice this one reissues.",
    )
    adjusts = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="adjustments",
        help_text="The issued invoice whose late usage this adjustment bills.",
    )
    billing_run = models.ForeignKey(
        "BillingRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="invoices"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Every save of an invoice records who made it (person or API key). The billing run's inserts do
    # not (``billing_run`` already says which run wrote the invoice; see ``_close_one``), nor do
    # ``bulk_create`` or queryset ``update()`` calls.
    history = HistoricalRecords(bases=[ApiKeyAttributedHistory])

    # Fixed once issued. ``amount_due`` is not among them: payments and credit notes settle it.
    AMOUNT_FIELDS = ("subtotal", "tax", "total", "tax_rate", "currency", "period_start", "period_end")

    class Meta:
        ordering = ["-period_start", "-created_at"]
        constraints = [
            # Exactly once: one live recurring invoice per subscription period (a voided one may be reissued).
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=Q(kind="recurring") & ~Q(status="void"),
                name="one_recurring_invoice_per_subscription_period",
            ),
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(kind="opening") & ~Q(status="void"),
                name="one_opening_invoice_per_subscription",
            ),
            models.UniqueConstraint(
                fields=["merchant", "number"], condition=Q(number__isnull=False), name="invoice_number_unique"
            ),
            models.CheckConstraint(condition=Q(amount_due__gte=0), name="invoice_amount_due_not_negative"),
        ]
        indexes = [
            models.Index(fields=["status", "grace_ends_at"]),
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["merchant", "period_start"]),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft {self.id}"

    def save(self, *args, **kwargs):
        loaded = getattr(self, "_loaded", None)
        if loaded and loaded["status"] != InvoiceStatus.DRAFT:
            changed = [name for name in self.AMOUNT_FIELDS if loaded[name] != getattr(self, name)]
            if changed:
                raise InvoiceError(f"Invoice {self} is {loaded['status']}: its {', '.join(changed)} cannot change.")
        super().save(*args, **kwargs)
        self._loaded = {name: self.__dict__.get(name) for name in (*self.AMOUNT_FIELDS, "status")}

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = {name: instance.__dict__.get(name) for name in (*cls.AMOUNT_FIELDS, "status")}
        return instance

    @property
    def is_draft(self) -> bool:
        return self.status == InvoiceStatus.DRAFT

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class LineKind(models.TextChoices):
    FEE = "fee", "Fee"
    USAGE = "usage", "Usage"
    CREDIT = "credit", "Proration credit"
    DISCOUNT = "discount", "Discount"
    MINIMUM = "minimum", "Minimum commitment true-up"
    TAX = "tax", "Tax"
    ADJUSTMENT = "adjustment", "Late usage adjustment"
    # Real-time billing: the part of the usage lines already paid from prepaid credit (applied after tax).
    PREPAID = "prepaid", "Paid from prepaid balance"
    COMMITMENT = "commitment", "Commitment shortfall"
    # Receivables: customer credit applied at issue, after tax (like PREPAID: a settlement, not a charge).
    APPLIED_CREDIT = "applied_credit", "Applied credit balance"
    # A line added by hand (``POST /v2/invoices/lineItems``, one-off invoices): a charge or a credit that is
    # taxed like the invoice but takes neither the plan discount nor counts towards the plan minimum.
    MANUAL = "manual", "Manual line"


# Lines after the total: what already settled part of it. Σ charge lines (+ tax when exclusive) = total;
# total + Σ settlement lines = the amount due at issue (when not negative; else carried forward as credit).
SETTLEMENT_LINE_KINDS = (LineKind.PREPAID, LineKind.APPLIED_CREDIT)


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=LineKind.choices)
    price = models.ForeignKey(Price, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(**QUANTITY_DIGITS, null=True, blank=True)
    unit_price = models.DecimalField(**RATE_DIGITS, null=True, blank=True)
    amount = models.DecimalField(**MONEY_DIGITS, help_text="Rounded once to the currency's minor unit.")
    service_start = models.DateTimeField(null=True, blank=True)
    service_end = models.DateTimeField(null=True, blank=True)
    # The rating engine's explanation: {"text": "...", "lines": [{kind, quantity, unit_price, amount, description}]}
    explanation = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["invoice", "position"]

    def __str__(self) -> str:
        return self.description

    def save(self, *args, **kwargs):
        if not Invoice.objects.filter(pk=self.invoice_id, status=InvoiceStatus.DRAFT).exists():
            raise InvoiceError("Lines of an issued invoice cannot change; issue a credit note instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if not Invoice.objects.filter(pk=self.invoice_id, status=InvoiceStatus.DRAFT).exists():
            raise InvoiceError("Lines of an issued invoice cannot be removed; issue a credit note instead.")
        return super().delete(*args, **kwargs)


# Bounds of a manual line (``POST /v2/invoices/lineItems``, one-off invoices); beyond them the API answers 400.
MANUAL_QUANTITY_MAX = Decimal("1000000000")  # 10^9 units
MANUAL_UNIT_PRICE_MAX = Decimal("1000000000")  # |unit price| ≤ 10^9 in the currency
MANUAL_AMOUNT_MAX = Decimal("1000000000000")  # |quantity × unit price| ≤ 10^12 (fits MONEY_DIGITS)


class ManualLineItem(models.Model):
    """A manual line waiting for (or already on) an invoice. Added to a subscription, it is pending
    (``invoice`` null) until the billing run closes the first period ending after ``invoice_at``: that close
    puts it on the recurring invoice and sets ``invoice`` in the same transaction, by an update conditioned
    on ``invoice`` still being null (exactly once). Added to a draft, it is written on the draft at once.

    ``idempotency_key`` is unique per merchant (the caller's key, else a generated one); ``fingerprint``
    is a hash of the request body, so that a replay with another body is refused."""

    id = PublicIdField(prefix="mli")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="manual_line_items")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="manual_line_items")
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="manual_line_items"
    )
    target_invoice = models.BooleanField(
        default=False, help_text="Added to a given draft rather than the next invoice."
    )
    display_name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    item_id = models.CharField(max_length=100, blank=True, help_text="Accounting tag (the client's itemId).")
    currency = models.CharField(max_length=3)
    quantity = models.DecimalField(**QUANTITY_DIGITS)
    unit_price = models.DecimalField(**RATE_DIGITS)
    amount = models.DecimalField(**MONEY_DIGITS, help_text="quantity × unit price, rounded once.")
    invoice_at = models.DateTimeField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    idempotency_key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["invoice_at", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "idempotency_key"], name="manual_line_item_key_unique"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="manual_line_item_quantity_positive"),
        ]
        indexes = [models.Index(fields=["subscription", "invoice"])]

    def __str__(self) -> str:
        return self.display_name


class CreditNoteStatus(models.TextChoices):
    ISSUED = "issued", "Issued"
    VOID = "void", "Void"


class CreditNoteSettlement(models.TextChoices):
    CUSTOMER_CREDIT = "customer_credit", "Customer credit"
    REFUND = "refund", "Refund"


class CreditNote(models.Model):
    """A numbered correction of an issued invoice (full or partial); the invoice's lines and totals never change.

    Its money goes first to what the invoice still owes (``applied_to_due``); the rest, on a paid or partly paid
    invoice, becomes customer credit or is refunded, as finance chose (``settlement``). The three parts add up
    to the total (a check constraint). A refund (the API's ``/refunds``) is a credit note settled by refund."""

    id = PublicIdField(prefix="crn")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=40)
    currency = models.CharField(max_length=3)
    issued_at = models.DateTimeField()
    reason = models.TextField(blank=True)
    subtotal = models.DecimalField(**MONEY_DIGITS)
    tax = models.DecimalField(**MONEY_DIGITS)
    total = models.DecimalField(**MONEY_DIGITS)
    status = models.CharField(max_length=8, choices=CreditNoteStatus.choices, default=CreditNoteStatus.ISSUED)
    settlement = models.CharField(
        max_length=16, choices=CreditNoteSettlement.choices, default=CreditNoteSettlement.CUSTOMER_CREDIT
    )
    applied_to_due = models.DecimalField(**MONEY_DIGITS, default=ZERO, help_text="Taken off the invoice's amount due.")
    credited_to_balance = models.DecimalField(**MONEY_DIGITS, default=ZERO, help_text="Added to customer credit.")
    refunded = models.DecimalField(**MONEY_DIGITS, default=ZERO, help_text="Paid back to the customer.")
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)
    # Exactly once for API-created credit notes and refunds.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "number"], name="credit_note_number_unique"),
            models.CheckConstraint(
                # Round to the column's places: exact on PostgreSQL, and SQLite adds decimals as floats.
                condition=Q(
                    total=Round(
                        F("applied_to_due") + F("credited_to_balance") + F("refunded"), MONEY_DIGITS["decimal_places"]
                    )
                ),
                name="credit_note_settlement_adds_up",
            ),
            models.CheckConstraint(
                condition=Q(applied_to_due__gte=0, credited_to_balance__gte=0, refunded__gte=0),
                name="credit_note_settlement_not_negative",
            ),
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="credit_note_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey(InvoiceLine, on_delete=models.PROTECT, related_name="credit_note_lines")
    description = models.CharField(max_length=500)
    amount = models.DecimalField(**MONEY_DIGITS, help_text="Credited amount, positive, as the line was billed.")

    class Meta:
        ordering = ["credit_note", "id"]

    def __str__(self) -> str:
        return self.description


class DocumentType(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    CREDIT_NOTE = "credit_note", "Credit note"


class DocumentSequence(models.Model):
    """The last number given per merchant, year and document type; locked with SELECT … FOR UPDATE."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    year = models.PositiveIntegerField()
    document_type = models.CharField(max_length=12, choices=DocumentType.choices)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "year", "document_type"], name="one_sequence_per_merchant_year")
        ]

    def __str__(self) -> str:
        return f"{self.document_type} {self.year}: {self.last_number}"


class PlanChangeKind(models.TextChoices):
    UPGRADE = "upgrade", "Upgrade (now, prorated)"
    DOWNGRADE = "downgrade", "Downgrade (at period end)"


class SubscriptionPlanChange(models.Model):
    """A plan change of a subscription: applied at once (upgrade) or scheduled for the period end."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="plan_changes")
    from_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    to_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=PlanChangeKind.choices)
    requested_at = models.DateTimeField()
    effective_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    invoice = models.ForeignKey(Invoice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-effective_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription"],
                condition=Q(applied_at__isnull=True, canceled_at__isnull=True),
                name="one_pending_plan_change_per_subscription",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.from_plan} → {self.to_plan}"


class BillingRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partial: some subscriptions not billed"
    FAILED = "failed", "Failed: no subscription billed"


class BillingRun(models.Model):
    """One closing of billing periods as of ``as_of``; chunks of subscriptions report into it."""

    as_of = models.DateTimeField(help_text="Periods that ended at or before this moment are invoiced.")
    trigger = models.CharField(max_length=20, default="beat")
    requested_by = models.CharField(max_length=150, blank=True, help_text="Who started it from the admin.")
    note = models.TextField(blank=True, help_text="Why it was started by hand (the admin asks).")
    status = models.CharField(max_length=10, choices=BillingRunStatus.choices, default=BillingRunStatus.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    subscriptions_total = models.PositiveIntegerField(default=0)
    subscriptions_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    invoices_created = models.PositiveIntegerField(default=0)
    invoices_skipped = models.PositiveIntegerField(default=0)
    invoices_failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Billing run {self.pk} as of {self.as_of:%Y-%m-%d %H:%M}"

    @property
    def progress_percent(self) -> int:
        if not self.subscriptions_total:
            return 100 if self.finished_at else 0
        return int(100 * self.subscriptions_done / self.subscriptions_total)


class BillingRunChunk(models.Model):
    """One chunk of a run's subscriptions as handed to a worker (invoicing/README.md, "Stalled runs").

    A chunk is *abandoned* when it is neither finished nor abandoned and its last sign of life —
    ``started_at`` (set each time a worker starts it) or, if no worker ever started it, the run's
    ``started_at`` — is older than ``METERLINE_BILLING_RUN_STALL_TIMEOUT``: its worker was killed or its
    message was lost. The next beat pass marks it and closes the run; the next run bills its subscriptions.
    """

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    subscription_ids = models.JSONField(default=list)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    abandoned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="billing_run_chunk_number_unique")]

    def __str__(self) -> str:
        return f"Chunk {self.number} of run {self.run_id}"


class BillingRunError(models.Model):
    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="errors")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField(null=True, blank=True)
    message = models.TextField()
    abandoned = models.BooleanField(
        default=False, help_text="Not billed by this run: its chunk's worker was lost. The next run bills it."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.subscription_id}: {self.message[:80]}"


class RealtimeUsageCounter(models.Model):
    """Running usage of one customer's metric over one usage window, kept by real-time billing.

    Written only under the customer's wallet lock, in the transaction that stores the events it counts
    (``invoicing.realtime``), so "usage before" a request is one indexed row instead of an aggregate over
    the period's events. Only for SUM and COUNT metrics (the increment is computable from the new events
    alone); created from one SQL aggregate the first time it is needed. ``definition`` fingerprints the
    metric's definition (aggregation, event type, value property, filters, start): a counter of an edited
    metric is recomputed. Derived data — the period invoice always aggregates the events themselves.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+", db_index=False)
    metric = models.ForeignKey(BillableMetric, on_delete=models.CASCADE, related_name="+", db_index=False)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    definition = models.CharField(max_length=64)
    usage = models.DecimalField(**QUANTITY_DIGITS)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "window_start", "window_end"], name="realtime_usage_counter_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.metric_id} [{self.window_start:%Y-%m-%d}, {self.window_end:%Y-%m-%d}): {self.usage}"


# Delivery: issued invoices and credit notes e-mailed to the customer (invoicing/README.md, "Delivery").


class MailKind(models.TextChoices):
    INVOICE = "invoice", "Invoice issued"
    CREDIT_NOTE = "credit_note", "Credit note issued"
    REMINDER = "reminder", "Payment reminder (dunning)"
    FINAL_NOTICE = "final_notice", "Final notice (dunning)"


class DeliverySettings(models.Model):
    """How a merchant's documents are e-mailed. A merchant without a row: e-mailed, from the installation's
    ``DEFAULT_FROM_EMAIL`` under the merchant's name, replies going to the merchant's e-mail."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="delivery_settings"
    )
    enabled = models.BooleanField(
        "e-mail documents when issued",
        default=True,
        help_text="Off: issued invoices and credit notes are not e-mailed (a resend from the admin still is).",
    )
    from_name = models.CharField(max_length=200, blank=True, help_text="The sender's name. Empty: the merchant's name.")
    from_email = models.EmailField(
        "from e-mail",
        blank=True,
        help_text="The sender's address. Empty: the installation's DEFAULT_FROM_EMAIL. The mail server or "
        "provider must be allowed to send for its domain (SPF, DKIM), or messages land in spam.",
    )
    reply_to = models.CharField(
        "reply-to",
        max_length=1000,
        blank=True,
        validators=[validate_email_list],
        help_text="Where customers' replies go, comma-separated. Empty: the merchant's e-mail.",
    )
    bcc = models.CharField(
        "BCC",
        max_length=1000,
        blank=True,
        validators=[validate_email_list],
        help_text="A blind copy of every message to these addresses (a finance archive), comma-separated.",
    )
    send_zero_total = models.BooleanField(
        "e-mail zero-total invoices", default=False, help_text="Off: an invoice whose total is zero is not e-mailed."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "delivery settings"
        verbose_name_plural = "delivery settings"

    def __str__(self) -> str:
        return f"Delivery settings of {self.merchant}"


class MailTemplate(models.Model):
    """A merchant's own wording of one e-mail (Django template syntax, rendered in a sandbox with plain
    values only: ``invoicing/mail_templates.py``). Without one, the default on disk is used
    (``invoicing/templates/invoicing/mail/``)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="mail_templates")
    kind = models.CharField(max_length=20, choices=MailKind.choices)
    subject = models.CharField(max_length=300)
    body_text = models.TextField("text body")
    body_html = models.TextField("HTML body")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["merchant", "kind"]
        constraints = [models.UniqueConstraint(fields=["merchant", "kind"], name="mail_template_unique_per_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.merchant})"

    def clean(self) -> None:
        from .mail_templates import mail_template_check

        mail_template_check(subject=self.subject, body_text=self.body_text, body_html=self.body_html)


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    SKIPPED = "skipped", "Not sent"


class DeliveryReason(models.TextChoices):
    ISSUED = "issued", "Issued"
    RESEND = "resend", "Resent"
    # Dunning (``invoicing/dunning.py``): the invoice again, worded as a reminder or the final notice.
    REMINDER = "reminder", "Payment reminder"
    FINAL_NOTICE = "final", "Final notice"


# The mail wording of each delivery reason of an invoice (a credit note is always MailKind.CREDIT_NOTE).
INVOICE_MAIL_KINDS = {
    DeliveryReason.ISSUED: MailKind.INVOICE,
    DeliveryReason.RESEND: MailKind.INVOICE,
    DeliveryReason.REMINDER: MailKind.REMINDER,
    DeliveryReason.FINAL_NOTICE: MailKind.FINAL_NOTICE,
}
DUNNING_REASONS = (DeliveryReason.REMINDER, DeliveryReason.FINAL_NOTICE)


class DocumentDelivery(models.Model):
    """One e-mail of one invoice or credit note: the delivery log.

    Issuing a document writes its ``issued`` row in the issuing transaction (at most one per document: a
    constraint), and the send starts after commit; a resend is a new ``resend`` row. ``status`` goes
    queued → sent (→ bounced, when the mail provider reports it), queued → failed (refused, or after
    ``DELIVERY_MAX_ATTEMPTS``), or queued → skipped (not to be e-mailed: ``error`` says why). While queued,
    ``next_attempt_at`` is when the next attempt is due; a worker sending holds it a lease ahead.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="deliveries")
    credit_note = models.ForeignKey(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="deliveries"
    )
    reason = models.CharField(max_length=10, choices=DeliveryReason.choices)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    recipients = models.JSONField(default=list, blank=True, help_text="Set when the message is sent.")
    sender = models.CharField(max_length=300, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    message_id = models.CharField("Message-ID", max_length=255, blank=True, db_index=True)
    provider_message_id = models.CharField(
        "provider message ID", max_length=255, blank=True, db_index=True, help_text="The mail provider's id, if any."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, help_text="The last error (the SMTP server's answer), or why not sent.")
    requested_by = models.CharField(max_length=150, blank=True, help_text="Who asked for a resend.")
    queued_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        verbose_name_plural = "document deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(invoice__isnull=False, credit_note__isnull=True)
                | Q(invoice__isnull=True, credit_note__isnull=False),
                name="document_delivery_one_document",
            ),
            # Exactly once: issuing a document queues one delivery, whoever retries the issue.
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(reason="issued", invoice__isnull=False),
                name="one_issued_delivery_per_invoice",
            ),
            models.UniqueConstraint(
                fields=["credit_note"],
                condition=Q(reason="issued", credit_note__isnull=False),
                name="one_issued_delivery_per_credit_note",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.document} ({self.get_reason_display().lower()}): {self.get_status_display().lower()}"

    @property
    def document(self) -> Invoice | CreditNote:
        return self.invoice if self.invoice_id else self.credit_note


# -- receivables: payments, their allocations, customer credit (invoicing/RECEIVABLES.md) ---------------------


class PaymentMethod(models.TextChoices):
    CARD = "card", "Card"
    BANK_TRANSFER = "bank_transfer", "Bank transfer"
    CASH = "cash", "Cash"
    CHECK = "check", "Check"
    OUT_OF_BAND = "out_of_band", "Out of band (recorded through the API)"
    OTHER = "other", "Other"


class Payment(models.Model):
    """Money received from a customer, recorded once (``payment_record``) and never edited.

    Its amount is allocated to invoices (``PaymentAllocation``); what no invoice takes (an overpayment) is
    the customer's credit (a ``CustomerCreditEntry`` of kind ``overpayment``), so
    ``amount = Σ allocations + that entry`` always."""

    id = PublicIdField(prefix="pay")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payments")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(**MONEY_DIGITS)
    method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    reference = models.CharField(max_length=200, blank=True, help_text="Bank reference, check number, receipt…")
    received_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    recorded_by = models.CharField(
        max_length=150, blank=True, help_text="user:<username>, api_key:<id>, or empty for the system."
    )
    # Exactly once for API-created payments: a replay with the same key returns the first payment.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-recorded_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="payment_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_method_display()} {format_money(self.amount, self.currency)} ({self.received_at:%Y-%m-%d})"


class PaymentAllocation(models.Model):
    """The part of a payment that settles one invoice (at most one row per payment and invoice)."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payment_allocations")
    amount = models.DecimalField(**MONEY_DIGITS)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_allocation_amount_positive"),
            models.UniqueConstraint(fields=["payment", "invoice"], name="payment_allocation_once_per_invoice"),
        ]

    def __str__(self) -> str:
        return f"{format_money(self.amount, self.payment.currency)} of {self.payment_id} to {self.invoice_id}"


class CustomerCreditKind(models.TextChoices):
    OVERPAYMENT = "overpayment", "Payment beyond the invoices it paid"
    CREDIT_NOTE = "credit_note", "Credit note beyond the amount due"
    NEGATIVE_INVOICE = "negative_invoice", "Negative invoice carried forward"
    APPLIED = "applied", "Applied to an invoice"
    APPLIED_RETURNED = "applied_returned", "Applied credit returned (invoice voided)"
    CREDIT_NOTE_VOIDED = "credit_note_voided", "Credit note voided"


class CustomerCreditEntry(models.Model):
    """One movement of a customer's credit balance in one currency (cash-like credit, like Stripe's customer
    balance; not the prepaid usage wallet of ``wallets``). Append-only: the balance is the sum of the
    entries, and each source moves it at most once (the partial unique constraints below)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_entries")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(**MONEY_DIGITS, help_text="Positive: credit granted; negative: credit used.")
    kind = models.CharField(max_length=20, choices=CustomerCreditKind.choices)
    description = models.CharField(max_length=300)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries")
    credit_note = models.ForeignKey(
        CreditNote, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_entries"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "customer credit entries"
        indexes = [models.Index(fields=["customer", "currency"])]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="customer_credit_entry_not_zero"),
            models.UniqueConstraint(
                fields=["invoice", "kind"], condition=Q(invoice__isnull=False), name="customer_credit_once_per_invoice"
            ),
            models.UniqueConstraint(
                fields=["payment", "kind"], condition=Q(payment__isnull=False), name="customer_credit_once_per_payment"
            ),
            models.UniqueConstraint(
                fields=["credit_note", "kind"],
                condition=Q(credit_note__isnull=False),
                name="customer_credit_once_per_credit_note",
            ),
        ]

    def __str__(self) -> str:
        sign = "+" if self.amount > 0 else ""
        return f"{sign}{format_money(self.amount, self.currency)}: {self.description}"

    def save(self, *args, **kwargs):
        kwargs["force_insert"] = True  # append-only: an entry is never updated
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise InvoiceError("Customer credit entries are never deleted; add a reversing entry.")


# -- dunning: reminders of overdue invoices (invoicing/dunning.py) --------------------------------------------


def validate_dunning_steps(value) -> None:
    """A list of 1 to 10 distinct whole days after the due date, ascending, each from 1 to 365."""
    if not isinstance(value, list) or not all(isinstance(day, int) and not isinstance(day, bool) for day in value):
        raise ValidationError("Give whole days after the due date, e.g. [3, 7, 14].")
    if not 1 <= len(value) <= 10:
        raise ValidationError("Give 1 to 10 reminder days.")
    if any(not 1 <= day <= 365 for day in value):
        raise ValidationError("Each reminder day is from 1 to 365 days after the due date.")
    if value != sorted(set(value)):
        raise ValidationError("Reminder days are distinct and in ascending order, e.g. [3, 7, 14].")


def default_dunning_steps() -> list[int]:
    return [3, 7, 14]


class DunningAfterFinal(models.TextChoices):
    NOTHING = "nothing", "Nothing (keep billing and collecting as usual)"
    MARK_PAST_DUE = "mark_past_due", "Mark the subscription past due"
    BLOCK_USAGE = "block_usage", "Mark the subscription past due and block its real-time usage"


class DunningSettings(models.Model):
    """A merchant's reminder schedule for overdue invoices. A merchant without a row, or with ``enabled`` off,
    sends no reminders (customers are not e-mailed about old invoices the day dunning is deployed)."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="dunning_settings"
    )
    enabled = models.BooleanField("send reminders", default=True)
    steps = models.JSONField(
        "reminder days",
        default=default_dunning_steps,
        validators=[validate_dunning_steps],
        help_text="Days after the due date on which a reminder is e-mailed, ascending, e.g. [3, 7, 14].",
    )
    final_notice_days = models.PositiveSmallIntegerField(
        "final notice day",
        default=30,
        help_text="Days after the due date on which the final notice is e-mailed; after the last reminder day.",
    )
    after_final = models.CharField(
        "after the final notice",
        max_length=16,
        choices=DunningAfterFinal.choices,
        default=DunningAfterFinal.NOTHING,
        help_text=(
            "Past due: the subscription is flagged and still billed. Block: besides, the events of a real-time "
            "subscription are refused (402 USAGE_BLOCKED) until the overdue invoice is paid, credited or voided."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dunning settings"
        verbose_name_plural = "dunning settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(final_notice_days__gte=1, final_notice_days__lte=365),
                name="dunning_final_notice_days_range",
            )
        ]

    def __str__(self) -> str:
        return f"Dunning settings of {self.merchant}"

    def clean(self) -> None:
        if isinstance(self.steps, list) and self.steps and all(isinstance(day, int) for day in self.steps):
            if self.final_notice_days is not None and self.final_notice_days <= max(self.steps):
                raise ValidationError({"final_notice_days": "The final notice comes after the last reminder day."})

    @property
    def schedule(self) -> list[tuple[int, int]]:
        """(step, days after the due date): steps 1…n are the reminders, n + 1 the final notice."""
        days = [*self.steps, self.final_notice_days]
        return [(number, day) for number, day in enumerate(days, start=1)]

    @property
    def final_step(self) -> int:
        return len(self.steps) + 1


class DunningReminderStatus(models.TextChoices):
    QUEUED = "queued", "E-mail queued"
    SKIPPED = "skipped", "Skipped (a later step was due)"


class DunningReminder(models.Model):
    """One step of one invoice's dunning: at most one row per (invoice, step) — a constraint, so a beat
    retry or a second worker cannot send a step twice. Written by ``dunning_reminders_send_due`` only; the
    e-mail itself is the linked delivery (the delivery log says whether it was sent)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="dunning_reminders")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="dunning_reminders")
    step = models.PositiveSmallIntegerField(help_text="1 = the first reminder; the last step is the final notice.")
    days_after_due = models.PositiveSmallIntegerField()
    final = models.BooleanField("final notice", default=False)
    status = models.CharField(max_length=10, choices=DunningReminderStatus.choices)
    delivery = models.OneToOneField(
        DocumentDelivery, on_delete=models.PROTECT, null=True, blank=True, related_name="dunning_reminder"
    )
    action = models.CharField(
        max_length=200, blank=True, help_text="What the final notice set off (the merchant's choice)."
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["invoice", "step"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "step"], name="dunning_reminder_once_per_step"),
            models.CheckConstraint(condition=Q(step__gte=1), name="dunning_reminder_step_positive"),
        ]

    def __str__(self) -> str:
        what = "Final notice" if self.final else f"Reminder {self.step}"
        return f"{what} of {self.invoice} ({self.days_after_due} days after due)"

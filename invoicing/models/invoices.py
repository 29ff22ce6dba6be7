"""Invoices and their lines, and the numbering of issued documents (invoices and credit notes).

An invoice is written in one transaction with its lines; a recurring invoice exists at most once per
(subscription, period start) — a partial unique constraint, not application logic, guarantees it.
Issued invoices never change: the service layer refuses, and ``Invoice.save`` refuses changed amounts
on a row that was loaded in a non-draft state.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from catalog.models import (
    QUANTITY_DIGITS,
    RATE_DIGITS,
    ApiKeyAttributedHistory,
    Customer,
    Merchant,
    Plan,
    Price,
    Subscription,
)
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
    THRESHOLD = "threshold", "Threshold (usage reached the threshold inside the period)"


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
    # The last automatic charge of the invoice failed (set by ``invoice_payment_failed_mark``, from the payments
    # app). A flag beside ``status``, as ``Subscription.past_due_since`` is: the invoice stays open (dunning,
    # overdue and payments work as for any open invoice); the wire shows an open invoice with it as
    # ``PAYMENT_FAILED``. Paying the invoice makes it PAID whatever the flag says.
    payment_failed_at = models.DateTimeField(null=True, blank=True)
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
    # Threshold invoices: 1, 2, … within the subscription's period (``period_start``). The number is taken
    # under the subscription's row lock as one more than the period's last, and a unique constraint makes a
    # second invoice with the same number impossible: each threshold crossing is billed exactly once.
    threshold_sequence = models.PositiveIntegerField(null=True, blank=True, editable=False)
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
                fields=["subscription", "period_start", "threshold_sequence"],
                condition=Q(kind="threshold"),
                name="one_threshold_invoice_per_period_sequence",
            ),
            models.CheckConstraint(
                condition=Q(kind="threshold", threshold_sequence__gte=1) | ~Q(kind="threshold"),
                name="threshold_invoice_has_sequence",
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
    # Threshold billing: the part of a charge an earlier threshold invoice of the period already billed
    # (negative; a charge, before tax: the invoice's total is what is left to bill).
    THRESHOLD_BILLED = "threshold_billed", "Already billed on a threshold invoice"


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

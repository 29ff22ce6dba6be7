"""Receivables: payments, their allocations, customer credit (invoicing/RECEIVABLES.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from catalog.models import Customer, Merchant
from catalog.pricing.currency import format_money
from core.ids import PublicIdField

from .credit_notes import CreditNote
from .invoices import MONEY_DIGITS, Invoice, InvoiceError


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

"""Credit notes and their lines: what an issued invoice gives back (``services.credit_notes``)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Round

from catalog.models import Customer, Merchant
from core.ids import PublicIdField

from .invoices import MONEY_DIGITS, ZERO, Invoice, InvoiceLine


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

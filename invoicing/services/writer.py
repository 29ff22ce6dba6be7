"""The one invoice writer: a composed invoice and its lines become rows (a draft), and a draft is numbered
and issued. Every path that writes an invoice (runs, lifecycle, adjustments, ``one_off_invoices``) goes
through it; the caller holds the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import IntegrityError, transaction

from catalog.models import Plan, Subscription
from core.bulk import rows_insert

from .. import metrics
from ..calculation import (
    ComposedInvoice,
    LineDraft,
)
from ..models import (
    BillingRun,
    DocumentType,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)
from ..receivables import invoice_due_at
from ..receivables.credits import invoice_issued_effects, invoice_settle_at_issue
from ..webhook_events import Endpoints, invoice_created_emit, invoice_issued_emit
from .delivery import document_delivery_queue
from .numbering import invoice_number_format, next_number


def invoice_from_composition(
    composed: ComposedInvoice, *, subscription: Subscription, plan: Plan, run: BillingRun | None = None, **extra
) -> Invoice:
    return Invoice(
        merchant_id=subscription.merchant_id,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        plan=plan,
        kind=composed.kind,
        currency=composed.currency,
        period_start=composed.period_start,
        period_end=composed.period_end,
        tax_behavior=composed.tax_behavior,
        tax_rate=composed.tax_rate,
        subtotal=composed.subtotal,
        tax=composed.tax,
        total=composed.total,
        amount_due=composed.amount_due,
        billing_run=run,
        **extra,
    )


def line_rows(invoice: Invoice, lines: Iterable[LineDraft]) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            price=line.price,
            description=line.description[:500],
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount=line.amount,
            service_start=line.service_start,
            service_end=line.service_end,
            explanation=line.explanation,
        )
        for position, line in enumerate(lines, start=1)
    ]


# The columns ``invoice_lines_insert`` writes, in its rows' order.
LINE_COLUMNS = (
    "invoice",
    "position",
    "kind",
    "price",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "service_start",
    "service_end",
    "explanation",
)


def invoice_lines_insert(invoice: Invoice, lines: Iterable[LineDraft], *, first_position: int = 1) -> None:
    """Write ``lines`` as ``invoice``'s rows, numbered from ``first_position``, in one statement.

    Through ``core.bulk.rows_insert``, not ``bulk_create``: on PostgreSQL its rows go as one JSON document
    dumped by orjson in C, while ``bulk_create``'s text arrays have psycopg escape every quote of every line's JSON explanation
    with a regular expression, a cost that grows with the lines of a dimensional price (one per
    combination; benchmarks/RESULTS.md, session 13)."""
    rows_insert(
        InvoiceLine,
        LINE_COLUMNS,
        [
            (
                invoice.pk,
                position,
                line.kind,
                None if line.price is None else line.price.pk,
                line.description[:500],
                line.quantity,
                line.unit_price,
                line.amount,
                line.service_start,
                line.service_end,
                line.explanation,
            )
            for position, line in enumerate(lines, start=first_position)
        ],
    )


def invoice_insert_or_skip(invoice: Invoice, lines: Iterable[LineDraft]) -> bool:
    """Insert ``invoice`` and its lines; False when the unique constraint says it already exists."""
    try:
        with transaction.atomic():
            invoice.save(force_insert=True)
    except IntegrityError:
        return False
    invoice_lines_insert(invoice, lines)
    invoice_created_emit(invoice=invoice, now=invoice.created_at)
    return True


def invoice_insert(composed: ComposedInvoice, *, subscription: Subscription, plan: Plan, **extra) -> Invoice:
    """Write a composed invoice and its lines as a draft (caller holds the transaction); ``extra``:
    further ``Invoice`` fields (``adjusts``, ``grace_ends_at``, ...)."""
    invoice = invoice_from_composition(composed, subscription=subscription, plan=plan, **extra)
    invoice.save(force_insert=True)
    invoice_lines_insert(invoice, composed.lines)
    invoice_created_emit(invoice=invoice, now=invoice.created_at)
    return invoice


def invoice_issue(invoice: Invoice, *, now: datetime, endpoints: Endpoints = None) -> None:
    """Give a draft its number, due date and amount due (customer credit applied: ``invoicing.receivables``) and
    issue it (caller holds the transaction and the invoice's lock); records ``invoice.issued`` (``endpoints``:
    the merchant's webhook endpoints when the caller loaded them) and e-mails it after commit."""
    year = now.year
    sequence = next_number(merchant=invoice.merchant, year=year, document_type=DocumentType.INVOICE)
    invoice.number = invoice_number_format(merchant=invoice.merchant, year=year, sequence=sequence)
    invoice.status = InvoiceStatus.ISSUED
    invoice.issued_at = now
    invoice.grace_ends_at = None
    invoice.due_at = invoice_due_at(issued_at=now, payment_term_days=invoice.subscription.payment_term_days)
    invoice_settle_at_issue(invoice, now=now)  # customer credit applied, or a negative total carried forward
    invoice.save(
        update_fields=[
            "number",
            "status",
            "issued_at",
            "due_at",
            "grace_ends_at",
            "amount_due",
            "paid_at",
            "updated_at",
        ]
    )
    invoice_issued_effects(invoice, now=now)
    transaction.on_commit(metrics.INVOICES_ISSUED.inc)  # counted once the number is committed
    document_delivery_queue(document=invoice, now=now)
    invoice_issued_emit(invoice=invoice, now=now, endpoints=endpoints)

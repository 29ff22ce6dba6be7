"""Invoice and credit note documents: one HTML template, rendered as a page or as a PDF (xhtml2pdf)."""

from __future__ import annotations

from datetime import timedelta
from io import BytesIO

from django.template.loader import render_to_string

from catalog.periods import local_date

from .models import CreditNote, Invoice, InvoiceStatus, LineKind

DATE = "%b %d, %Y"


def _period(start, end, time_zone: str) -> str:
    """The period's first and last local day, as the customer reads it."""
    first = local_date(start, time_zone)
    last = local_date(end - timedelta(microseconds=1), time_zone)
    return f"{first:%b} {first.day}, {first.year} – {last:%b} {last.day}, {last.year}"


def breakdown_of(explanation: dict, *, text_fallback: bool = True) -> list[str]:
    """The sentences under an invoice line: its explanation's lines, else its text, and the proration.

    The document and the admin show only these sentences, so a line explained by a text alone shows its text.
    The API sends the text in its own field (``explanation``) and asks without the fallback
    (``text_fallback=False``), so that a client showing both fields does not show the text twice."""
    parts = [line["description"] for line in explanation.get("lines", []) if line.get("description")]
    if text_fallback and not parts and explanation.get("text"):
        parts = [explanation["text"]]
    proration = explanation.get("proration")
    if proration:
        # Lines billed before the explanation carried its own text keep the days alone.
        parts.append(
            proration.get("description") or f"Prorated {proration['covered_days']} of {proration['period_days']} days"
        )
    return parts


def period_text(invoice: Invoice) -> str:
    """The invoice's billing period as its customer reads it, e.g. "Jan 1, 2026 – Jan 31, 2026"."""
    return _period(invoice.period_start, invoice.period_end, invoice.customer.time_zone)


# Lines whose amount is computed from a price (quantity × rate, prorated for fees) explain themselves.
EXPLAINED = (LineKind.USAGE, LineKind.FEE, LineKind.CREDIT)


def invoice_context(invoice: Invoice) -> dict:
    lines = [
        {
            "description": line.description,
            "quantity": line.quantity if line.kind in EXPLAINED else None,
            "amount": line.amount,
            "breakdown": breakdown_of(line.explanation) if line.kind in EXPLAINED else [],
        }
        for line in invoice.lines.order_by("position")
        if line.kind != LineKind.TAX
    ]
    meta = [
        ("Invoice number", invoice.number or "— (assigned when issued)"),
        ("Issue date", f"{invoice.issued_at:{DATE}}" if invoice.issued_at else "—"),
        (
            "Due date",
            f"{invoice.due_at:{DATE}}" if invoice.due_at else "—",
        ),
        ("Billing period", _period(invoice.period_start, invoice.period_end, invoice.customer.time_zone)),
        ("Subscription", f"{invoice.subscription.name} ({invoice.subscription_id})"),
        ("Currency", invoice.currency),
    ]
    if invoice.replaces_id:
        meta.append(("Replaces", invoice.replaces.number or invoice.replaces_id))
    if invoice.adjusts_id:
        meta.append(("Adjusts", invoice.adjusts.number or invoice.adjusts_id))
    if invoice.status == InvoiceStatus.VOID and invoice.voided_at:
        meta.append(
            ("Voided", f"{invoice.voided_at:{DATE}}" + (f": {invoice.void_reason}" if invoice.void_reason else ""))
        )
    stamp = {InvoiceStatus.VOID: "VOID", InvoiceStatus.PAID: "PAID"}.get(invoice.status, "")
    return {
        "title": "Invoice",
        "number": invoice.number,
        "status_stamp": stamp,
        "merchant": invoice.merchant,
        "customer": invoice.customer,
        "meta": meta,
        "currency": invoice.currency,
        "lines": lines,
        "subtotal": invoice.subtotal,
        "tax": invoice.tax,
        "tax_rate": invoice.tax_rate,
        "tax_behavior": invoice.tax_behavior,
        "total": invoice.total,
        "amount_due": invoice.amount_due,
        "note": "Usage and fee lines show how each amount was computed; every line is rounded once to the currency's "
        "minor unit and the total is the sum of the lines.",
    }


def credit_note_context(note: CreditNote) -> dict:
    invoice = note.invoice
    return {
        "title": "Credit note",
        "number": note.number,
        "status_stamp": "",
        "merchant": note.merchant,
        "customer": note.customer,
        "meta": [
            ("Credit note number", note.number),
            ("Issue date", f"{note.issued_at:{DATE}}"),
            (
                "Credits invoice",
                f"{invoice.number} ({_period(invoice.period_start, invoice.period_end, invoice.customer.time_zone)})",
            ),
            ("Reason", note.reason or "—"),
        ],
        "currency": note.currency,
        "lines": [
            {"description": f"Credit: {line.description}", "quantity": None, "amount": -line.amount, "breakdown": []}
            for line in note.lines.all()
        ],
        "subtotal": -note.subtotal,
        "tax": -note.tax,
        "tax_rate": invoice.tax_rate,
        "tax_behavior": invoice.tax_behavior,
        "total": -note.total,
        "amount_due": None,
        "note": f"This credit note reduces the amount owed on invoice {invoice.number}.",
    }


def render_html(context: dict) -> str:
    return render_to_string("invoicing/document.html", context)


def html_to_pdf(html: str) -> bytes:
    """A document's HTML (its ``@page`` rule sets the paper) laid out as a PDF by xhtml2pdf; also used by
    reporting's customer statement."""
    from xhtml2pdf import pisa

    buffer = BytesIO()
    result = pisa.CreatePDF(html, dest=buffer, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"The PDF could not be rendered ({result.err} errors)")
    return buffer.getvalue()


def render_pdf(context: dict) -> bytes:
    """The same HTML as the page, laid out as an A4 PDF."""
    return html_to_pdf(render_html(context))


def invoice_html(invoice: Invoice, *, pay_url: str | None = None) -> str:
    """The invoice as a page; ``pay_url`` (the customer's page: ``pay_links.invoice_pay_link``) adds a
    "Pay now" button. The PDF and the admin have none."""
    return render_html({**invoice_context(invoice), "pay_url": pay_url})


def invoice_pdf(invoice: Invoice) -> bytes:
    return render_pdf(invoice_context(invoice))


def credit_note_html(note: CreditNote) -> str:
    return render_html(credit_note_context(note))


def credit_note_pdf(note: CreditNote) -> bytes:
    return render_pdf(credit_note_context(note))


def invoice_filename(invoice: Invoice) -> str:
    return f"{invoice.number or 'draft-' + invoice.id}.pdf"

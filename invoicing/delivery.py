"""What a document e-mail is made of: the customer's signed link, the sandboxed template values, the
message (HTML and text bodies, the PDF attached) and how a send error is classified. Writes are the
services' (``invoicing/services/delivery.py``); this module reads and composes only."""

from __future__ import annotations

import copy
import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.utils import formataddr, make_msgid

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from catalog.pricing.currency import format_money
from catalog.validators import email_list_split

from . import documents
from .mail_templates import mail_render, mail_template_defaults
from .models import (
    INVOICE_MAIL_KINDS,
    CreditNote,
    DeliverySettings,
    DocumentDelivery,
    Invoice,
    MailKind,
    MailTemplate,
)

LINK_SALT = "invoicing.document-link"
_KINDS = {"inv": Invoice, "cn": CreditNote}


# --- The customer's link ------------------------------------------------------------------------------


def document_link_token(document: Invoice | CreditNote) -> str:
    """A signed, timestamped token naming ``document``; ``document_from_token`` accepts it until it is
    ``METERLINE_DOCUMENT_LINK_MAX_AGE_DAYS`` old. Anyone holding it sees that one document, nothing else."""
    kind = "inv" if isinstance(document, Invoice) else "cn"
    return signing.dumps({"k": kind, "id": document.pk}, salt=LINK_SALT, compress=True)


def document_from_token(token: str) -> Invoice | CreditNote | None:
    """The document a valid, unexpired token names; None for anything else (tampered, expired, unknown)."""
    max_age = settings.METERLINE_DOCUMENT_LINK_MAX_AGE_DAYS * 86400
    try:
        payload = signing.loads(token, salt=LINK_SALT, max_age=max_age)
        model = _KINDS[payload["k"]]
        related = ("merchant", "customer", "subscription") if model is Invoice else ("merchant", "customer", "invoice")
        return model.objects.select_related(*related).get(pk=payload["id"])
    except (signing.BadSignature, KeyError, TypeError, ValueError, Invoice.DoesNotExist, CreditNote.DoesNotExist):
        return None


def document_links(document: Invoice | CreditNote) -> tuple[str, str]:
    """The absolute view and PDF links of ``document`` for its customer (``METERLINE_PUBLIC_URL``)."""
    token = document_link_token(document)
    base = settings.METERLINE_PUBLIC_URL
    return (
        base + reverse("document-public", args=[token]),
        base + reverse("document-public-pdf", args=[token]),
    )


# --- The message ----------------------------------------------------------------------------------------


def mail_context(document: Invoice | CreditNote, *, now: datetime | None = None) -> dict[str, str]:
    """The plain values a mail template of ``document``'s kind may use (``MAIL_VARIABLES``); with ``now``,
    an invoice's also say how many days it is overdue (the reminders')."""
    view_url, pdf_url = document_links(document)
    common = {
        "number": document.number or "",
        "merchant_name": document.merchant.name,
        "customer_name": document.customer.name,
        "currency": document.currency,
        "issue_date": f"{document.issued_at:{documents.DATE}}" if document.issued_at else "",
        "view_url": view_url,
        "pdf_url": pdf_url,
    }
    if isinstance(document, Invoice):
        due = document.due_at
        values = common | {
            "total": format_money(document.total, document.currency),
            "amount_due": format_money(document.amount_due, document.currency),
            "due_date": f"{due:{documents.DATE}}" if due else "",
            "period": documents.period_text(document),
        }
        if now is not None and due is not None:
            values["days_overdue"] = str(max((now - due).days, 0))
        return values
    return common | {
        "amount": format_money(document.total, document.currency),
        "invoice_number": document.invoice.number or "",
        "reason": document.reason,
    }


@dataclass(frozen=True)
class Sender:
    from_email: str
    reply_to: list[str]
    bcc: list[str]


def merchant_sender(merchant, delivery_settings: DeliverySettings | None) -> Sender:
    """Who a merchant's documents come from: its configured sender, else the installation's address under
    the merchant's name; replies to the configured addresses, else the merchant's e-mail."""
    name = (delivery_settings.from_name if delivery_settings else "") or merchant.name
    address = (delivery_settings.from_email if delivery_settings else "") or settings.DEFAULT_FROM_EMAIL
    reply_to = email_list_split(delivery_settings.reply_to) if delivery_settings else []
    if not reply_to and merchant.email:
        reply_to = [merchant.email]
    bcc = email_list_split(delivery_settings.bcc) if delivery_settings else []
    return Sender(from_email=formataddr((name, address)), reply_to=reply_to, bcc=bcc)


def delivery_message(delivery: DocumentDelivery, *, recipients: list[str], sender: Sender) -> EmailMultiAlternatives:
    """The e-mail of ``delivery`` to ``recipients``: the merchant's template (else the default) rendered for
    its document, text and HTML alternatives, the document's PDF attached, a Message-ID of our own. The
    BCC addresses get their own copy (``archive_copy``)."""
    document = delivery.document
    kind = INVOICE_MAIL_KINDS[delivery.reason] if delivery.invoice_id else MailKind.CREDIT_NOTE
    template = MailTemplate.objects.filter(merchant_id=delivery.merchant_id, kind=kind).first()
    parts = (
        {"subject": template.subject, "body_text": template.body_text, "body_html": template.body_html}
        if template
        else mail_template_defaults(kind)
    )
    # A reminder says how overdue the invoice was when dunning queued it (a retry later says the same).
    # Values the queueing service gave (a payment's failure reason) complete the document's own.
    context = mail_context(document, now=delivery.queued_at) | {k: str(v) for k, v in delivery.values.items()}
    rendered = mail_render(**parts, context=context)
    if isinstance(document, Invoice):
        pdf, filename = documents.invoice_pdf(document), documents.invoice_filename(document)
    else:
        pdf, filename = documents.credit_note_pdf(document), f"{document.number}.pdf"
    domain = sender.from_email.rpartition("@")[2].rstrip(">") or "meterline.local"
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.body_text,
        from_email=sender.from_email,
        to=recipients,
        reply_to=sender.reply_to,
        headers={
            "Message-ID": make_msgid(idstring=f"dlv{delivery.pk}", domain=domain),
            # Tell auto-responders this is a transactional notice, not a conversation to answer.
            "Auto-Submitted": "auto-generated",
            "X-Meterline-Document": document.pk,
        },
    )
    message.attach_alternative(rendered.body_html, "text/html")
    message.attach(filename, pdf, "application/pdf")
    return message


def archive_copy(message: EmailMultiAlternatives, bcc: list[str]) -> EmailMultiAlternatives:
    """The same message for the merchant's BCC addresses, sent on its own after the customer's: a refusal
    of the customer's addresses is then the SMTP error of the customer's message, never hidden by an
    accepted archive address (a server refusing some recipients of one message does not raise)."""
    archive = copy.copy(message)
    archive.to, archive.cc, archive.bcc = list(bcc), [], []
    domain = message.extra_headers["Message-ID"].rpartition("@")[2].rstrip(">")
    archive.extra_headers = {
        **message.extra_headers,
        "Message-ID": make_msgid(idstring="copy", domain=domain),
        "X-Meterline-Copy-Of": ", ".join(message.to),
    }
    return archive


# --- Send errors ----------------------------------------------------------------------------------------


def send_error_text(error: Exception) -> str:
    """The error as finance reads it in the delivery log: the SMTP server's code and answer when it gave one."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{address}: {code} {_text(answer)}" for address, (code, answer) in error.recipients.items()
        ) or str(error)
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def send_error_is_permanent(error: Exception) -> bool:
    """True when retrying cannot help: every recipient refused, or a 5xx answer to the message (a 4xx
    answer, a dropped connection or an unreachable server is worth retrying)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return 500 <= error.smtp_code < 600 and not isinstance(error, smtplib.SMTPAuthenticationError)
    # django-anymail (when configured): the provider refused every recipient.
    return type(error).__name__ == "AnymailRecipientsRefused"


def _text(answer) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)

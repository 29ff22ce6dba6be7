"""The customer's pages: an invoice or credit note opened from the link of its e-mail, without a login.

The link carries a signed, timestamped token (``invoicing.delivery.document_link_token``) that names one
document; a tampered, unknown or expired token answers 404, like a page that does not exist. Read-only.
The token is the only secret: the answers are never cached by shared caches, never indexed, and never
sent on as a Referer.
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.views.decorators.http import require_safe

from . import documents
from .delivery import document_from_token
from .models import Invoice
from .pay_links import invoice_pay_link


def _private(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _document(token: str):
    document = document_from_token(token)
    if document is None:
        raise Http404("No such document, or the link has expired.")
    return document


@require_safe
def document_public(request, token: str) -> HttpResponse:
    document = _document(token)
    if isinstance(document, Invoice):
        return _private(HttpResponse(documents.invoice_html(document, pay_url=invoice_pay_link(document))))
    return _private(HttpResponse(documents.credit_note_html(document)))


@require_safe
def document_public_pdf(request, token: str) -> HttpResponse:
    document = _document(token)
    if isinstance(document, Invoice):
        pdf, filename = documents.invoice_pdf(document), documents.invoice_filename(document)
    else:
        pdf, filename = documents.credit_note_pdf(document), f"{document.number}.pdf"
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return _private(response)

"""The wording of customer e-mails: Django template syntax, rendered in a sandbox.

Merchants edit their templates in the admin (``MailTemplate``); without one, the default files of
``invoicing/templates/invoicing/mail/`` are used. Templates are rendered by an engine of their own, not the
site's: no template loaders, no ``{% load %}``, ``{% include %}``, ``{% extends %}``, ``{% url %}`` or
``{% debug %}`` — only the tags below and Django's built-in filters — and the context holds plain strings
only (``MAIL_VARIABLES``), never a model, so a template can reach nothing but the values it is given. The
HTML body is autoescaped; the subject and text body are not (they are not HTML).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.template import Context, Engine, Library, TemplateSyntaxError, defaulttags

DEFAULTS_DIR = Path(__file__).resolve().parent / "templates" / "invoicing" / "mail"

# The variables every template may use, by e-mail kind (the admin lists them beside the editor).
MAIL_VARIABLES = {
    "invoice": {
        "number": "the invoice number",
        "merchant_name": "your name, as on the invoice",
        "customer_name": "the customer's name",
        "total": "the invoice total, e.g. $1,234.50",
        "amount_due": "the amount due",
        "currency": "the currency code, e.g. USD",
        "issue_date": "e.g. Feb 01, 2026",
        "due_date": "e.g. Mar 03, 2026",
        "period": "the billing period, e.g. Jan 1, 2026 – Jan 31, 2026",
        "view_url": "the customer's link to the invoice (no login; it expires)",
        "pdf_url": "the link to its PDF",
    },
    "reminder": {},  # the invoice's, and days_overdue (filled in below)
    "final_notice": {},
    "credit_note": {
        "number": "the credit note number",
        "merchant_name": "your name",
        "customer_name": "the customer's name",
        "amount": "the credited amount, e.g. $120.00",
        "currency": "the currency code",
        "issue_date": "e.g. Feb 01, 2026",
        "invoice_number": "the number of the invoice it credits",
        "reason": "the reason given, may be empty",
        "view_url": "the customer's link to the credit note (no login; it expires)",
        "pdf_url": "the link to its PDF",
    },
}

_DUNNING_VARIABLES = {**MAIL_VARIABLES["invoice"], "days_overdue": "how many days the invoice is overdue, e.g. 7"}
MAIL_VARIABLES["reminder"] = MAIL_VARIABLES["final_notice"] = _DUNNING_VARIABLES
# A charge of the invoice through the payment provider (the payments app fills these in when it queues one).
MAIL_VARIABLES["payment_failed"] = {
    **MAIL_VARIABLES["invoice"],
    "failure_reason": "why the charge failed, in plain words, e.g. Your card has insufficient funds.",
    "payment_method": "the card or account charged, e.g. Visa •••• 4242 (may be empty)",
    "next_retry_date": "when the card is charged again, e.g. Mar 06, 2026 (empty after the last try)",
}
MAIL_VARIABLES["payment_action"] = {
    **MAIL_VARIABLES["invoice"],
    "payment_method": "the card or account charged, e.g. Visa •••• 4242",
}
MAIL_VARIABLES["payment_link"] = {
    **MAIL_VARIABLES["invoice"],
    "payment_url": "the payment provider's page where the customer pays the amount due (open 24 hours)",
    "payment_url_expires": "when that page closes, e.g. Mar 02, 2026 12:00 UTC",
}

# Tags a mail template may use: control flow and text shaping only.
SAFE_TAGS = ("if", "for", "with", "firstof", "cycle", "spaceless", "comment", "verbatim", "autoescape", "filter")
register = Library()
register.tags.update({name: defaulttags.register.tags[name] for name in SAFE_TAGS})


class SandboxEngine(Engine):
    # Engine adds Django's default tags (load, include, url, debug…) to every engine's builtins: none here.
    default_builtins = ["django.template.defaultfilters"]


def _engine(*, autoescape: bool) -> Engine:
    return SandboxEngine(
        dirs=[],
        app_dirs=False,
        loaders=[],
        libraries={},
        builtins=[__name__],
        autoescape=autoescape,
        string_if_invalid="",
        debug=False,
    )


_TEXT = _engine(autoescape=False)
_HTML = _engine(autoescape=True)


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    body_text: str
    body_html: str


def mail_template_defaults(kind: str) -> dict[str, str]:
    """The default subject, text and HTML body of ``kind`` (files under ``DEFAULTS_DIR``)."""
    return {
        "subject": (DEFAULTS_DIR / f"{kind}_subject.txt").read_text().strip(),
        "body_text": (DEFAULTS_DIR / f"{kind}_body.txt").read_text(),
        "body_html": (DEFAULTS_DIR / f"{kind}_body.html").read_text(),
    }


def mail_render(*, subject: str, body_text: str, body_html: str, context: dict[str, str]) -> RenderedMail:
    """Render the three parts with ``context`` (plain strings only); the subject becomes one line."""
    values = {key: str(value) for key, value in context.items()}
    rendered_subject = _TEXT.from_string(subject).render(Context(values, autoescape=False))
    return RenderedMail(
        subject=" ".join(rendered_subject.split())[:300],
        body_text=_TEXT.from_string(body_text).render(Context(values, autoescape=False)),
        body_html=_HTML.from_string(body_html).render(Context(values)),
    )


def mail_template_check(*, subject: str, body_text: str, body_html: str) -> None:
    """Raise ``ValidationError`` by field for a part that does not compile in the sandbox."""
    errors = {}
    for field, source, engine in (
        ("subject", subject, _TEXT),
        ("body_text", body_text, _TEXT),
        ("body_html", body_html, _HTML),
    ):
        try:
            engine.from_string(source or "")
        except TemplateSyntaxError as error:
            errors[field] = f"Not a valid template: {error}. Tags allowed: {', '.join(SAFE_TAGS)}."
    if errors:
        raise ValidationError(errors)

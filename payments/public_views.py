"""The customer's pay pages, without a login.

``invoice_pay``: the invoice's long-lived pay link (signed, 30 days: the subscription's ``checkoutUrl`` for
Invoice 0, the document page's "Pay now"). A visit (GET) shows what is due with a *Pay* button and calls
nobody: a mail scanner or a link preview opening the link opens no Stripe session. The button (POST) opens
a fresh Checkout Session for what is due then (Stripe's sessions end after 24 hours) and sends the customer
there; an invoice paid, void or without a connected provider answers a page that says so, on either method. ``checkout_return``: where Stripe sends the customer back;
it asks Stripe how the session stands and records the payment at once (the webhook may come later), then
shows "Paid" or goes on to the merchant's success address. A tampered or expired token is a 404.
"""

from __future__ import annotations

import logging

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_safe

from .checkout import (
    CheckoutRefused,
    checkout_session_refresh,
    invoice_checkout_create,
    invoice_checkout_refusal,
    invoice_from_pay_token,
    session_from_return_token,
)
from .errors import PaymentsNotConnected
from .models import PaymentSessionStatus
from .providers import PaymentProviderError
from .selectors import integration_active

logger = logging.getLogger(__name__)


def _private(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _page(
    request, *, invoice, heading: str, message: str, status: int = 200, paid: bool = False, pay_button: bool = False
) -> HttpResponse:
    html = render_to_string(
        "payments/pay_result.html",
        {"invoice": invoice, "heading": heading, "message": message, "paid": paid, "pay_button": pay_button},
        request=request,
    )
    return _private(HttpResponse(html, status=status))


def _unpayable_page(request, invoice, refusal: CheckoutRefused) -> HttpResponse:
    if refusal.code == "INVOICE_ALREADY_PAID":
        return _page(request, invoice=invoice, heading="Paid", message="This invoice is paid. Thank you.", paid=True)
    return _page(request, invoice=invoice, heading="Nothing to pay", message="This invoice cannot be paid online.")


def _unavailable_page(request, invoice) -> HttpResponse:
    return _page(
        request,
        invoice=invoice,
        heading="Online payment unavailable",
        message=f"Please contact {invoice.merchant.name} to pay this invoice.",
    )


@require_http_methods(["GET", "HEAD", "POST"])
def invoice_pay(request, token: str) -> HttpResponse:
    invoice = invoice_from_pay_token(token)
    if invoice is None:
        raise Http404("No such invoice, or the link has expired.")
    if request.method != "POST":
        refusal = invoice_checkout_refusal(invoice)
        if refusal is not None:
            return _unpayable_page(request, invoice, refusal)
        if integration_active(merchant_id=invoice.merchant_id) is None:
            return _unavailable_page(request, invoice)
        return _page(
            request,
            invoice=invoice,
            heading="Pay invoice",
            message="You pay on Stripe's secure page.",
            pay_button=True,
        )
    try:
        session = invoice_checkout_create(invoice=invoice, now=timezone.now())
    except CheckoutRefused as refusal:
        return _unpayable_page(request, invoice, refusal)
    except PaymentsNotConnected:
        return _unavailable_page(request, invoice)
    except PaymentProviderError as error:
        logger.warning("pay link of invoice %s: %s (%s)", invoice.pk, error.message, error.code)
        return _page(
            request,
            invoice=invoice,
            heading="Please try again",
            message="The payment page could not be opened just now. Please try again in a few minutes.",
            status=502,
            pay_button=True,
        )
    return _private(HttpResponseRedirect(session.url, status=303))


@require_safe
def checkout_return(request, token: str) -> HttpResponse:
    session = session_from_return_token(token)
    if session is None or session.invoice is None:
        raise Http404("No such payment, or the link has expired.")
    try:
        session = checkout_session_refresh(session=session, now=timezone.now())
    except PaymentProviderError as error:
        logger.warning("return from checkout %s: %s (%s)", session.pk, error.message, error.code)
    if session.status == PaymentSessionStatus.COMPLETED:
        if session.success_redirect_url:
            return _private(HttpResponseRedirect(session.success_redirect_url, status=303))
        return _page(
            request, invoice=session.invoice, heading="Paid", message="Thank you: your payment was received.", paid=True
        )
    if session.status == PaymentSessionStatus.PROCESSING:
        return _page(
            request,
            invoice=session.invoice,
            heading="Payment processing",
            message="Your payment is on its way; the invoice is marked paid when it arrives.",
        )
    return _page(
        request,
        invoice=session.invoice,
        heading="Not paid",
        message="The payment was not completed. You can open the payment page again from the invoice's link.",
    )

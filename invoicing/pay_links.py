"""Where the customer pays an invoice online: an extension point, filled from above.

Invoicing has no payment provider: ``payments`` sits above it and invoicing may not import it (the layer
contract). What invoicing shows a customer (the "Pay now" button of the document page, the subscription's
``checkoutUrl`` for Invoice 0) asks ``invoice_pay_link``, and the payments app registers the function that
answers at start-up (``PaymentsConfig.ready``). Without one, or when it answers None (no provider connected,
nothing due), there is no online payment: the pages say so and finance records payments out of band."""

from __future__ import annotations

from collections.abc import Callable

from .models import Invoice

PayLink = Callable[[Invoice], str | None]

_pay_link: PayLink | None = None


def invoice_pay_link_register(pay_link: PayLink | None) -> None:
    """Set (or, with None, remove) the function that answers ``invoice_pay_link``."""
    global _pay_link
    _pay_link = pay_link


def invoice_pay_link(invoice: Invoice) -> str | None:
    """A long-lived link where the customer pays ``invoice`` online; None when it cannot be paid online."""
    return _pay_link(invoice) if _pay_link is not None else None

"""Invoicing's refund views (``createInvoiceRefund``, ``voidInvoiceRefund``) with payments' services: a refund
of card payments goes back through the provider, and a refund sent to the provider cannot be voided. Routed
by ``billing_site/api_urls.py`` before invoicing's routes for the same paths; the wire is invoicing's."""

from __future__ import annotations

from invoicing.api import refunds

from .. import refunds as services


class InvoiceRefundCollectionApi(refunds.InvoiceRefundCollectionApi):
    def refund_create(self, **kwargs):
        return services.invoice_refund_create(**kwargs)


class InvoiceRefundVoidApi(refunds.InvoiceRefundVoidApi):
    def refund_void(self, **kwargs):
        return services.refund_void(**kwargs)

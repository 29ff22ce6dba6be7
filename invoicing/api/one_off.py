"""``POST /v2/invoices/oneOff`` (Meterline extension): a one-off invoice for a customer, issued at once
(invoicing.one_off_invoices.one_off_invoice_create)."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from catalog.models import Customer
from invoicing.one_off_invoices import one_off_invoice_create
from invoicing.services.manual_lines import (
    ManualLineConflict,
    ManualLineError,
    ManualLineInput,
    idempotency_key_choose,
)

from . import serializers as s
from .common import CONFLICT, ERRORS, BillingApi, conflict, subscription_or_404
from .invoices import invoice_body
from .manual_lines import BOUNDS, OneOffInvoiceInput


class OneOffInvoiceApi(BillingApi):
    @extend_schema(
        operation_id="createOneOffInvoice",
        tags=["invoices"],
        parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
        request=OneOffInvoiceInput,
        responses={201: s.InvoiceOutput, 200: s.InvoiceOutput, **ERRORS, **CONFLICT},
        description="Meterline extension: invoice a customer at once for set-up work, add-ons or credits (a "
        "negative unitPrice, e.g. an SLA credit): kind one_off, filed under subscriptionId (else the customer's "
        "latest subscription in currency), taxed at its rate with its plan's tax behaviour, numbered and issued; a "
        "negative total becomes customer credit. Lines explain themselves (quantity × unit price). Idempotent by "
        "the Idempotency-Key header, else idempotencyKey (a replay answers 200 with the first invoice, another "
        "body 409 IDEMPOTENCY_KEY_REUSED). 409 NO_BILLING_SUBSCRIPTION. Per line: " + BOUNDS,
    )
    def post(self, request):
        data = self.body(OneOffInvoiceInput)
        customer = Customer.objects.filter(merchant=self.merchant, pk=data["customerId"]).first()
        if customer is None:
            raise exceptions.NotFound("No such customer.")
        subscription = None
        if data.get("subscriptionId"):
            subscription = subscription_or_404(self.merchant, data["subscriptionId"])
        try:
            key = idempotency_key_choose(header=request.headers.get("Idempotency-Key"), body=data.get("idempotencyKey"))
            result = one_off_invoice_create(
                customer=customer,
                currency=data["currency"].upper(),
                subscription=subscription,
                idempotency_key=key,
                now=timezone.now(),
                lines=[
                    ManualLineInput(
                        display_name=line["displayName"],
                        description=line.get("description") or "",
                        item_id=line.get("itemId") or "",
                        currency=data["currency"].upper(),
                        quantity=line["quantity"],
                        unit_price=line["unitPrice"],
                        period_start=line.get("periodStart"),
                        period_end=line.get("periodEnd"),
                    )
                    for line in data["lines"]
                ],
            )
        except ManualLineError as error:
            raise exceptions.ValidationError({error.field: [str(error)]}) from None
        except ManualLineConflict as error:
            raise conflict(str(error), error.code) from None
        return Response(invoice_body(request, result.invoice), status=200 if result.replayed else 201)

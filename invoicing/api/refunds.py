"""Refunds of invoices (the client's ``createInvoiceRefund``, ``listInvoiceRefunds``, ``voidInvoiceRefund``):
a refund is a credit note (``crn_*``) settled by refund. Full-only in the client; the body's ``amount`` (the
pre-tax amount to refund) is our extension for a partial refund, and an ``Idempotency-Key`` header makes a
create exactly once. Views parse, call ``invoicing.services`` and answer with the client's shapes."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from catalog.api.fields import money_string
from catalog.api.views import CatalogApi
from core.api.errors import ApiError
from core.api.serializers import ErrorOutput
from core.formatting import iso_utc
from invoicing import services
from invoicing.models import CreditNote, CreditNoteSettlement, CreditNoteStatus, Invoice, InvoiceError

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}


class RefundCreateInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    amount = serializers.DecimalField(
        max_digits=20, decimal_places=4, required=False, help_text="Meterline extension: a partial refund (pre-tax)."
    )


class RefundVoidInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class RefundOutput(serializers.Serializer):
    object = serializers.CharField()
    id = serializers.CharField()
    invoiceId = serializers.CharField()
    merchantId = serializers.CharField()
    amount = serializers.CharField()
    taxAmount = serializers.CharField()
    total = serializers.CharField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=["ISSUED", "VOIDED"])
    externalCreditNoteId = serializers.CharField()
    createdAt = serializers.DateTimeField()
    permalink = serializers.CharField(allow_null=True)
    pdfUrl = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    voidedAt = serializers.DateTimeField(allow_null=True)


def refund_body(note: CreditNote) -> dict:
    return {
        "object": "invoice_refund",
        "id": note.pk,
        "invoiceId": note.invoice_id,
        "merchantId": note.merchant_id,
        "amount": money_string(note.subtotal, note.currency),
        "taxAmount": money_string(note.tax, note.currency),
        "total": money_string(note.total, note.currency),
        "currency": note.currency,
        "status": "VOIDED" if note.status == CreditNoteStatus.VOID else "ISSUED",
        "externalCreditNoteId": note.number,  # no tax provider: our credit note number
        "createdAt": iso_utc(note.issued_at),
        "permalink": None,
        "pdfUrl": None,
        "reason": note.reason or None,
        "voidedAt": iso_utc(note.voided_at),
    }


def _bad_request(error: InvoiceError) -> ApiError:
    return ApiError(str(error), status_code=status.HTTP_400_BAD_REQUEST, code="INVOICE_REFUND_REFUSED")


class RefundApi(CatalogApi):
    """``refund_create``/``refund_void`` are the services the views call: a higher layer composing the routes
    (``billing_site/api_urls.py``) subclasses the views to refund card payments through the provider too."""

    def refund_create(self, **kwargs) -> CreditNote:
        return services.invoice_refund_create(**kwargs)

    def refund_void(self, **kwargs) -> CreditNote:
        return services.credit_note_void(**kwargs)

    def invoice(self, invoice_id: str) -> Invoice:
        try:
            return Invoice.objects.select_related("merchant").get(pk=invoice_id, merchant=self.merchant)
        except Invoice.DoesNotExist:
            raise exceptions.NotFound("No such invoice.") from None


class InvoiceRefundCollectionApi(RefundApi):
    @extend_schema(
        operation_id="listInvoiceRefunds",
        tags=["invoices"],
        responses={200: RefundOutput(many=True), **ERRORS},
        description="The invoice's refunds (credit notes settled by refund), voided ones included, oldest first.",
    )
    def get(self, request, id: str):
        invoice = self.invoice(id)
        notes = invoice.credit_notes.filter(settlement=CreditNoteSettlement.REFUND).order_by("issued_at", "number")
        return Response({"object": "list", "data": [refund_body(note) for note in notes]})

    @extend_schema(
        operation_id="createInvoiceRefund",
        tags=["invoices"],
        request=RefundCreateInput,
        responses={201: RefundOutput, **ERRORS},
        description="Refund a PAID invoice in full (subtotal + tax); the invoice stays PAID. A second full refund, "
        "or a refund of an unpaid invoice, is 400. Extension: `amount` refunds part of the pre-tax amount. "
        "`Idempotency-Key` makes the create exactly once (a replay answers the first refund).",
    )
    def post(self, request, id: str):
        invoice = self.invoice(id)
        data = self.body(RefundCreateInput)
        amount = data.get("amount")
        try:
            note = self.refund_create(
                invoice=invoice,
                now=timezone.now(),
                reason=data.get("reason", ""),
                amount=Decimal(amount) if amount is not None else None,
                idempotency_key=request.headers.get("Idempotency-Key") or None,
            )
        except InvoiceError as error:
            raise _bad_request(error) from None
        return Response(refund_body(note), status=status.HTTP_201_CREATED)


class InvoiceRefundVoidApi(RefundApi):
    @extend_schema(
        operation_id="voidInvoiceRefund",
        tags=["invoices"],
        request=RefundVoidInput,
        responses={200: RefundOutput, **ERRORS},
        description="Void a refund: the credit note is voided (its number stays used); voiding twice is 400.",
    )
    def post(self, request, id: str, refund_id: str):
        invoice = self.invoice(id)
        data = self.body(RefundVoidInput)
        try:
            note = invoice.credit_notes.get(pk=refund_id, settlement=CreditNoteSettlement.REFUND)
        except CreditNote.DoesNotExist:
            raise exceptions.NotFound("No such refund.") from None
        try:
            note = self.refund_void(credit_note=note, now=timezone.now(), reason=data.get("reason", ""))
        except InvoiceError as error:
            raise _bad_request(error) from None
        return Response(refund_body(note))

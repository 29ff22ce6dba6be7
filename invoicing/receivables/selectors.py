"""Reads of receivables: what was paid on invoices, a customer's payments."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from catalog.pricing import round_money

from ..models import MONEY_DIGITS, Invoice, PaymentAllocation


def amount_paid_expression():
    """Σ of the payments allocated to the row's invoice (a correlated subquery: it does not multiply rows
    joined elsewhere in the query), 0 when none."""
    paid = (
        PaymentAllocation.objects.filter(invoice=OuterRef("pk"))
        .order_by()
        .values("invoice")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    return Coalesce(Subquery(paid), Value(Decimal(0)), output_field=DecimalField(**MONEY_DIGITS))


def invoices_with_amount_paid(queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """``queryset`` annotated with ``amount_paid``."""
    return queryset.annotate(amount_paid=amount_paid_expression())


def invoice_amount_paid(*, invoice: Invoice) -> Decimal:
    total = PaymentAllocation.objects.filter(invoice=invoice).aggregate(s=Sum("amount"))["s"]
    return round_money(total or Decimal(0), invoice.currency)  # SQLite sums decimals as floats

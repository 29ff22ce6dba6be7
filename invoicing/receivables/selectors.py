"""Reads of receivables: what was paid on invoices, a customer's payments, and dunning's state on the customer
page (past-due subscriptions, reminders sent)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import DecimalField, Exists, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from catalog.models import Customer, Subscription
from catalog.pricing import round_money

from ..models import MONEY_DIGITS, DunningReminder, Invoice, PaymentAllocation


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


def subscriptions_past_due_for_customer(*, customer: Customer) -> list[Subscription]:
    """The customer's subscriptions dunning marked past due (and perhaps blocked), oldest mark first."""
    return list(
        Subscription.objects.filter(customer=customer, past_due_since__isnull=False)
        .select_related("plan")
        .order_by("past_due_since", "pk")
    )


def customers_with_dunning_flag(customers: QuerySet[Customer]) -> QuerySet[Customer]:
    """``customers`` annotated with ``has_dunning_reminders`` (an EXISTS in their own query): a page reads
    ``dunning_reminders_for_customer`` only for a customer who was ever reminded."""
    return customers.annotate(has_dunning_reminders=Exists(DunningReminder.objects.filter(customer=OuterRef("pk"))))


def dunning_reminders_for_customer(*, customer: Customer, limit: int = 20) -> list[DunningReminder]:
    """The customer's most recent dunning steps (sent and skipped), newest first, with their invoice and e-mail."""
    return list(
        DunningReminder.objects.filter(customer=customer)
        .select_related("invoice", "delivery")
        .order_by("-created_at", "-step")[:limit]
    )

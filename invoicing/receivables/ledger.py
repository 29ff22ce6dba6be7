"""Customer credit: a balance per customer and currency, the sum of append-only ``CustomerCreditEntry`` rows.

It is cash-like credit the customer holds with the merchant (an overpayment, a credit note beyond what was
due, a negative invoice), applied to the next invoices at issue. It is not the prepaid wallet of
``wallets`` (usage credit bought in advance and burnt by usage in real time)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, OuterRef, QuerySet, Sum

from catalog.models import Customer
from catalog.pricing import round_money

from ..models import CreditNote, CustomerCreditEntry, Invoice, Payment


def customer_credit_balance(*, customer_id: str, currency: str) -> Decimal:
    """The customer's credit in ``currency`` (never negative)."""
    total = CustomerCreditEntry.objects.filter(customer_id=customer_id, currency=currency).aggregate(s=Sum("amount"))
    # every entry is in minor units: rounding the sum only undoes SQLite's floating-point SUM
    return round_money(total["s"] or Decimal(0), currency)


def customer_credit_balances(*, customer_id: str) -> dict[str, Decimal]:
    """Every currency the customer has had credit in, with its balance (zero balances included)."""
    rows = (
        CustomerCreditEntry.objects.filter(customer_id=customer_id)
        .values("currency")
        .annotate(s=Sum("amount"))
        .order_by("currency")
    )
    return {row["currency"]: round_money(row["s"], row["currency"]) for row in rows}


def customers_with_credit_flag(customers: QuerySet[Customer]) -> QuerySet[Customer]:
    """``customers`` annotated with ``has_customer_credit`` (an EXISTS in their own query): a page reads
    ``customer_credit_balances`` only for a customer who ever had credit."""
    return customers.annotate(has_customer_credit=Exists(CustomerCreditEntry.objects.filter(customer=OuterRef("pk"))))


def credit_entry_add(
    *,
    merchant_id: str,
    customer_id: str,
    currency: str,
    amount: Decimal,
    kind: str,
    description: str,
    now: datetime,
    invoice: Invoice | None = None,
    payment: Payment | None = None,
    credit_note: CreditNote | None = None,
) -> CustomerCreditEntry:
    """Append one entry (the caller holds ``customer_credit_lock`` and the transaction)."""
    return CustomerCreditEntry.objects.create(
        merchant_id=merchant_id,
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        kind=kind,
        description=description[:300],
        invoice=invoice,
        payment=payment,
        credit_note=credit_note,
        created_at=now,
    )

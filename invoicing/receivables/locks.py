"""The one lock order of receivables: invoices first (by primary key), then the customer row.

Every receivables write locks what it reads before it computes: the invoices whose ``amount_due`` it
changes (``SELECT … FOR UPDATE``, in primary-key order), then the customer, whose row stands for its
credit balances (the balance is a sum over append-only entries, so two writers that would both spend it
must serialise on something: the customer row). Issuing an invoice already holds the invoice's lock
(``invoice_finalize``), so the order is the same on every path and two writers never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable

from catalog.models import Customer

from ..models import Invoice


def invoices_lock(invoice_ids: Iterable[str]) -> dict[str, Invoice]:
    """Lock the invoices (primary-key order) and return them by id."""
    rows = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("merchant", "subscription")
        .filter(pk__in=list(invoice_ids))
        .order_by("pk")
    )
    return {invoice.pk: invoice for invoice in rows}


def customer_credit_lock(customer_id: str) -> None:
    """Lock the customer's credit balances (all currencies): taken after the invoices' locks."""
    Customer.objects.select_for_update().filter(pk=customer_id).values_list("pk", flat=True).get()

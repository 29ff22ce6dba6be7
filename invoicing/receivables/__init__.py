"""Receivables: what happens to an invoice's money after it is issued (invoicing/RECEIVABLES.md).

Payments and their allocations, customer credit (a ledger per customer and currency), the due date and
the overdue sweep. The invoice's ``amount_due`` is a stored column that only these services change, each
under the invoice's row lock (``locks``: invoices, then the customer). The names below are the package's API.
"""

from .ledger import customer_credit_balance, customer_credit_balances, customers_with_credit_flag
from .overdue import invoice_due_at, invoices_mark_overdue
from .past_due import subscription_past_due_clear, subscription_past_due_mark
from .payment_failures import invoice_payment_failed_mark
from .payments import (
    InvoicePaymentError,
    invoice_paid_effects,
    invoice_pay_in_full,
    invoice_payment_link_create,
    invoice_settlement_save,
    payment_record,
)
from .selectors import amount_paid_expression, invoice_amount_paid, invoices_with_amount_paid

__all__ = [
    "InvoicePaymentError",
    "amount_paid_expression",
    "invoice_amount_paid",
    "invoices_with_amount_paid",
    "customer_credit_balance",
    "customer_credit_balances",
    "customers_with_credit_flag",
    "invoice_due_at",
    "invoice_paid_effects",
    "invoice_pay_in_full",
    "invoice_payment_failed_mark",
    "invoice_payment_link_create",
    "invoice_settlement_save",
    "invoices_mark_overdue",
    "payment_record",
    "subscription_past_due_clear",
    "subscription_past_due_mark",
]

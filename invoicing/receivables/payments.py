"""Payments as records: a payment is allocated to one or more invoices, each invoice's ``amount_due``
falls by what it takes, and what no invoice takes (an overpayment) becomes customer credit.

Statuses follow the amount due: ISSUED → PARTIALLY_PAID → PAID (an OVERDUE invoice stays OVERDUE until
it is paid in full)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import NoReturn

from django.db import IntegrityError, transaction

from catalog.models import Customer, Subscription, SubscriptionStatus
from catalog.pricing import round_money
from wallets.entitlements import grant_purchase_fulfil
from wallets.services import credit_purchase_fulfil

from .. import webhook_events
from ..models import (
    OPEN_STATUSES,
    CustomerCreditKind,
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from .ledger import credit_entry_add
from .locks import customer_credit_lock, invoices_lock
from .past_due import subscription_past_due_clear


class InvoicePaymentError(InvoiceError):
    """A payment that cannot be recorded; ``code`` names why (the API's business code)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


def invoice_paid_effects(invoice: Invoice, *, at: datetime) -> None:
    """What paying an invoice in full sets off (caller holds the invoice's lock): a bought entitlement grant
    is fulfilled, bought prepaid credit or reserved capacity is credited (once: ``credit_purchase_fulfil``),
    and paying Invoice 0 activates a subscription that waited for it (``pending_payment``)."""
    grant = None
    if invoice.kind == InvoiceKind.CREDIT_PURCHASE:
        grant = grant_purchase_fulfil(invoice_ref=invoice.pk, now=at)  # a bought entitlement grant, if any
        credit_purchase_fulfil(invoice_ref=invoice.pk, now=at)  # bought credit, if any (trusted: credited already)
    if invoice.kind == InvoiceKind.OPENING:
        Subscription.objects.filter(pk=invoice.subscription_id, status=SubscriptionStatus.PENDING_PAYMENT).update(
            status=SubscriptionStatus.ACTIVE, updated_at=at
        )
    webhook_events.invoice_paid_emit(invoice=invoice, now=at, grant_id=grant.pk if grant is not None else None)


def invoice_settlement_save(
    invoice: Invoice, *, at: datetime, paid_effects: bool = True, by_payment: bool = True
) -> None:
    """Save a locked open invoice whose ``amount_due`` a payment or credit note lowered, with the status that
    follows: PAID at zero (``paid_effects``: and what paying sets off), else PARTIALLY_PAID after a payment
    (``by_payment``); a credit note alone leaves an issued invoice ISSUED, as Stripe leaves it open. OVERDUE
    stays."""
    if invoice.amount_due < 0:
        raise InvoiceError(f"Invoice {invoice}: the amount due cannot fall below zero.")
    if invoice.amount_due == 0:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = at
        invoice.save(update_fields=["amount_due", "status", "paid_at", "updated_at"])
        subscription_past_due_clear(invoice, at=at)
        if paid_effects:
            invoice_paid_effects(invoice, at=at)
        return
    if by_payment and invoice.status == InvoiceStatus.ISSUED:
        invoice.status = InvoiceStatus.PARTIALLY_PAID
    invoice.save(update_fields=["amount_due", "status", "updated_at"])


def _refusal(invoice: Invoice) -> InvoicePaymentError | None:
    if invoice.status == InvoiceStatus.PAID:
        return InvoicePaymentError(f"Invoice {invoice} is already paid.", code="INVOICE_ALREADY_PAID")
    if invoice.status not in OPEN_STATUSES:
        return InvoicePaymentError(
            f"Invoice {invoice} is {invoice.status}; a payment can be recorded only on an issued invoice.",
            code="INVOICE_NOT_LINKABLE_STATUS",
        )
    return None


def payment_record(
    *,
    customer: Customer,
    currency: str,
    amount: Decimal,
    method: str,
    received_at: datetime,
    now: datetime,
    invoice_ids: Sequence[str] | None = None,
    reference: str = "",
    recorded_by: str = "",
    idempotency_key: str | None = None,
) -> Payment:
    """Record ``amount`` received from ``customer`` and allocate it, in order, to ``invoice_ids`` (each takes
    at most its amount due) or, when None, to the customer's open invoices in ``currency``, oldest due
    first. The rest is customer credit. A replay with the same ``idempotency_key`` returns the first payment.

    Refuses (``InvoicePaymentError``): an amount not positive or finer than the currency's minor unit
    (``PAYMENT_AMOUNT_INVALID``), a named invoice already paid (``INVOICE_ALREADY_PAID``), draft, void, of
    another customer or currency (``INVOICE_NOT_LINKABLE_STATUS``)."""
    currency = currency.upper()
    amount = Decimal(amount)
    if amount <= 0 or round_money(amount, currency) != amount:
        raise InvoicePaymentError(
            f"A payment is a positive amount in whole {currency} minor units.", code="PAYMENT_AMOUNT_INVALID"
        )
    if method not in PaymentMethod.values:
        raise InvoicePaymentError(f"Unknown payment method {method!r}.", code="PAYMENT_METHOD_INVALID")
    with transaction.atomic():
        if idempotency_key:
            replay = Payment.objects.filter(merchant_id=customer.merchant_id, idempotency_key=idempotency_key).first()
            if replay is not None:
                return replay
        oldest_first = invoice_ids is None
        if oldest_first:
            invoice_ids = list(
                Invoice.objects.filter(customer=customer, currency=currency, status__in=OPEN_STATUSES)
                .order_by("due_at", "issued_at", "pk")
                .values_list("pk", flat=True)
            )
        locked = invoices_lock(invoice_ids)
        invoices = []
        for invoice_id in invoice_ids:
            invoice = locked.get(invoice_id)
            if oldest_first and (invoice is None or _refusal(invoice) is not None):
                # Listed before the lock, settled (paid, credited, voided) by a concurrent writer since: this
                # payment named no invoice, so it skips it (its money goes to the next one, else to credit).
                continue
            if invoice is None or invoice.customer_id != customer.pk or invoice.currency != currency:
                raise InvoicePaymentError(
                    f"Invoice {invoice_id} is not an invoice of this customer in {currency}.",
                    code="INVOICE_NOT_LINKABLE_STATUS",
                )
            refusal = _refusal(invoice)
            if refusal is not None:
                raise refusal
            invoices.append(invoice)
        customer_credit_lock(customer.pk)
        payment = Payment(
            merchant_id=customer.merchant_id,
            customer=customer,
            currency=currency,
            amount=amount,
            method=method,
            reference=reference,
            received_at=received_at,
            recorded_at=now,
            recorded_by=recorded_by,
            idempotency_key=idempotency_key or None,
        )
        try:
            with transaction.atomic():
                payment.save(force_insert=True)
        except IntegrityError:
            if not idempotency_key:
                raise
            # a concurrent replay committed first: it is the payment
            return Payment.objects.get(merchant_id=customer.merchant_id, idempotency_key=idempotency_key)
        remaining = amount
        for invoice in invoices:
            take = min(remaining, invoice.amount_due)
            if take <= 0:
                continue
            PaymentAllocation.objects.create(payment=payment, invoice=invoice, amount=take, created_at=now)
            invoice.amount_due -= take
            remaining -= take
            invoice_settlement_save(invoice, at=received_at)
        if remaining > 0:
            credit_entry_add(
                merchant_id=customer.merchant_id,
                customer_id=customer.pk,
                currency=currency,
                amount=remaining,
                kind=CustomerCreditKind.OVERPAYMENT,
                description=f"Unallocated part of payment {payment.pk}" + (f" ({reference})" if reference else ""),
                now=now,
                payment=payment,
            )
        webhook_events.payment_recorded_emit(
            merchant_id=payment.merchant_id,
            payment_id=payment.pk,
            customer_id=payment.customer_id,
            amount=payment.amount,
            currency=payment.currency,
            method=payment.method,
            reference=payment.reference,
            received_at=payment.received_at,
            allocations=[(allocation.invoice_id, allocation.amount) for allocation in payment.allocations.all()],
            now=now,
        )
    return payment


def invoice_pay_in_full(
    *,
    invoice: Invoice,
    at: datetime,
    method: str = PaymentMethod.OUT_OF_BAND,
    recorded_by: str = "",
    reference: str = "",
) -> Invoice:
    """Record a payment of everything still due on ``invoice`` (received at ``at``) and return it, PAID.
    An open invoice with nothing due is marked paid without a payment. Refuses as ``payment_record``."""
    with transaction.atomic():
        invoice = invoices_lock([invoice.pk])[invoice.pk]
        refusal = _refusal(invoice)
        if refusal is not None:
            raise refusal
        if invoice.amount_due == 0:
            invoice_settlement_save(invoice, at=at)
        else:
            payment_record(
                customer=invoice.customer,
                currency=invoice.currency,
                amount=invoice.amount_due,
                method=method,
                received_at=at,
                now=at,
                invoice_ids=[invoice.pk],
                reference=reference,
                recorded_by=recorded_by,
            )
            invoice.refresh_from_db()
    return invoice


def invoice_payment_link_create(*, invoice: Invoice) -> NoReturn:
    """A hosted payment link for ``invoice`` (the API's ``hosted_link``). Meterline is self-hosted and has no
    payment provider, so it never makes one: it refuses as ``invoice_pay_in_full`` does (a paid, draft or void
    invoice), else with ``MERCHANT_NO_PAYMENT_ACCOUNT``. Nothing is written, so nothing is locked."""
    raise _refusal(invoice) or InvoicePaymentError(
        "Meterline is self-hosted and has no payment provider for payment links; record the payment with method "
        "out_of_band once received.",
        code="MERCHANT_NO_PAYMENT_ACCOUNT",
    )

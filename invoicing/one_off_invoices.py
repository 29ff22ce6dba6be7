"""One-off invoices: prepaid credit and reserved capacity sold (``credit_purchase_create``), purchased
entitlement credits, commitment shortfalls and the manual one-off invoices of ``one_off_invoice_create``
(set-up work, add-ons, SLA credits). Each is issued at once, filed under a subscription of the customer and
written by the invoice writer of ``invoicing.services`` (``invoice_insert``, ``invoice_issue``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from catalog.models import Customer, Subscription, SubscriptionStatus
from catalog.pricing import round_money
from core.formatting import decimal_string
from core.idempotency import request_fingerprint
from wallets.entitlements import grant_purchase_find, grant_purchase_record
from wallets.models import CreditPurchase, CreditPurchaseKind, Entitlement, GrantPurchase
from wallets.selectors import commitment_true_ups_unbilled
from wallets.services import (
    commitment_true_up_due,
    commitment_true_up_mark_billed,
    credit_purchase_check,
    credit_purchase_find,
    credit_purchase_fulfil,
    credit_purchase_record,
    credit_purchase_replay,
)

from .calculation import SUBSCRIPTION_RELATED, LineDraft, finish_lines, manual_line_draft, tax_rate_for
from .models import Invoice, InvoiceError, InvoiceKind, InvoiceStatus, LineKind, ManualLineItem
from .services import invoice_insert, invoice_issue
from .services.manual_lines import ManualLineConflict, ManualLineError, ManualLineInput, manual_line_amount

logger = logging.getLogger(__name__)


def _billing_subscription(*, customer: Customer, currency: str, subscription: Subscription | None) -> Subscription:
    """The subscription a one-off invoice is filed under (an invoice always belongs to one): the given
    one, else the customer's latest active subscription in ``currency`` (real-time ones first)."""
    if subscription is not None:
        return subscription
    candidates = (
        Subscription.objects.filter(customer=customer, plan__currency=currency)
        .select_related(*SUBSCRIPTION_RELATED)
        .order_by("-started_at", "-id")
    )
    found = sorted(
        candidates, key=lambda s: (s.status != SubscriptionStatus.ACTIVE, not s.is_real_time)
    )  # stable: latest first within each class
    if not found:
        raise InvoiceError(f"{customer.pk} has no subscription in {currency} to invoice this under.")
    return found[0]


def _one_off_invoice(
    *, subscription: Subscription, kind: str, line: LineDraft | None = None, now: datetime, taxed: bool, lines=None
) -> Invoice:
    """``line`` alone (or ``lines``) on an invoice of ``kind`` dated ``now``, issued (numbered) at once; untaxed
    unless ``taxed`` (then at the subscription's rate, the plan's tax behaviour)."""
    plan = subscription.plan
    composed = finish_lines(
        kind=kind,
        lines=list(lines) if lines is not None else [line],
        currency=plan.currency,
        rounding=subscription.merchant.rounding_mode,
        tax_rate=tax_rate_for(subscription) if taxed else Decimal(0),
        tax_behavior=plan.tax_behavior,
        discount_percent=None,
        minimum=None,
        period_start=now,
        period_end=now,
    )
    invoice = invoice_insert(composed, subscription=subscription, plan=plan)
    invoice.merchant = subscription.merchant
    invoice_issue(invoice, now=now)
    return invoice


@dataclass(frozen=True)
class CreditPurchaseResult:
    purchase: CreditPurchase
    invoice: Invoice
    replayed: bool


class CreditPurchaseRefused(InvoiceError):
    """A top-up or reserved-capacity purchase refused; ``code`` is the API's business code, ``field`` the
    body field at fault (None: the state, not the body)."""

    def __init__(self, message: str, *, code: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


def reserved_capacity_price(*, amount: Decimal, discount_percent: Decimal, currency: str, rounding: str) -> Decimal:
    """What ``amount`` of reserved capacity costs at ``discount_percent`` off its face value, rounded once to
    the currency's minor unit: $1,000 at 40 % off = $600.00."""
    if not Decimal(0) <= discount_percent < Decimal(100):
        raise CreditPurchaseRefused(
            "The discount is a percentage from 0 up to (not including) 100.", code="INVALID_CREDIT"
        )
    return round_money(Decimal(amount) * (Decimal(100) - discount_percent) / Decimal(100), currency, rounding)


def credit_purchase_create(
    *,
    customer: Customer,
    kind: str,
    currency: str,
    amount: Decimal,
    idempotency_key: str,
    now: datetime,
    price: Decimal | None = None,
    discount_percent: Decimal | None = None,
    metric_ids: Sequence[str] = (),
    expires_at: datetime | None = None,
    description: str = "",
    subscription: Subscription | None = None,
) -> CreditPurchaseResult:
    """Sell ``amount`` of prepaid credit (``kind`` top_up: for every metric) or of reserved capacity (``kind``
    reserved: for ``metric_ids`` only) for ``price`` — or ``discount_percent`` off the face value, or the face
    value itself — on an issued one-off invoice (kind ``credit_purchase``, one fee line, untaxed: a
    prepayment; the usage it pays for is taxed on the period invoice). The credit lot is added when the
    invoice is paid (``receivables.invoice_paid_effects``), or in this transaction when the customer is
    trusted with credit before payment. A replay of ``idempotency_key`` returns the first purchase and its
    invoice (``IdempotencyConflict`` when it bought something else).

    Lock order: the customer row (serialises replays; the receivables lock order puts it after invoices,
    and the only invoice here is the new one), then the purchase, then the wallet."""
    currency = (currency or customer.currency).upper()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().select_related("merchant").get(pk=customer.pk)
        rounding = customer.merchant.rounding_mode
        if price is None:
            price = reserved_capacity_price(
                amount=amount, discount_percent=discount_percent or Decimal(0), currency=currency, rounding=rounding
            )
        elif round_money(Decimal(price), currency, rounding) != Decimal(price):
            raise CreditPurchaseRefused(
                f"A price is in whole {currency} minor units.", code="INVALID_CREDIT", field="price"
            )
        amount, price, metric_ids = credit_purchase_check(
            customer=customer,
            kind=kind,
            amount=amount,
            price=price,
            metric_ids=metric_ids,
            idempotency_key=idempotency_key,
            expires_at=expires_at,
            now=now,
        )
        existing = credit_purchase_find(customer=customer, kind=kind, idempotency_key=idempotency_key)
        if existing is not None:
            purchase = credit_purchase_replay(
                existing, currency=currency, amount=amount, price=price, metric_ids=metric_ids
            )
            return CreditPurchaseResult(purchase, Invoice.objects.get(pk=purchase.invoice_ref), True)
        try:
            subscription = _billing_subscription(customer=customer, currency=currency, subscription=subscription)
        except InvoiceError as exc:
            raise CreditPurchaseRefused(str(exc), code="NO_BILLING_SUBSCRIPTION") from None
        face = f"{decimal_string(amount)} {currency}"
        if kind == CreditPurchaseKind.RESERVED:
            text = f"Reserved capacity: {face}"
            explanation = f"{face} of reserved capacity for {', '.join(metric_ids)} at {decimal_string(price)}"
            if price < amount:
                off = (amount - price) / amount * 100
                explanation += f" ({decimal_string(off.quantize(Decimal('0.01')).normalize())} % off)"
        else:
            text = f"Prepaid credit: {face}"
            explanation = f"{face} of prepaid credit for {decimal_string(price)}"
        line = LineDraft(
            kind=LineKind.FEE,
            description=text,
            amount=round_money(price, currency, rounding),
            quantity=Decimal(1),
            unit_price=price,
            service_start=now,
            service_end=now,
            explanation={"text": explanation},
        )
        invoice = _one_off_invoice(
            subscription=subscription, kind=InvoiceKind.CREDIT_PURCHASE, line=line, now=now, taxed=False
        )
        purchase = credit_purchase_record(
            customer=customer,
            kind=kind,
            currency=currency,
            amount=amount,
            price=price,
            metric_ids=metric_ids,
            idempotency_key=idempotency_key,
            invoice_ref=invoice.pk,
            now=now,
            expires_at=expires_at,
            description=description,
        )
        if customer.credit_before_payment or invoice.status == InvoiceStatus.PAID:
            # Trusted, or already paid at issue (a zero price, or customer credit covered it).
            purchase = credit_purchase_fulfil(invoice_ref=invoice.pk, now=now)
    return CreditPurchaseResult(purchase, invoice, False)


@dataclass(frozen=True)
class GrantPurchaseResult:
    purchase: GrantPurchase
    invoice: Invoice
    replayed: bool


class GrantPurchaseConflict(InvoiceError):
    """A grant purchase refused by the current state (no subscription to bill under, a reused key)."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


def grant_purchase_create(
    *,
    entitlement: Entitlement,
    amount: Decimal,
    price: Decimal,
    idempotency_key: str,
    now: datetime,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    payment_expires_at: datetime | None = None,
    reset_max_rollover: Decimal | None = None,
    reset_min_rollover: Decimal | None = None,
) -> GrantPurchaseResult:
    """Sell ``amount`` credits of a metered entitlement for ``price``: an issued one-off invoice (kind
    ``credit_purchase``: prepaid, deferred revenue; taxed like the plan it is filed under) and a pending
    ``GrantPurchase``. The grant is created when the invoice is paid (``invoice_mark_paid`` /
    ``invoice_record_payment`` call ``wallets.entitlements.grant_purchase_fulfil``). A replay of
    ``idempotency_key`` on the entitlement returns the first purchase and its invoice."""
    with transaction.atomic():
        Entitlement.objects.select_for_update().filter(pk=entitlement.pk).first()  # serialises replays
        existing = grant_purchase_find(entitlement=entitlement, idempotency_key=idempotency_key)
        if existing is not None:
            if existing.amount != amount or existing.price != price:
                raise GrantPurchaseConflict(
                    "This idempotency key was used for a purchase of another amount or price.",
                    code="IDEMPOTENCY_KEY_REUSED",
                )
            return GrantPurchaseResult(existing, Invoice.objects.get(pk=existing.invoice_ref), True)
        customer = entitlement.customer
        try:
            subscription = _billing_subscription(
                customer=customer, currency=customer.currency, subscription=entitlement.subscription
            )
        except InvoiceError as exc:
            raise GrantPurchaseConflict(str(exc), code="NO_BILLING_SUBSCRIPTION") from None
        currency = subscription.plan.currency
        feature = entitlement.feature
        line = LineDraft(
            kind=LineKind.FEE,
            description=f"Credits for {feature.name}: {decimal_string(amount)} ({entitlement.pk})",
            amount=round_money(price, currency, subscription.merchant.rounding_mode),
            quantity=Decimal(1),
            unit_price=price,
            service_start=now,
            service_end=now,
            explanation={
                "text": f"{decimal_string(amount)} {feature.key} credits for {decimal_string(price)} {currency}"
            },
        )
        invoice = _one_off_invoice(
            subscription=subscription, kind=InvoiceKind.CREDIT_PURCHASE, line=line, now=now, taxed=True
        )
        purchase = grant_purchase_record(
            entitlement=entitlement,
            idempotency_key=idempotency_key,
            invoice_ref=invoice.pk,
            amount=amount,
            price=price,
            currency=currency,
            effective_at=effective_at,
            expires_at=expires_at,
            payment_expires_at=payment_expires_at,
            reset_max_rollover=reset_max_rollover,
            reset_min_rollover=reset_min_rollover,
        )
    return GrantPurchaseResult(purchase, invoice, False)


def commitment_true_ups_bill(*, now: datetime) -> list[Invoice]:
    """Beat: true up the commitments whose term ended (``wallets.services.commitment_true_up_due``) and
    bill every unbilled shortfall on an issued adjustment invoice, once per commitment (marked billed
    in the invoice's transaction; a concurrent biller loses the mark and rolls its invoice back)."""
    commitment_true_up_due(now=now)
    invoices = []
    for commitment in commitment_true_ups_unbilled().select_related("customer"):
        try:
            with transaction.atomic():
                subscription = _billing_subscription(
                    customer=commitment.customer, currency=commitment.currency, subscription=None
                )
                line = LineDraft(
                    kind=LineKind.COMMITMENT,
                    description=(
                        f"Commitment shortfall {commitment.term_start:%Y-%m-%d} – {commitment.term_end:%Y-%m-%d}: "
                        f"committed {decimal_string(commitment.amount)}, used {decimal_string(commitment.drawn_amount)}"
                    ),
                    amount=round_money(commitment.shortfall, commitment.currency, subscription.merchant.rounding_mode),
                    service_start=commitment.term_start,
                    service_end=commitment.term_end,
                    explanation={"text": f"{commitment.amount} − {commitment.drawn_amount} = {commitment.shortfall}"},
                )
                invoice = _one_off_invoice(
                    subscription=subscription, kind=InvoiceKind.ADJUSTMENT, line=line, now=now, taxed=True
                )
                if not commitment_true_up_mark_billed(commitment=commitment, invoice_ref=invoice.pk):
                    raise _AlreadyBilled
        except _AlreadyBilled:
            continue
        except InvoiceError:
            logger.warning("Commitment %s has no subscription to bill its shortfall under", commitment.pk)
            continue
        invoices.append(invoice)
    return invoices


@dataclass(frozen=True)
class OneOffInvoice:
    invoice: Invoice
    replayed: bool


ONE_OFF_LINES_MAX = 100


def one_off_invoice_create(
    *,
    customer: Customer,
    currency: str,
    lines: list[ManualLineInput],
    idempotency_key: str,
    now: datetime,
    subscription: Subscription | None = None,
) -> OneOffInvoice:
    """Invoice ``customer`` at once for ``lines`` (quantity × unit price each; a negative unit price is a credit,
    e.g. an SLA credit): a ``one_off`` invoice filed under ``subscription`` (else the customer's latest in
    ``currency``), taxed at that subscription's rate with its plan's tax behaviour, numbered and issued by the
    invoice writer (a negative total is carried forward as customer credit). Each line is also recorded as a
    ``ManualLineItem`` on the invoice, keyed ``oneoff:<key>#<n>``: a replay of ``idempotency_key`` with the
    same body returns the first invoice, another body is a ``ManualLineConflict``."""
    if not 1 <= len(lines) <= ONE_OFF_LINES_MAX:
        raise ManualLineError(f"Give 1 to {ONE_OFF_LINES_MAX} lines.", field="lines")
    if subscription is not None and subscription.customer_id != customer.pk:
        raise ManualLineError("Not a subscription of this customer.", field="subscriptionId")
    fingerprint = one_off_fingerprint(customer=customer, currency=currency, lines=lines, subscription=subscription)
    keys = [f"oneoff:{idempotency_key}#{n}" for n in range(1, len(lines) + 1)]
    first = ManualLineItem.objects.filter(merchant_id=customer.merchant_id, idempotency_key=keys[0]).first()
    if first is not None:
        if first.fingerprint != fingerprint:
            raise ManualLineConflict(
                "This idempotency key was used for another invoice.", code="IDEMPOTENCY_KEY_REUSED"
            )
        return OneOffInvoice(Invoice.objects.get(pk=first.invoice_id), True)
    try:
        with transaction.atomic():
            try:
                subscription = _billing_subscription(customer=customer, currency=currency, subscription=subscription)
            except InvoiceError as exc:
                raise ManualLineConflict(str(exc), code="NO_BILLING_SUBSCRIPTION") from None
            if subscription.plan.currency != currency:
                raise ManualLineError(f"Must be {subscription.plan.currency}, the subscription's.", field="currency")
            rounding = subscription.merchant.rounding_mode
            items = []
            for position, (key, data) in enumerate(zip(keys, lines, strict=True)):
                try:
                    amount = manual_line_amount(
                        quantity=data.quantity, unit_price=data.unit_price, currency=currency, rounding=rounding
                    )
                except ManualLineError as error:
                    raise ManualLineError(str(error), field=f"lines[{position}].{error.field}") from None
                items.append(
                    ManualLineItem(
                        merchant_id=customer.merchant_id,
                        customer=customer,
                        subscription=subscription,
                        target_invoice=True,
                        display_name=data.display_name,
                        description=data.description,
                        item_id=data.item_id,
                        currency=currency,
                        quantity=data.quantity,
                        unit_price=data.unit_price,
                        amount=amount,
                        invoice_at=now,
                        period_start=data.period_start or now,
                        period_end=data.period_end or now,
                        idempotency_key=key,
                        fingerprint=fingerprint,
                        created_at=now,
                        updated_at=now,
                    )
                )
            invoice = _one_off_invoice(
                subscription=subscription,
                kind=InvoiceKind.ONE_OFF,
                lines=[manual_line_draft(item) for item in items],
                now=now,
                taxed=True,
            )
            for item in items:
                item.invoice = invoice
            ManualLineItem.objects.bulk_create(items)
    except IntegrityError:
        first = ManualLineItem.objects.filter(merchant_id=customer.merchant_id, idempotency_key=keys[0]).first()
        if first is None or first.fingerprint != fingerprint:
            raise
        return OneOffInvoice(Invoice.objects.get(pk=first.invoice_id), True)
    return OneOffInvoice(invoice, False)


def one_off_fingerprint(
    *, customer: Customer, currency: str, lines: list[ManualLineInput], subscription: Subscription | None
) -> str:
    canonical = {
        "customer": customer.pk,
        "subscription": subscription.pk if subscription is not None else None,
        "currency": currency,
        "lines": [
            [
                line.display_name,
                line.description,
                line.item_id,
                decimal_string(line.quantity),
                decimal_string(line.unit_price),
                line.period_start.isoformat() if line.period_start else None,
                line.period_end.isoformat() if line.period_end else None,
            ]
            for line in lines
        ],
    }
    return request_fingerprint(canonical)


class _AlreadyBilled(Exception):
    pass

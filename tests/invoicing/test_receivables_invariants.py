"""Receivables reconcile to the cent whatever finance does (hypothesis).

For any sequence of these operations on one customer (a subscription on a monthly plan: an in-advance
platform fee, a metered price, 7.5 % tax), per customer and currency:

- receivables: issue (an adjustment invoice of chosen lines), pay (partial, over, unallocated; in full, the
  admin's "Mark paid"), credit (customer credit / refund), refund (full, partial), void (and reissue: the
  replacement draft is finalised), credit-note void;
- billing: usage, a billing run that closes the ended periods (the opening invoice issued, each recurring one
  a draft) and finalising a draft (refreshed, issued);
- subscription adjustments: percentageDiscount, usageDiscount, minimumQuantity, maximumQuantity with their
  windows (created and deleted through the API's services), applied by the run and by the refresh at issue;
- one-off lines: a manual line for the next invoice (now or later) or on a given draft (the API's
  ``POST /v2/invoices/lineItems``), one-off invoices of manual lines (negative ones included: SLA credits);
- purchases: a top-up or discounted reserved capacity sold on an invoice, the customer trusted or not;

    Σ invoice totals − Σ payments − Σ credit notes + Σ refunded = Σ amounts due − Σ customer credit

(the issue's "Σ totals − payments − credits − refunds = Σ amounts due + customer credit balances" with its
signs made explicit: a refund is a credit note whose money goes back to the customer, so it counts once as a
credit note and once as money paid out; customer credit is what the merchant owes, so it is subtracted from
what is receivable). No amount due and no credit balance is ever negative; each invoice's amount due is
exactly its total less applied credit, payments allocated and credit notes applied; a paid invoice's amounts
never change; no billing run fails. Bought credit is credited once (one wallet entry of exactly the amount
bought, its lot linked to the invoice): at the sale for a trusted customer, else when the invoice (or the
invoice that reissues it) is paid by payments and customer credit, and never while it is open or void. A
manual line is billed at most once on a live invoice, exactly once while the invoice that claimed it stands,
at its own amount.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from invoicing.models import (
    AdjustmentType,
    CreditNote,
    Invoice,
    InvoiceError,
    InvoiceStatus,
    LineKind,
    ManualLineItem,
    PaymentMethod,
    SubscriptionAdjustment,
)
from invoicing.one_off_invoices import credit_purchase_create, one_off_invoice_create
from invoicing.receivables import payment_record
from invoicing.services import (
    billing_run_execute,
    credit_note_issue,
    credit_note_void,
    invoice_finalize,
    invoice_mark_paid,
    invoice_refund_create,
    invoice_void,
    manual_line_item_create,
    subscription_adjustment_create,
    subscription_adjustment_delete,
)
from invoicing.services.adjustments import AdjustmentInput
from invoicing.services.manual_lines import ManualLineInput
from tests.factories import MerchantFactory
from tests.invoicing.factories import fee_price, metered_price, record_usage
from tests.invoicing.receivables import JAN_1, account, issued, receivables_check
from wallets.models import CreditPurchase, CreditPurchaseKind, EntryKind, LedgerEntry, LotKind

CENT = Decimal("0.01")
cents = st.integers(min_value=1, max_value=50_000)
lines = st.lists(st.integers(-20_000, 40_000).filter(bool), min_size=1, max_size=3)
# adjustment windows: from a month boundary or mid-month, for a month, two, or open-ended
window_starts = st.sampled_from([0, 15, 31, 46])
window_lengths = st.sampled_from([None, 16, 31, 59])

operations = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), lines),
        st.tuples(st.just("pay"), st.integers(0, 20), cents),
        st.tuples(st.just("pay_full"), st.integers(0, 20)),
        st.tuples(st.just("pay_unallocated"), cents),
        st.tuples(st.just("credit"), st.integers(0, 20), st.one_of(st.none(), cents), st.booleans()),
        st.tuples(st.just("refund"), st.integers(0, 20), st.one_of(st.none(), cents)),
        st.tuples(st.just("void"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("void_note"), st.integers(0, 20)),
        # a one-off invoice of manual lines (set-up work, add-ons, SLA credits: negative lines)
        st.tuples(st.just("one_off"), lines),
        # a top-up sold on a one-off invoice (price, credit bought = price + bonus), the customer trusted or not
        st.tuples(st.just("purchase"), cents, st.integers(0, 5_000), st.booleans()),
        # reserved capacity for the metered price's metric (face value, % off), the customer trusted or not
        st.tuples(st.just("reserved"), cents, st.sampled_from(["0", "12.5", "40"]), st.booleans()),
        # usage of the metered price (tokens, at 0.0137 each)
        st.tuples(st.just("usage"), st.integers(1, 100_000)),
        # the billing run, on the first day of the next month: closes the ended period(s); it and finalising a
        # draft are drawn twice as often as the others, so that most sequences reach a recurring invoice
        st.tuples(st.just("close")),
        st.tuples(st.just("close")),
        st.tuples(st.just("finalize"), st.integers(0, 20)),
        st.tuples(st.just("finalize"), st.integers(0, 20)),
        # an adjustment: type, its number (millionths for a percentage), window start and length in days
        st.tuples(
            st.just("adjust"),
            st.sampled_from(AdjustmentType.values),
            st.integers(1, 1_000_000),
            window_starts,
            window_lengths,
        ),
        st.tuples(st.just("adjust_delete"), st.integers(0, 20)),
        # a manual line for the next invoice (quantity, unit price in cents, to collect in how many days)
        st.tuples(
            st.just("line_next"),
            st.integers(1, 3),
            st.integers(-20_000, 40_000).filter(bool),
            st.sampled_from([0, 20, 45]),
        ),
        # a manual line on a draft
        st.tuples(
            st.just("line_draft"), st.integers(0, 20), st.integers(1, 3), st.integers(-20_000, 40_000).filter(bool)
        ),
    ),
    min_size=1,
    max_size=12,
)


def money(value: int) -> Decimal:
    return Decimal(value) * CENT


def pick(rows, index):
    return rows[index % len(rows)] if rows else None


class Sequence:
    """One customer's subscription and the moment the sequence has reached (operations are a day apart; a
    billing run jumps to the first day of the next month)."""

    def __init__(self):
        self.subscription = account(MerchantFactory(), payment_term_days=10, tax_rate="7.5")
        plan = self.subscription.plan
        fee_price(plan, "49.99")
        self.metered = metered_price(plan, "0.0137")
        self.now = JAN_1.replace(hour=1)  # the first operation is a day later
        self.trusted: dict[str, bool] = {}  # purchase id → whether its customer was trusted at the sale
        self.credited: set[str] = set()  # purchases seen credited by an earlier check

    def advance(self, kind: str) -> None:
        if kind == "close":
            self.now = (self.now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=1)
        else:
            self.now += timedelta(days=1)


def apply(op, state: Sequence, day: int) -> None:
    subscription, now = state.subscription, state.now
    customer = subscription.customer
    invoices = list(Invoice.objects.filter(customer=customer).order_by("created_at", "pk"))
    kind = op[0]
    if kind == "issue":
        issued(subscription, *(str(money(a)) for a in op[1]), tax_rate="7.5", day=day, now=now)
    elif kind == "pay":
        invoice = pick([i for i in invoices if i.is_open], op[1])
        if invoice is not None:
            payment_record(
                customer=customer,
                currency="USD",
                amount=money(op[2]),
                method=PaymentMethod.BANK_TRANSFER,
                received_at=now,
                now=now,
                invoice_ids=[invoice.pk],
            )
    elif kind == "pay_full":
        invoice = pick([i for i in invoices if i.is_open], op[1])
        if invoice is not None:
            invoice_mark_paid(invoice=invoice, now=now)
    elif kind == "pay_unallocated":
        payment_record(
            customer=customer, currency="USD", amount=money(op[1]), method=PaymentMethod.CASH, received_at=now, now=now
        )
    elif kind == "credit":
        invoice = pick([i for i in invoices if i.is_open or i.status == InvoiceStatus.PAID], op[1])
        if invoice is not None:
            amounts = None
            if op[2] is not None:
                line = invoice.lines.filter(
                    kind__in=[LineKind.FEE, LineKind.MANUAL, LineKind.USAGE], amount__gt=0
                ).first()
                amounts = {line.id: money(op[2])} if line else {}
            settlement = "refund" if op[3] else "customer_credit"
            credit_note_issue(invoice=invoice, now=now, amounts=amounts, settlement=settlement)
    elif kind == "refund":
        invoice = pick([i for i in invoices if i.status == InvoiceStatus.PAID], op[1])
        if invoice is not None:
            amount = None if op[2] is None else money(op[2])
            invoice_refund_create(invoice=invoice, now=now, amount=amount)
    elif kind == "void":
        invoice = pick([i for i in invoices if i.status != InvoiceStatus.VOID], op[1])
        if invoice is not None:
            replacement = invoice_void(invoice=invoice, now=now, reissue=op[2] and not invoice.is_draft)
            if replacement is not None:
                invoice_finalize(invoice=replacement, now=now)
    elif kind == "void_note":
        note = pick(list(CreditNote.objects.filter(customer=customer, status="issued")), op[1])
        if note is not None:
            credit_note_void(credit_note=note, now=now)
    elif kind == "one_off":
        items = [
            ManualLineInput(display_name=f"Line {n}", currency="USD", quantity=Decimal(1), unit_price=money(a))
            for n, a in enumerate(op[1])
        ]
        one_off_invoice_create(customer=customer, currency="USD", lines=items, idempotency_key=f"op{day}", now=now)
    elif kind in ("purchase", "reserved"):
        customer.credit_before_payment = op[3]
        customer.save(update_fields=["credit_before_payment"])
        if kind == "purchase":
            extra = {"kind": CreditPurchaseKind.TOP_UP, "amount": money(op[1] + op[2]), "price": money(op[1])}
        else:
            extra = {
                "kind": CreditPurchaseKind.RESERVED,
                "amount": money(op[1]),
                "discount_percent": Decimal(op[2]),
                "metric_ids": [state.metered.billable_metric_id],
            }
        result = credit_purchase_create(
            customer=customer, currency="USD", idempotency_key=f"purchase-{day}", now=now, **extra
        )
        state.trusted[result.purchase.pk] = op[3]
    elif kind == "usage":
        record_usage(customer, state.metered.billable_metric, now, op[1])
    elif kind == "close":
        run = billing_run_execute(as_of=now, clock=lambda: now, subscription_ids=[subscription.pk])
        assert run.invoices_failed == 0, list(run.errors.values_list("message", flat=True))
    elif kind == "finalize":
        invoice = pick([i for i in invoices if i.is_draft], op[1])
        if invoice is not None:
            invoice_finalize(invoice=invoice, now=now)
    elif kind == "adjust":
        _, type_, number, start, length = op
        if type_ == AdjustmentType.PERCENTAGE_DISCOUNT:
            text, targets = f"{Decimal(number).scaleb(-6):f}", ()
        else:
            text, targets = str(number), (state.metered.pk,)
        effective_from = JAN_1 + timedelta(days=start)
        data = AdjustmentInput(
            type=type_,
            number=text,
            effective_from=effective_from,
            effective_to=None if length is None else effective_from + timedelta(days=length),
            target_price_ids=targets,
            idempotency_key=f"adjust-{day}",
        )
        subscription_adjustment_create(subscription=subscription, data=data, now=now)
    elif kind == "adjust_delete":
        adjustment = pick(list(SubscriptionAdjustment.objects.filter(subscription=subscription).order_by("pk")), op[1])
        if adjustment is not None:
            subscription_adjustment_delete(adjustment=adjustment)
    elif kind == "line_next":
        _, quantity, unit, later = op
        data = ManualLineInput(
            display_name="Add-on",
            currency="USD",
            quantity=Decimal(quantity),
            unit_price=money(unit),
            invoice_at=now + timedelta(days=later),
        )
        manual_line_item_create(
            merchant=subscription.merchant, data=data, idempotency_key=f"line-{day}", now=now, subscription=subscription
        )
    elif kind == "line_draft":
        draft = pick([i for i in invoices if i.is_draft], op[1])
        if draft is not None:
            data = ManualLineInput(
                display_name="Draft add-on", currency="USD", quantity=Decimal(op[2]), unit_price=money(op[3])
            )
            manual_line_item_create(
                merchant=subscription.merchant, data=data, idempotency_key=f"line-{day}", now=now, invoice=draft
            )


def current(invoice: Invoice) -> Invoice:
    """The invoice that stands for ``invoice`` now: itself, or the last reissue of it when it was voided."""
    while invoice.status == InvoiceStatus.VOID:
        replacement = Invoice.objects.filter(replaces=invoice).first()
        if replacement is None:
            break
        invoice = replacement
    return invoice


def purchases_check(state: Sequence) -> None:
    """Bought credit is credited once: one wallet entry of exactly the amount bought per credited purchase and
    none for the others, its lot linked to the purchase invoice. Credited at the sale when the customer was
    trusted; else once its invoice (or the reissue standing for it) is paid by payments and customer credit (a
    credit note settling it is not a payment), and never while that invoice is open, a draft or void.

    Credit once given stays: voiding a credit note that helped settle the paid purchase invoice reopens it for
    the amount the note had settled, which the customer then owes; the bought credit (possibly spent by then)
    is not taken back. So an open invoice may stand beside its purchase's credit only when that purchase was
    seen credited, with its invoice paid, by an earlier check of the sequence."""
    customer = state.subscription.customer
    purchases = list(CreditPurchase.objects.filter(customer=customer).select_related("lot"))
    credited = [p for p in purchases if p.lot_id]
    entries = LedgerEntry.objects.filter(
        wallet__customer=customer, kind__in=(EntryKind.TOP_UP, EntryKind.RESERVED_PURCHASE)
    )
    assert sorted(entries.values_list("lot_id", flat=True)) == sorted(p.lot_id for p in credited)
    for purchase in purchases:
        invoice = current(Invoice.objects.get(pk=purchase.invoice_ref))
        trusted = state.trusted[purchase.pk]
        if invoice.status == InvoiceStatus.PAID and not invoice.credit_notes.exists():
            assert purchase.lot_id is not None, (purchase, invoice)
        if not trusted and (invoice.is_open or invoice.status in (InvoiceStatus.DRAFT, InvoiceStatus.VOID)):
            assert purchase.lot_id is None or purchase.pk in state.credited, (purchase, invoice)
        if purchase.lot_id and (trusted or invoice.status == InvoiceStatus.PAID):
            state.credited.add(purchase.pk)
        if trusted:
            assert purchase.lot_id is not None, purchase
        if purchase.lot_id:
            lot = purchase.lot
            reserved = purchase.kind == CreditPurchaseKind.RESERVED
            assert (lot.original_amount, lot.purchase_invoice_ref) == (purchase.amount, purchase.invoice_ref)
            assert lot.kind == (LotKind.RESERVED if reserved else LotKind.TOP_UP)
            assert entries.get(lot=lot).amount == purchase.amount
            if reserved:
                assert (sorted(lot.metric_ids), lot.price_paid) == (purchase.metric_ids, purchase.price)


def manual_lines_check(state: Sequence) -> None:
    """A manual line is billed at most once on the live invoices (drafts included), exactly once while the
    invoice that claimed it is not void, at its own amount; a pending one is on none."""
    customer = state.subscription.customer
    billed: dict[str, list[Decimal]] = {}
    manual = (
        Invoice.objects.filter(customer=customer)
        .exclude(status=InvoiceStatus.VOID)
        .values_list("lines__explanation", "lines__amount", "lines__kind")
    )
    for explanation, amount, kind in manual:
        if kind == LineKind.MANUAL and explanation.get("manualLineItemId"):
            billed.setdefault(explanation["manualLineItemId"], []).append(amount)
    for item in ManualLineItem.objects.filter(customer=customer).select_related("invoice"):
        found = billed.get(item.pk, [])
        assert len(found) <= 1, (item, found)
        if item.invoice_id is None:
            assert found == [], item
        elif item.invoice.status != InvoiceStatus.VOID:
            assert found == [item.amount], (item, found)
        else:
            assert found in ([], [item.amount]), (item, found)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_receivables_reconcile_to_the_cent(ops):
    # Each example bills a customer of its own merchant, and every check reads that customer only, so the
    # examples need no rollback between them (the adjustments' services open durable transactions).
    state = Sequence()
    frozen: dict = {}
    note(repr(ops))  # the sequence as written, for a failure's report
    for day, op in enumerate(ops):
        state.advance(op[0])
        try:
            apply(op, state, day)
        except InvoiceError:
            pass  # a refused operation changes nothing
        receivables_check(state.subscription, frozen)
        purchases_check(state)
        manual_lines_check(state)


@pytest.mark.django_db
def test_a_purchase_in_a_sequence_is_invoiced_then_credited_when_paid():
    # the operations the generated sequences draw from, once by hand: a $40.00 top-up (+ $5.00 bonus credit)
    state = Sequence()
    state.advance("purchase")
    apply(("purchase", 4_000, 500, False), state, 0)
    purchase = CreditPurchase.objects.get()
    assert (purchase.amount, purchase.price, purchase.lot_id) == (Decimal("45"), Decimal("40"), None)

    state.advance("pay")
    apply(("pay", 0, 4_000), state, 1)

    purchase.refresh_from_db()
    assert purchase.lot.original_amount == Decimal("45")
    receivables_check(state.subscription, {})
    purchases_check(state)


@pytest.mark.django_db
def test_adjustments_and_manual_lines_in_a_sequence_land_on_the_invoices_they_promise():
    # the billing operations the generated sequences draw from, once by hand (plan: $49.99 a month in
    # advance, tokens at $0.0137, tax 7.5 %)
    state = Sequence()
    ops = [
        ("usage", 10_000),
        ("adjust", AdjustmentType.USAGE_DISCOUNT, 2_000, 0, 31),  # 2,000 tokens waived in January
        ("line_next", 2, 1_500, 0),  # 2 × $15.00 on the next invoice
        ("close",),
        ("line_draft", 0, 1, -2_000),  # an SLA credit of $20.00 on the January draft
        ("finalize", 0),
        ("pay", 1, 10_000),
    ]
    for day, op in enumerate(ops):
        state.advance(op[0])
        apply(op, state, day)
        receivables_check(state.subscription, {})
        manual_lines_check(state)
    opening, january = Invoice.objects.filter(customer=state.subscription.customer).order_by("created_at", "pk")
    # opening: January's fee 49.99, tax 3.74925 → 3.75
    assert (opening.total, opening.status) == (Decimal("53.74"), InvoiceStatus.ISSUED)
    # January: (10,000 − 2,000) × 0.0137 = 109.60 + February's fee 49.99 + 30.00 − 20.00 = 169.59;
    # tax 7.5 % = 12.71925 → 12.72; total 182.31, less the $100.00 paid
    assert (january.subtotal, january.tax, january.total) == (Decimal("169.59"), Decimal("12.72"), Decimal("182.31"))
    assert (january.amount_due, january.status) == (Decimal("82.31"), InvoiceStatus.PARTIALLY_PAID)


@pytest.mark.django_db
def test_a_voided_credit_note_reopens_a_paid_purchase_invoice_and_the_bought_credit_stays():
    # Found by the generated sequences: a $234.62 top-up (+ $0.30 bonus) invoiced to an untrusted customer,
    # $156.50 of it settled by customer credit, $0.01 by a credit note, the rest marked paid: credited. Voiding
    # the credit note then reopens the invoice for $0.01, which the customer owes; the credit is not taken back.
    ops = [
        ("usage", 2183),
        ("issue", [4651]),
        ("pay", 0, 1),
        ("issue", [-14558]),
        ("purchase", 23462, 30, False),
        ("pay_unallocated", 13),
        ("issue", [4651]),
        ("pay_full", 0),
        ("credit", 10, 1, False),
        ("pay_full", 4),
        ("void_note", 0),
    ]
    state, frozen = Sequence(), {}
    for day, op in enumerate(ops):
        state.advance(op[0])
        apply(op, state, day)
        receivables_check(state.subscription, frozen)
        purchases_check(state)
    purchase = CreditPurchase.objects.select_related("lot").get(customer=state.subscription.customer)
    invoice = Invoice.objects.get(pk=purchase.invoice_ref)
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PARTIALLY_PAID, Decimal("0.0100"))
    assert purchase.lot.original_amount == Decimal("234.92")

"""A customer's account statement over [start, end): per currency, the opening balance, every movement, the
closing balance.

The balance is what the customer owes net of the credit they hold: Σ amounts due of their issued invoices −
their customer credit (invoicing/RECEIVABLES.md's invariant, read per customer and currency). Each document
moves it at its own date:

- an invoice issued: + its total; the part paid from the prepaid wallet ("Paid from prepaid balance", a
  settlement line) − at the same date; an invoice voided: − both back at ``voided_at``;
- a payment received: − its amount (an overpayment too: it becomes customer credit);
- a credit note issued: − its total; the part refunded (paid back to the customer) + at the same date; a
  credit note voided: + its total less its refund at ``voided_at``.

Customer credit applied to an invoice moves nothing: the invoice's amount due and the credit fall together.
The credit ledger (``CustomerCreditEntry``) is listed apart, with its own opening and closing balance.

So opening + invoices − payments − credit notes + refunds (± voids, prepaid) = closing, and at ``end`` = now
the closing balance equals Σ amounts due − customer credit. Opening balances are sums in the database (one
conditional aggregate per kind of document); only the movements inside the range are read as rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from django.db.models import DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from catalog.models import Customer
from catalog.pricing import round_money
from invoicing.models import (
    MONEY_DIGITS,
    CreditNote,
    CreditNoteStatus,
    CustomerCreditEntry,
    Invoice,
    InvoiceLine,
    LineKind,
    Payment,
)

ZERO = Decimal("0")
MONEY = DecimalField(**MONEY_DIGITS)


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    kind: str  # invoice, prepaid, invoice_void, payment, credit_note, refund, credit_note_void, credit
    description: str
    reference: str  # the document's number or id
    amount: Decimal  # + raises what the customer owes, − lowers it
    document_id: str = ""


@dataclass
class CurrencyStatement:
    currency: str
    opening: Decimal
    lines: list[StatementLine] = field(default_factory=list)
    credit_opening: Decimal = ZERO
    credit_lines: list[StatementLine] = field(default_factory=list)

    @property
    def closing(self) -> Decimal:
        return self.opening + sum((line.amount for line in self.lines), ZERO)

    @property
    def credit_closing(self) -> Decimal:
        return self.credit_opening + sum((line.amount for line in self.credit_lines), ZERO)

    def total_of(self, *kinds: str) -> Decimal:
        return sum((line.amount for line in self.lines if line.kind in kinds), ZERO)

    @property
    def invoiced(self) -> Decimal:
        return self.total_of("invoice", "prepaid", "invoice_void")

    @property
    def paid(self) -> Decimal:
        return -self.total_of("payment")

    @property
    def credited(self) -> Decimal:
        return -self.total_of("credit_note", "credit_note_void")

    @property
    def refunded(self) -> Decimal:
        return self.total_of("refund")


@dataclass
class Statement:
    customer: Customer
    start: datetime
    end: datetime
    currencies: list[CurrencyStatement]


def _sum(expression, condition: Q) -> Coalesce:
    return Coalesce(Sum(expression, filter=condition, output_field=MONEY), Value(ZERO), output_field=MONEY)


def _prepaid_expression():
    """Σ of the invoice's "Paid from prepaid balance" lines (negative amounts), 0 when none."""
    lines = (
        InvoiceLine.objects.filter(invoice=OuterRef("pk"), kind=LineKind.PREPAID)
        .order_by()
        .values("invoice")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    return Coalesce(Subquery(lines), Value(ZERO), output_field=MONEY)


def _opening_by_currency(customer: Customer, start: datetime) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """(balance, customer credit) per currency before ``start``: one grouped conditional sum per document kind."""
    balance: dict[str, Decimal] = {}
    invoices = (
        Invoice.objects.filter(customer=customer, issued_at__lt=start)
        .order_by()
        .values("currency")
        .annotate(issued=_sum("total", Q()), voided=_sum("total", Q(voided_at__lt=start)))
    )
    for row in invoices:
        balance[row["currency"]] = balance.get(row["currency"], ZERO) + row["issued"] - row["voided"]
    prepaid = (
        InvoiceLine.objects.filter(kind=LineKind.PREPAID, invoice__customer=customer, invoice__issued_at__lt=start)
        .order_by()
        .values("invoice__currency")
        .annotate(s=_sum("amount", Q()), voided=_sum("amount", Q(invoice__voided_at__lt=start)))
    )
    for row in prepaid:
        code = row["invoice__currency"]
        balance[code] = balance.get(code, ZERO) + row["s"] - row["voided"]
    payments = (
        Payment.objects.filter(customer=customer, received_at__lt=start)
        .order_by()
        .values("currency")
        .annotate(s=_sum("amount", Q()))
    )
    for row in payments:
        balance[row["currency"]] = balance.get(row["currency"], ZERO) - row["s"]
    notes = (
        CreditNote.objects.filter(customer=customer, issued_at__lt=start)
        .order_by()
        .values("currency")
        .annotate(
            issued=_sum("total", Q()),
            refunded_sum=_sum("refunded", Q()),
            voided=_sum("total", Q(voided_at__lt=start)),
            voided_refunded=_sum("refunded", Q(voided_at__lt=start)),
        )
    )
    for row in notes:
        amount = -row["issued"] + row["refunded_sum"] + row["voided"] - row["voided_refunded"]
        balance[row["currency"]] = balance.get(row["currency"], ZERO) + amount
    credit = {
        row["currency"]: row["s"]
        for row in CustomerCreditEntry.objects.filter(customer=customer, created_at__lt=start)
        .order_by()
        .values("currency")
        .annotate(s=_sum("amount", Q()))
    }
    return balance, credit


def _lines_in_range(customer: Customer, start: datetime, end: datetime) -> Iterable[tuple[str, StatementLine]]:
    in_range = {"__gte": start, "__lt": end}

    def during(name: str) -> Q:
        return Q(**{f"{name}{suffix}": moment for suffix, moment in in_range.items()})

    invoices = (
        Invoice.objects.filter(customer=customer, issued_at__isnull=False)
        .filter(during("issued_at") | during("voided_at"))
        .annotate(prepaid=_prepaid_expression())
        .order_by("issued_at", "number", "id")
    )
    for invoice in invoices:
        reference = invoice.number or invoice.pk
        if start <= invoice.issued_at < end:
            yield (
                invoice.currency,
                StatementLine(
                    invoice.issued_at, "invoice", f"Invoice {reference}", reference, invoice.total, invoice.pk
                ),
            )
            if invoice.prepaid:
                yield (
                    invoice.currency,
                    StatementLine(
                        invoice.issued_at,
                        "prepaid",
                        f"Paid from prepaid balance (invoice {reference})",
                        reference,
                        invoice.prepaid,
                        invoice.pk,
                    ),
                )
        if invoice.voided_at is not None and start <= invoice.voided_at < end:
            yield (
                invoice.currency,
                StatementLine(
                    invoice.voided_at,
                    "invoice_void",
                    f"Invoice {reference} voided",
                    reference,
                    -(invoice.total + invoice.prepaid),
                    invoice.pk,
                ),
            )
    for payment in Payment.objects.filter(during("received_at"), customer=customer).order_by("received_at", "id"):
        method = payment.get_method_display()
        description = f"Payment ({method}{', ' + payment.reference if payment.reference else ''})"
        yield (
            payment.currency,
            StatementLine(payment.received_at, "payment", description, payment.pk, -payment.amount, payment.pk),
        )
    notes = (
        CreditNote.objects.filter(customer=customer)
        .filter(during("issued_at") | during("voided_at"))
        .select_related("invoice")
        .order_by("issued_at", "number")
    )
    for note in notes:
        on = f"on invoice {note.invoice.number or note.invoice_id}"
        if start <= note.issued_at < end:
            yield (
                note.currency,
                StatementLine(
                    note.issued_at, "credit_note", f"Credit note {note.number} {on}", note.number, -note.total, note.pk
                ),
            )
            if note.refunded:
                yield (
                    note.currency,
                    StatementLine(
                        note.issued_at,
                        "refund",
                        f"Refund of credit note {note.number}",
                        note.number,
                        note.refunded,
                        note.pk,
                    ),
                )
        if note.status == CreditNoteStatus.VOID and note.voided_at is not None and start <= note.voided_at < end:
            yield (
                note.currency,
                StatementLine(
                    note.voided_at,
                    "credit_note_void",
                    f"Credit note {note.number} voided",
                    note.number,
                    note.total - note.refunded,
                    note.pk,
                ),
            )
    entries = CustomerCreditEntry.objects.filter(during("created_at"), customer=customer).order_by("created_at", "id")
    for entry in entries:
        yield (
            entry.currency,
            StatementLine(
                entry.created_at, "credit", entry.description, entry.get_kind_display(), entry.amount, str(entry.pk)
            ),
        )


def customer_statement(*, customer: Customer, start: datetime, end: datetime, currency: str | None = None) -> Statement:
    """The statement of ``customer`` over [``start``, ``end``), per currency (alphabetical; only ``currency``
    when given): the balances and the movements in date order (see the module)."""
    opening, credit_opening = _opening_by_currency(customer, start)
    statements: dict[str, CurrencyStatement] = {}

    def of(code: str) -> CurrencyStatement:
        if code not in statements:
            statements[code] = CurrencyStatement(
                currency=code,
                opening=round_money(opening.get(code, ZERO), code),
                credit_opening=round_money(credit_opening.get(code, ZERO), code),
            )
        return statements[code]

    for code in set(opening) | set(credit_opening):
        of(code)
    for code, line in _lines_in_range(customer, start, end):
        target = of(code)
        line = replace(line, amount=round_money(line.amount, code))  # stored at 4 places, shown at the minor unit
        (target.credit_lines if line.kind == "credit" else target.lines).append(line)
    for statement in statements.values():
        statement.lines.sort(key=lambda line: line.at)  # stable: a document's own lines keep their order
        statement.credit_lines.sort(key=lambda line: line.at)
    chosen = [statements[code] for code in sorted(statements) if currency is None or code == currency]
    return Statement(customer=customer, start=start, end=end, currencies=chosen)

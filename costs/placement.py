"""Where billed money lies in time on the ``billingPeriod`` basis: per invoice line, not per invoice.

The client (``periodBasis``): "'billingPeriod' counts invoice lines by the start of the period each line
bills [...] a refund splits across its invoice's lines by subtotal". An invoice may bill several periods
(a fee in advance for the next period beside usage in arrears for the last one, a proration, a true-up),
so each charge line counts at its own ``service_start`` (its invoice's ``period_start`` when it has none).

- **A line's revenue** (net of tax): its amount on a tax-exclusive invoice (the charge lines sum to the
  subtotal); on a tax-inclusive one, its amount less its share of the invoice's tax.
- **A credit note's revenue** lies on the invoice lines it credits: each credit-note line at its invoice
  line's period, by its amount less its share of the note's tax (inclusive invoices). A note crediting the
  whole invoice has a line per invoice line (``credit_note_issue`` writes one for every line with
  something left), so it splits pro rata across the invoice's lines. ``refund_total`` is the same with tax
  (the client's ``totalRefunds``).
- **Outstanding** follows each line's invoice: an open invoice's ``amount_due`` split across its lines.

**Shares are exact.** ``T`` (a tax, an amount due) is split across a document's lines in line order by
their amounts ``a₁ … aₙ`` (running sums ``Cᵢ``, ``Cₙ = W``): line ``i`` takes ``round(T·Cᵢ/W) −
round(T·Cᵢ₋₁/W)`` in the currency's minor unit (half away from zero). The shares telescope to
``round(T·W/W) = T`` exactly, and each is within one minor unit of its exact share: the cent that
rounding frees lands on the line where the running share crosses the half cent. (No weight, ``W = 0``:
no share.) Everything is computed in the database: each line's running and total weight are correlated
subqueries on its document's lines (one index lookup each, only for lines that carry a share), summed by
the caller's grouped query.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import (
    Case,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, NullIf, Round

from catalog.pricing.currency import MINOR_UNITS
from invoicing.models import (
    MONEY_DIGITS,
    OPEN_STATUSES,
    SETTLEMENT_LINE_KINDS,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    LineKind,
)

MONEY = DecimalField(**MONEY_DIGITS)
# Lines that are not charges: the tax line (informational on inclusive invoices, added on exclusive ones)
# and settlements after the total (prepaid balance, applied credit).
NOT_CHARGES = (LineKind.TAX, *SETTLEMENT_LINE_KINDS)
INCLUSIVE = "inclusive"
ZERO = Value(Decimal("0"), output_field=MONEY)


def _minor_unit_scale(currency_path: str) -> Case:
    """10 ** minor units of the row's currency (100 unless the table says otherwise)."""
    by_units: dict[int, list[str]] = {}
    for code, units in MINOR_UNITS.items():
        if units != 2:
            by_units.setdefault(units, []).append(code)
    return Case(
        *(
            When(**{f"{currency_path}__in": sorted(codes)}, then=Value(Decimal(10) ** units))
            for units, codes in sorted(by_units.items())
        ),
        default=Value(Decimal(100)),
        output_field=MONEY,
    )


class _Dividend(Func):
    """The expression itself; on SQLite as a REAL, whose NUMERIC keeps whole numbers as integers and would
    divide them as integers (385000 / 80 = 4812). PostgreSQL's numeric division is exact."""

    template = "%(expressions)s"
    output_field = MONEY

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, template="CAST(%(expressions)s AS REAL)", **extra_context)


def _share(*, of, before, upto, weight, scale) -> ExpressionWrapper:
    """round(of·upto/weight) − round(of·before/weight) in minor units (see the module docstring)."""
    weight = NullIf(weight, ZERO)
    return ExpressionWrapper(
        Coalesce(
            (Round(_Dividend(of * upto * scale) / weight) - Round(_Dividend(of * before * scale) / weight)) / scale,
            ZERO,
        ),
        output_field=MONEY,
    )


def _running(siblings: QuerySet, key: str, upto_this: Q) -> tuple[Subquery, Subquery]:
    """(the weight of the lines up to and including this one, the weight of them all) of the document."""

    def weight(queryset: QuerySet) -> Subquery:
        return Subquery(queryset.values(key).annotate(w=Sum("amount")).values("w"), output_field=MONEY)

    return weight(siblings.filter(upto_this)), weight(siblings)


def invoice_lines_placed(lines: QuerySet[InvoiceLine]) -> QuerySet[InvoiceLine]:
    """``lines``' charge lines, each with ``placed_at`` (the start of the period it bills), ``billed`` (its
    revenue, net of tax) and ``owed`` (its share of its open invoice's ``amount_due``; zero otherwise)."""
    siblings = InvoiceLine.objects.filter(invoice_id=OuterRef("invoice_id")).exclude(kind__in=NOT_CHARGES).order_by()
    # Line order: position, then id.
    upto_this = Q(position__lt=OuterRef("position")) | Q(position=OuterRef("position"), pk__lte=OuterRef("pk"))
    upto, total = _running(siblings, "invoice_id", upto_this)
    scale = _minor_unit_scale("invoice__currency")

    def share(of):
        return _share(of=of, before=upto - F("amount"), upto=upto, weight=total, scale=scale)

    return (
        lines.exclude(kind__in=NOT_CHARGES)
        .alias(placed_at=Coalesce("service_start", "invoice__period_start"))
        .alias(
            billed=Case(
                When(
                    Q(invoice__tax_behavior=INCLUSIVE) & ~Q(invoice__tax=0),
                    then=F("amount") - share(F("invoice__tax")),
                ),
                default=F("amount"),
                output_field=MONEY,
            ),
            owed=Case(
                When(
                    Q(invoice__status__in=OPEN_STATUSES) & ~Q(invoice__amount_due=0),
                    then=share(F("invoice__amount_due")),
                ),
                default=ZERO,
                output_field=MONEY,
            ),
        )
    )


def credit_note_lines_placed(lines: QuerySet[CreditNoteLine]) -> QuerySet[CreditNoteLine]:
    """``lines``, each with ``placed_at`` (the period of the invoice line it credits), ``credited`` (net of
    tax) and ``refund_total`` (tax included): its credit note's subtotal and total split across its lines."""
    siblings = CreditNoteLine.objects.filter(credit_note_id=OuterRef("credit_note_id")).order_by()
    upto, total = _running(siblings, "credit_note_id", Q(pk__lte=OuterRef("pk")))  # line order: id
    scale = _minor_unit_scale("credit_note__currency")
    tax_share = _share(of=F("credit_note__tax"), before=upto - F("amount"), upto=upto, weight=total, scale=scale)
    inclusive = Q(credit_note__invoice__tax_behavior=INCLUSIVE)
    taxed = ~Q(credit_note__tax=0)
    return lines.alias(
        placed_at=Coalesce("invoice_line__service_start", "credit_note__invoice__period_start"),
        # Inclusive: the lines carry the tax, the subtotal is less; exclusive: the tax comes on top.
        credited=Case(When(inclusive & taxed, then=F("amount") - tax_share), default=F("amount"), output_field=MONEY),
        refund_total=Case(
            When(~inclusive & taxed, then=F("amount") + tax_share), default=F("amount"), output_field=MONEY
        ),
    )


def invoices_without_lines(invoices: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """``invoices`` with no charge line (written outside the invoice writer, which always writes them):
    whole, at the start of the period they bill, with ``billed`` and ``owed`` as on the lines."""
    return invoices.exclude(
        Exists(InvoiceLine.objects.filter(invoice=OuterRef("pk")).exclude(kind__in=NOT_CHARGES))
    ).alias(placed_at=F("period_start"), billed=F("subtotal"), owed=F("amount_due"))


def credit_notes_without_lines(notes: QuerySet[CreditNote]) -> QuerySet[CreditNote]:
    """``notes`` with no line (``credit_note_issue`` always writes them): whole, at their invoice's period."""
    return notes.exclude(Exists(CreditNoteLine.objects.filter(credit_note=OuterRef("pk")))).alias(
        placed_at=F("invoice__period_start"), credited=F("subtotal"), refund_total=F("total")
    )


# A part of a figure: rows with ``placed_at`` and their amounts, and the path from a row to its document (its
# invoice or credit note: "" when the row is the document).
Part = tuple[QuerySet, str]


def billing_period_parts(invoices: QuerySet[Invoice], notes: QuerySet[CreditNote]) -> tuple[list[Part], list[Part]]:
    """The parts of ``invoices`` and of ``notes`` on the ``billingPeriod`` basis: their lines, each at the
    period it bills, and the documents without lines, whole at their (invoice's) billing period."""
    return (
        [
            (invoice_lines_placed(InvoiceLine.objects.filter(invoice__in=invoices)), "invoice__"),
            (invoices_without_lines(invoices), ""),
        ],
        [
            (credit_note_lines_placed(CreditNoteLine.objects.filter(credit_note__in=notes)), "credit_note__"),
            (credit_notes_without_lines(notes), ""),
        ],
    )

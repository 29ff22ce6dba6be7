"""Invoice lines of a dimensional price: one line per combination of event property values.

The engine rates the period's usage per combination (``catalog.pricing.rate_dimensional``); each
combination becomes its own invoice line, rounded once, with its own explanation, so the lines of the
price add up exactly to the rounded combinations and the real-time debits (priced the same way,
``invoicing/realtime``) telescope to them. Usage comes from one SQL query per metric and window, grouped
by customer and by the dimension values (``metering.selectors.usage_aggregate_by_customer_and_values``).

Subscription quantity adjustments (usage discount, minimum/maximum quantity) act on one quantity and so
do not apply to a dimensional price; percentage discounts do (they act on lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from catalog.pricing import DimensionalResult, DimensionalSpec, rate_dimensional, round_money
from catalog.pricing.currency import format_quantity
from core.formatting import decimal_string


@dataclass(frozen=True)
class CombinationLine:
    """What one invoice line of a dimensional price says (wrapped into a ``LineDraft`` by the biller)."""

    label: str | None  # "model=nle-large"; "other values"; None for the single line of a price without usage
    amount: Decimal  # rounded once
    quantity: Decimal
    unit_price: Decimal | None
    explanation: dict


def combination_lines(
    spec: DimensionalSpec, usage: dict, *, rounding: str, explain
) -> tuple[DimensionalResult, list[CombinationLine]]:
    """Rate ``usage`` ({values: quantity}) and turn each combination into a line; ``explain`` is the
    biller's ``explanation_of`` (one explanation format for every usage line)."""
    result = rate_dimensional(spec, usage)
    lines: list[CombinationLine] = []
    for combination in result.combinations:
        explanation = explain(combination.result)
        explanation["text"] = combination.describe()
        if combination.values is not None:
            explanation["dimensions"] = dict(zip(spec.dimensions, combination.values, strict=True))
        else:
            explanation["unmatchedValues"] = [
                dict(zip(spec.dimensions, values, strict=True)) for values in combination.unmatched
            ]
            explanation["priced"] = combination.priced
        if combination.position is not None:
            explanation["cumulativeFrom"] = decimal_string(combination.position)
        combo_spec = spec.combinations[spec.index[combination.values]].spec if combination.values else spec.default
        unit_price = combo_spec.unit_price if combo_spec is not None and combo_spec.package_size is None else None
        lines.append(
            CombinationLine(
                label=combination.label,
                amount=round_money(combination.amount, spec.currency, rounding),
                quantity=combination.result.quantity,
                unit_price=unit_price,
                explanation=explanation,
            )
        )
    if not lines:
        text = f"0 {spec.unit_name}"
        lines.append(
            CombinationLine(
                None,
                Decimal(0),
                Decimal(0),
                None,
                {"text": f"{text}: no usage", "quantity": "0", "amount": "0", "lines": []},
            )
        )
    return result, lines


def line_description(display_name: str, line: CombinationLine, unit: str, span: str) -> str:
    """``Input tokens — model=nle-large: 1,500,000 tokens (Mar 1, 2026 – Mar 31, 2026)``."""
    name = display_name if line.label is None else f"{display_name} — {line.label}"
    return f"{name}: {format_quantity(line.quantity)} {unit} ({span})"

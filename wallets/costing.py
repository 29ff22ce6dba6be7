"""The cost of usage as it arrives: the difference the new usage makes to the period's price.

Pure (no ORM): invoicing rates the period's usage before and after an event with the same engine it
invoices with, so the real-time debits of a period add up to the period-end price.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from catalog.pricing import DimensionalSpec, PriceSpec, Usage, dimensional_amounts, rate
from catalog.pricing.limits import QUANTUM


def incremental_cost(*, spec: PriceSpec, usage_before: Decimal, usage_after: Decimal) -> Decimal:
    """rate(usage_after) − rate(usage_before), each taken at the ledger's 12-place scale.

    Quantizing both ends (not the difference) makes consecutive increments telescope exactly: the
    sum of the increments of a period is rate(total) − rate(0) at 12 places, whatever the split. Free
    allowances and tiers fall out of the engine (an increment inside the allowance costs 0; one
    crossing a tier boundary is priced partly at each tier). rate(0) is the zero-usage charge (a
    line minimum) that invoicing bills at period end, not a usage debit. May be negative (volume
    tiers lower the price of every unit once a bound is passed).
    """
    before = rate(spec, Decimal(usage_before)).amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
    after = rate(spec, Decimal(usage_after)).amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
    return after - before


def incremental_dimensional_cost(*, spec: DimensionalSpec, usage_before: dict, usage_after: dict) -> Decimal:
    """The same for a price with rates per event property: ``usage_*`` map value tuples to quantities.

    Each end is the sum of the combinations exactly as the invoice rates them (``rate_dimensional``, through ``dimensional_amounts``),
    taken at the ledger's scale, so a period's debits telescope to its per-combination lines (before
    their rounding to the currency, which the invoice applies once per line).
    """
    before, after = dimensional_amounts(spec, usage_before, usage_after)
    return after.quantize(QUANTUM, rounding=ROUND_HALF_EVEN) - before.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def incremental_event_cost(*, spec: PriceSpec, usage_before: Usage, usage_after: Usage) -> Decimal:
    """The same for a percentage or dynamic price, whose usage is its events' values (``Usage`` with
    amounts, timestamped quantities or priced segments): rate(events after) − rate(events before), each
    end taken at the ledger's scale, so consecutive increments telescope to the invoice line's exact amount
    (per-event minimums and maximums, fixed fees, period bounds and free units included)."""
    before = rate(spec, usage_before).amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
    after = rate(spec, usage_after).amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)
    return after - before

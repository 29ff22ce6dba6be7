"""The price simulator: what a plan would charge for given usage, computed by the rating engine.

Finance staff use it on the plan page to check a plan before publishing it. It prices each line with
exactly the code invoicing uses (``pricing_adapter`` + ``catalog.pricing``), then the plan minimum and
the plan discount; tax is left out because it depends on the customer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from .descriptions import format_number
from .models import Customer, Plan, Price, PriceModel
from .pricing import (
    PricingError,
    RatingResult,
    Usage,
    apply_plan_minimum,
    apply_subtotal_discount,
    rate,
    rate_dimensional,
)
from .pricing.limits import DECIMAL_PLACES, LIMIT
from .pricing_adapter import price_dimensional_spec, price_spec_from_price
from .selectors import plan_prices_for_customer

# What the simulator accepts, so a typo (1e30, -5, "lots") gets a message instead of a result nobody
# asked for: quantities and transaction amounts from 0 to below 10^15 with at most 12 decimal places
# (the engine's bound, ``pricing.limits``), and at most 10,000 transaction amounts per percentage price.
MAX_PLACES = DECIMAL_PLACES
MAX_AMOUNTS = 10_000


class SimulatorInputError(ValueError):
    """What the user typed cannot be simulated; the message says why, in the user's words."""


def parse_quantity(text: str, *, what: str = "usage") -> Decimal:
    """A typed quantity ("250,000", "1.5"; empty is 0) as a Decimal inside the simulator's bounds."""
    text = text.strip().replace(",", "").replace("_", "")
    if not text:
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SimulatorInputError("Enter a number, e.g. 250000 or 1.5 (amounts separated by commas).") from None
    if not value.is_finite():
        raise SimulatorInputError("Enter a finite number, e.g. 250000.")
    if value < 0:
        raise SimulatorInputError(f"The {what} cannot be negative.")
    if value >= LIMIT:
        raise SimulatorInputError(f"The {what} must be below 1,000,000,000,000,000 (10^15).")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        raise SimulatorInputError(f"Use at most {MAX_PLACES} decimal places.")
    return value


def parse_amounts(text: str) -> tuple[Decimal, ...]:
    """Transaction amounts separated by commas or new lines, each parsed like a quantity."""
    parts = [part for part in text.replace("\n", ",").split(",") if part.strip()]
    if len(parts) > MAX_AMOUNTS:
        raise SimulatorInputError(f"Enter at most {MAX_AMOUNTS:,} transaction amounts.")
    return tuple(parse_quantity(part, what="transaction amount") for part in parts)


@dataclass
class SimulatedLine:
    price: Price
    quantity_label: str
    result: RatingResult | None = None
    amount: Decimal | None = None  # rounded to the currency's minor unit
    error: str = ""
    label: str = ""  # a dimensional price's combination: "Input tokens — model=nle-large"
    text: str = ""  # an explanation without lines (a dimensional price's refused values)

    @property
    def name(self) -> str:
        return self.label or self.price.invoice_display_name

    @property
    def breakdown(self) -> list[str]:
        if self.result and self.result.lines:
            return [line.description for line in self.result.lines]
        return [self.text] if self.text else []


@dataclass
class Simulation:
    plan: Plan
    currency: str
    lines: list[SimulatedLine] = field(default_factory=list)
    minimum_true_up: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    subtotal: Decimal = Decimal(0)
    total: Decimal = Decimal(0)

    @property
    def has_errors(self) -> bool:
        return any(line.error for line in self.lines)


@dataclass(frozen=True)
class SimulatedUsage:
    """What the user typed for one price: a quantity, or event amounts for percentage prices."""

    quantity: Decimal = Decimal(0)
    event_amounts: tuple[Decimal, ...] = ()
    # A dimensional price: quantity per value tuple (one value per dimension; None = values no
    # combination names, priced by the price's own rate or refused).
    by_values: tuple[tuple[tuple[str | None, ...], Decimal], ...] = ()


def plan_simulate(
    *, plan: Plan, usage: dict[str, SimulatedUsage], at: datetime, customer: Customer | None = None, rounding: str
) -> Simulation:
    """Price one period of ``plan`` for ``usage`` (keyed by price id; negotiated rates keyed by the plan price)."""
    simulation = Simulation(plan=plan, currency=plan.currency)
    results: list[RatingResult] = []
    for price in plan_prices_for_customer(plan=plan, customer=customer, at=at):
        typed = usage.get(price.pk) or usage.get(price.overrides_id or "", SimulatedUsage())
        if price.billable_metric_id and price.dimensional_rates is not None:
            lines = _simulate_dimensional(price, typed, currency=plan.currency)
        else:
            lines = [_simulate_line(price, typed, at=at, currency=plan.currency, rounding=rounding)]
        for line in lines:
            simulation.lines.append(line)
            if line.result is not None:
                results.append(line.result)
    if simulation.has_errors:
        return simulation
    rounded = apply_plan_minimum(results, minimum=plan.minimum_commitment, currency=plan.currency, rounding=rounding)
    for line, amount in zip((line for line in simulation.lines if line.result), rounded.lines, strict=True):
        line.amount = amount
    simulation.minimum_true_up = rounded.minimum_true_up
    simulation.subtotal = rounded.total
    simulation.total = rounded.total
    if plan.discount_percent:
        discounted = apply_subtotal_discount(
            rounded.total, percent=plan.discount_percent, currency=plan.currency, rounding=rounding
        )
        simulation.discount = discounted.discount
        simulation.total = discounted.total
    return simulation


def _simulate_dimensional(price: Price, typed: SimulatedUsage, *, currency: str) -> list[SimulatedLine]:
    """One line per combination with usage, exactly as the invoice bills a price with rates per property."""
    unit = price.billable_metric.unit
    try:
        spec = price_dimensional_spec(price, currency=currency)
        usage: dict = {}
        for values, quantity in typed.by_values:
            values = values if len(values) == len(spec.dimensions) else (None,) * len(spec.dimensions)
            usage[values] = usage.get(values, Decimal(0)) + quantity
        result = rate_dimensional(spec, usage)
    except PricingError as exc:
        detail = exc.detail if exc.detail.endswith((".", "!", "?")) else f"{exc.detail}."
        return [SimulatedLine(price=price, quantity_label="", error=f"{price.invoice_display_name}: {detail}")]
    if not result.combinations:
        return [SimulatedLine(price=price, quantity_label=f"0 {unit}", result=_zero_result(spec))]
    return [
        SimulatedLine(
            price=price,
            quantity_label=f"{format_number(combination.result.quantity)} {unit}",
            result=combination.result,
            label=f"{price.invoice_display_name} — {combination.label}",
            text="" if combination.priced else combination.describe(),
        )
        for combination in result.combinations
    ]


def _zero_result(spec) -> RatingResult:
    return RatingResult(spec.price_id, spec.name, spec.currency, spec.unit_name, Decimal(0), Decimal(0), Decimal(0), ())


def _simulate_line(price: Price, typed: SimulatedUsage, *, at: datetime, currency: str, rounding: str) -> SimulatedLine:
    if price.fee_id:
        line = SimulatedLine(price=price, quantity_label=f"{price.quantity} × fee")
        usage: Usage = Usage(quantity=Decimal(price.quantity))
    elif price.model == PriceModel.PERCENTAGE:
        line = SimulatedLine(price=price, quantity_label=f"{len(typed.event_amounts)} transactions")
        usage = Usage(amounts=typed.event_amounts)
    elif price.model == PriceModel.DYNAMIC and price.dynamic_mode == "schedule":
        line = SimulatedLine(
            price=price, quantity_label=f"{format_number(typed.quantity)} {price.billable_metric.unit}"
        )
        usage = Usage(events=[(at, typed.quantity)])
    elif price.model == PriceModel.DYNAMIC:
        line = SimulatedLine(price=price, quantity_label="priced per event")
        line.error = "Prices carried on each event cannot be simulated; send test events instead."
        return line
    else:
        line = SimulatedLine(
            price=price, quantity_label=f"{format_number(typed.quantity)} {price.billable_metric.unit}"
        )
        usage = Usage(quantity=typed.quantity)
    try:
        line.result = rate(price_spec_from_price(price, currency=currency), usage)
    except PricingError as exc:
        # The engine names the price by display name and id; people know it by its name only.
        detail = exc.detail if exc.detail.endswith((".", "!", "?")) else f"{exc.detail}."
        line.error = f"{price.invoice_display_name}: {detail}"
    return line

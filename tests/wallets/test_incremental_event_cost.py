"""Real-time debits of percentage and dynamic prices (rated from their events' values) telescope: for any
sequence of events, split into requests in any arrival order, the debits add up to the invoice line's
exact amount, rate(the period's events) − rate(no event)."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.models import DynamicMode, Price, PriceModel
from catalog.pricing import DynamicMode as SpecDynamicMode
from catalog.pricing import PriceSpec, PricingModel, RateChange, rate
from catalog.pricing.limits import QUANTUM
from invoicing.usage import event_values_usage
from wallets.costing import incremental_event_cost

MARCH = datetime(2026, 3, 1, tzinfo=UTC)

CARD_FEES = PriceSpec(
    price_id="price_fees",
    name="Card fees",
    model=PricingModel.PERCENTAGE,
    currency="USD",
    percentage_rate=Decimal("0.029"),
    fixed_fee=Decimal("0.30"),
    event_min_charge=Decimal("0.50"),
    event_max_charge=Decimal("20"),
    period_max_charge=Decimal("400"),
)
COMPUTE = PriceSpec(
    price_id="price_compute",
    name="Compute",
    model=PricingModel.DYNAMIC,
    currency="USD",
    dynamic_mode=SpecDynamicMode.SCHEDULE,
    rate_schedule=(
        RateChange(effective_from=MARCH, unit_price=Decimal("0.02")),
        RateChange(effective_from=MARCH + timedelta(days=10), unit_price=Decimal("0.035")),
        RateChange(effective_from=MARCH + timedelta(days=20), unit_price=Decimal("0.0125")),
    ),
    free_units=Decimal(250),
)
SPOT = PriceSpec(
    price_id="price_spot",
    name="Spot compute",
    model=PricingModel.DYNAMIC,
    currency="USD",
    dynamic_mode=SpecDynamicMode.EVENT_PRICE,
    min_unit_price=Decimal("0.01"),
    max_unit_price=Decimal("0.05"),
    free_units=Decimal(250),
)
CASES = {
    "percentage": (CARD_FEES, Price(model=PriceModel.PERCENTAGE)),
    "schedule": (COMPUTE, Price(model=PriceModel.DYNAMIC, dynamic_mode=DynamicMode.SCHEDULE)),
    "event_price": (SPOT, Price(model=PriceModel.DYNAMIC, dynamic_mode=DynamicMode.EVENT_PRICE)),
}

amounts = st.decimals(min_value=0, max_value=5000, places=2, allow_nan=False, allow_infinity=False)
unit_prices = st.decimals(min_value=0, max_value=Decimal("0.09"), places=4, allow_nan=False, allow_infinity=False)
events = st.lists(st.tuples(st.integers(0, 30 * 24 - 1), amounts, unit_prices), min_size=1, max_size=40)


def _at_scale(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(CASES)), sequence=events, cuts=st.lists(st.integers(1, 40), max_size=12))
def test_debits_of_any_split_telescope_to_the_invoice_line(kind, sequence, cuts):
    spec, price = CASES[kind]
    # each event (timestamp, id in arrival order, value, [unit price]); requests are consecutive slices
    rows = [
        (MARCH + timedelta(hours=hour), number, amount, [unit_price])
        for number, (hour, amount, unit_price) in enumerate(sequence, start=1)
    ]
    bounds = sorted({0, len(rows), *(cut for cut in cuts if cut < len(rows))})
    debited = Decimal(0)
    for start, end in zip(bounds, bounds[1:], strict=False):
        # the selector's order: by timestamp, then id (late events slot in before later ones)
        before = sorted(rows[:start], key=lambda row: row[:2])
        after = sorted(rows[:end], key=lambda row: row[:2])
        debited += incremental_event_cost(
            spec=spec,
            usage_before=event_values_usage(price, [(m, v, x) for m, _, v, x in before]),
            usage_after=event_values_usage(price, [(m, v, x) for m, _, v, x in after]),
        )
    invoiced = sorted(rows, key=lambda row: row[:2])
    line = rate(spec, event_values_usage(price, [(m, v, x) for m, _, v, x in invoiced])).amount
    empty = rate(spec, event_values_usage(price, [])).amount
    assert debited == _at_scale(line) - _at_scale(empty)


def test_card_fees_on_100_then_50_dollars():
    spec = CARD_FEES
    price = CASES["percentage"][1]
    usage = [event_values_usage(price, [(MARCH, Decimal(v), []) for v in values]) for values in ([], [100], [100, 50])]
    first = incremental_event_cost(spec=spec, usage_before=usage[0], usage_after=usage[1])
    second = incremental_event_cost(spec=spec, usage_before=usage[1], usage_after=usage[2])
    assert (first, second) == (Decimal("3.2"), Decimal("1.75"))
    assert rate(spec, usage[2]).amount == Decimal("4.95")

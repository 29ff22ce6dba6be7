"""Benchmark: evaluations per second of a 5-tier graduated price, explanation included, and of a
dimensional price with 20 combinations (model × region) of 3 graduated tiers each.

Run from the repository root: ``python benchmarks/rating.py``. Prints figures only; the time is
machine-dependent, so nothing is asserted.
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dimensional_price import combination_spec, engine_spec  # noqa: E402

from catalog.pricing import PriceSpec, PricingModel, Tier, Usage, rate, rate_dimensional  # noqa: E402

SPEC = PriceSpec(
    price_id="price_bench",
    name="Input tokens",
    model=PricingModel.GRADUATED,
    currency="USD",
    tiers=(
        Tier(up_to=Decimal(100000), unit_price=Decimal("0.000002")),
        Tier(up_to=Decimal(1000000), unit_price=Decimal("0.0000018"), flat_fee=Decimal("1.50")),
        Tier(up_to=Decimal(10000000), unit_price=Decimal("0.0000015")),
        Tier(up_to=Decimal(100000000), unit_price=Decimal("0.0000012")),
        Tier(up_to=None, unit_price=Decimal("0.000001")),
    ),
    unit_name="tokens",
)

# Quantities spread over every tier, most reaching the open-ended last one (the costliest case).
QUANTITIES = [Decimal(q) for q in ("0", "99999", "100000", "2500000", "37000000", "123456789", "987654321.5")]


# The shared 20-combination price (benchmarks/dimensional_price.py) with bounds for token volumes:
# $0.0000001 … $0.000002 per token, tiers at 1,000,000 and 100,000,000 tokens.
_BOUNDS = {"unit_base": Decimal(1).scaleb(-7), "first_up_to": Decimal(1_000_000), "second_up_to": Decimal(100_000_000)}
DIMENSIONAL = engine_spec(default=combination_spec(0, **_BOUNDS), **_BOUNDS)
# Every one of the 20 combinations used, across all three tiers (the costliest case), and a typical
# customer's period using 3 of them.
ALL_COMBINATIONS = {
    combination.values: Decimal(n * 7_654_321 + 99_999) for n, combination in enumerate(DIMENSIONAL.combinations)
}
THREE_COMBINATIONS = dict(list(ALL_COMBINATIONS.items())[::7])


def _measure(label: str, work, iterations: int) -> float:
    start = time.perf_counter()
    work(iterations)
    elapsed = time.perf_counter() - start
    per_second = iterations / elapsed
    print(f"{label:<58} {per_second:>12,.0f} evaluations/s  ({elapsed / iterations * 1e6:.2f} µs each)")
    return per_second


def _rate_usage(iterations: int) -> None:
    quantities = QUANTITIES
    count = len(quantities)
    for i in range(iterations):
        result = rate(SPEC, Usage(quantity=quantities[i % count]))
        result.lines  # noqa: B018 - the structured explanation is part of every result


def _rate_last_tier(iterations: int) -> None:
    usage = Usage(quantity=Decimal("987654321.5"))
    for _ in range(iterations):
        rate(SPEC, usage).lines  # noqa: B018


def _rate_and_describe(iterations: int) -> None:
    usage = Usage(quantity=Decimal("987654321.5"))
    for _ in range(iterations):
        rate(SPEC, usage).describe()


def _rate_dimensional_all(iterations: int) -> None:
    for _ in range(iterations):
        rate_dimensional(DIMENSIONAL, ALL_COMBINATIONS).combinations  # noqa: B018


def _rate_dimensional_three(iterations: int) -> None:
    for _ in range(iterations):
        rate_dimensional(DIMENSIONAL, THREE_COMBINATIONS).combinations  # noqa: B018


def main() -> None:
    """Warm up, then print evaluations per second for three workloads."""
    sample = rate(SPEC, Usage(quantity=Decimal("987654321.5")))
    print(f"sample: {sample.amount} -> {sample.rounded} USD")
    print(f"        {sample.describe()}")
    _rate_usage(20_000)
    main_figure = _measure("rate(), mixed quantities, structured explanation", _rate_usage, 300_000)
    _measure("rate(), all 5 tiers used, structured explanation", _rate_last_tier, 300_000)
    _measure("rate() + describe() text, all 5 tiers", _rate_and_describe, 30_000)
    dimensional = _measure("rate_dimensional(), 20 of 20 combinations used", _rate_dimensional_all, 20_000)
    _measure("rate_dimensional(), 3 of 20 combinations used", _rate_dimensional_three, 100_000)
    print(f"\nheadline: {main_figure:,.0f} evaluations/s on one core (target 100,000)")
    print(
        f"dimensional: {dimensional:,.0f} prices/s = {dimensional * len(ALL_COMBINATIONS):,.0f} combination "
        "evaluations/s, 20 combinations × 3 tiers (target 50,000)"
    )


if __name__ == "__main__":
    main()

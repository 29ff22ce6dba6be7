"""The benchmarks' dimensional price: 20 combinations (5 models × 4 regions) of 3 graduated tiers each.

One definition, two forms built from the same constants without going through each other:

* ``rates_json`` — the catalog's ``Price.dimensional_rates`` JSON, which the server parses
  (``catalog.pricing.parse_dimensional`` through ``catalog.pricing_adapter``);
* ``engine_spec`` — the engine's ``DimensionalSpec`` built directly from ``PriceSpec`` and ``Tier``, which
  a benchmark uses to price the usage it sent on its own and check what the server billed or debited.

Each combination has its own rate: ``base = (number + 1) × unit_base`` for the ``number``-th combination
(models outer, regions inner), and the tiers ``base × 2`` up to ``first_up_to``, ``base × 1.5`` plus a flat
fee of 1 up to ``second_up_to``, then ``base``. ``benchmarks/rating.py`` (engine only), ``realtime.py
--dimensional`` and ``close_period.py --dimensional`` use it with tier bounds that their usage crosses.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

from catalog.pricing import Combination, DimensionalSpec, PriceSpec, PricingModel, Tier

MODELS = ("nle-small", "nle-medium", "nle-large", "nle-xl", "nle-code")
REGIONS = ("eu", "us", "ap", "sa")
DIMENSIONS = ("model", "region")
COMBINATIONS: tuple[tuple[str, str], ...] = tuple((model, region) for model in MODELS for region in REGIONS)
FLAT_FEE = Decimal(1)


def combination_tiers(number: int, *, unit_base: Decimal, first_up_to: Decimal, second_up_to: Decimal) -> tuple:
    """The three tiers of the ``number``-th combination."""
    base = (number + 1) * unit_base
    return (
        Tier(up_to=first_up_to, unit_price=base * 2),
        Tier(up_to=second_up_to, unit_price=base * Decimal("1.5"), flat_fee=FLAT_FEE),
        Tier(up_to=None, unit_price=base),
    )


def combination_spec(
    number: int,
    *,
    unit_base: Decimal,
    first_up_to: Decimal,
    second_up_to: Decimal,
    price_id: str = "price_bench_dim",
    currency: str = "USD",
    unit_name: str = "tokens",
) -> PriceSpec:
    return PriceSpec(
        price_id=price_id,
        name=f"Tokens {number}",
        model=PricingModel.GRADUATED,
        currency=currency,
        unit_name=unit_name,
        tiers=combination_tiers(number, unit_base=unit_base, first_up_to=first_up_to, second_up_to=second_up_to),
    )


def engine_spec(
    *,
    unit_base: Decimal,
    first_up_to: Decimal,
    second_up_to: Decimal,
    default: PriceSpec | None,
    price_id: str = "price_bench_dim",
    currency: str = "USD",
    unit_name: str = "tokens",
) -> DimensionalSpec:
    """The engine's spec of the 20-combination price; ``default`` prices values no combination names."""
    bounds = {"unit_base": unit_base, "first_up_to": first_up_to, "second_up_to": second_up_to}
    return DimensionalSpec(
        price_id=price_id,
        name="Tokens by model and region",
        currency=currency,
        unit_name=unit_name,
        dimensions=DIMENSIONS,
        combinations=tuple(
            Combination(
                values, combination_spec(number, price_id=price_id, currency=currency, unit_name=unit_name, **bounds)
            )
            for number, values in enumerate(COMBINATIONS)
        ),
        default=default,
    )


def rates_json(*, unit_base: Decimal, first_up_to: Decimal, second_up_to: Decimal) -> dict:
    """``Price.dimensional_rates`` of the same price (unmatched values priced by the price's own model)."""
    rates = []
    for number, (model, region) in enumerate(COMBINATIONS):
        tiers = combination_tiers(number, unit_base=unit_base, first_up_to=first_up_to, second_up_to=second_up_to)
        rates.append(
            {
                "values": {"model": model, "region": region},
                "model": "graduated",
                "tiers": [
                    {
                        "upTo": None if tier.up_to is None else str(tier.up_to),
                        "unitPrice": str(tier.unit_price),
                        "flatFee": str(tier.flat_fee),
                    }
                    for tier in tiers
                ],
            }
        )
    return {"dimensions": list(DIMENSIONS), "tierScope": "combination", "unmatched": "default", "rates": rates}


def combination_for(key: str) -> tuple[str, str]:
    """A combination picked from an event's idempotency key: spread evenly over the 20 and independent of
    how the benchmark spreads events over customers (a customer gets every combination, not one)."""
    return COMBINATIONS[zlib.crc32(key.encode()) % len(COMBINATIONS)]

"""Catalog Price rows → the rating engine's PriceSpec, and a subscription's effective prices.

Private stand-in for ``catalog.pricing_adapter`` / ``catalog.selectors.subscription_prices`` (planned on
main); switch the imports when they land. Expects prices loaded with ``PRICE_PREFETCH``.
"""

from __future__ import annotations

from collections.abc import Iterable

from catalog.models import Price, PriceModel, Subscription
from catalog.pricing import PriceSpec, RateChange, Tier

PRICE_PREFETCH = ("tiers", "dynamic_rates")
PRICE_SELECT = ("billable_metric", "fee")


def price_spec_from_price(price: Price, *, currency: str) -> PriceSpec:
    """The engine's view of ``price`` (tiers and dynamic rates must be prefetched)."""
    model = price.model
    kwargs: dict = {}
    if model in (PriceModel.STANDARD, PriceModel.PACKAGE):
        kwargs["unit_price"] = price.unit_price
        if price.package_size is not None:
            kwargs["package_size"] = price.package_size
            if not (model == PriceModel.PACKAGE and price.package_rounding == "exact"):
                kwargs["package_rounding"] = price.package_rounding
        kwargs["allow_rebates"] = bool(price.allows_rebate) and model == PriceModel.STANDARD
    elif model in (PriceModel.GRADUATED, PriceModel.VOLUME):
        kwargs["tiers"] = tuple(Tier(t.up_to, t.unit_price, t.flat_fee) for t in price.tiers.all())
    elif model == PriceModel.PERCENTAGE:
        kwargs.update(
            percentage_rate=price.percentage_rate,
            fixed_fee=price.fixed_fee_per_event,
            event_min_charge=price.min_charge_per_event,
            event_max_charge=price.max_charge_per_event,
            period_min_charge=price.min_charge_per_period,
            period_max_charge=price.max_charge_per_period,
        )
    elif model == PriceModel.DYNAMIC:
        kwargs.update(
            dynamic_mode=price.dynamic_mode,
            min_unit_price=price.min_unit_price,
            max_unit_price=price.max_unit_price,
        )
        if price.dynamic_mode == "schedule":
            kwargs["rate_schedule"] = tuple(
                RateChange(r.effective_from, r.unit_price) for r in price.dynamic_rates.all()
            )
    if model != PriceModel.PERCENTAGE:
        kwargs["free_units"] = price.free_units
        kwargs["usage_discount_units"] = price.usage_discount_units
    if price.fee_id is not None:
        # A fee is a quantity of units at a unit price; allowances do not apply to it.
        kwargs.pop("free_units", None)
        kwargs.pop("usage_discount_units", None)
    return PriceSpec(
        price_id=price.id,
        name=price.invoice_display_name,
        model=model,
        currency=currency,
        discount_percent=price.discount_percent,
        minimum_amount=price.minimum_commitment,
        unit_name=price.billable_metric.unit if price.billable_metric_id else "units",
        **kwargs,
    )


def effective_prices(plan_prices: Iterable[Price], negotiated: Iterable[Price]) -> list[Price]:
    """The plan's prices with the customer's negotiated rates substituted for the prices they override."""
    overrides = {price.overrides_id: price for price in negotiated}
    return [overrides.get(price.id, price) for price in plan_prices]


def subscription_prices(subscription: Subscription, *, plan=None) -> list[Price]:
    """The prices billed to ``subscription`` (its plan, or ``plan``), negotiated rates substituted."""
    plan = plan or subscription.plan
    plan_prices = (
        Price.objects.filter(plan=plan, customer__isnull=True)
        .select_related(*PRICE_SELECT)
        .prefetch_related(*PRICE_PREFETCH)
        .order_by("created_at", "id")
    )
    negotiated = (
        Price.objects.filter(customer_id=subscription.customer_id, overrides__plan=plan)
        .select_related(*PRICE_SELECT)
        .prefetch_related(*PRICE_PREFETCH)
    )
    return effective_prices(list(plan_prices), list(negotiated))

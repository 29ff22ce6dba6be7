"""Where invoicing gets prices and engine specs: the catalog's adapter and billing-price selectors."""

from catalog.pricing_adapter import dimension_paths, price_dimensional_spec, price_spec_from_price
from catalog.selectors import (
    PriceSet,
    VersionLogs,
    plan_price_set_for_customer,
    plan_prices_for_customer,
    price_sets_for_subscriptions,
    prices_for_subscriptions,
    subscription_prices,
    subscription_version_at,
    version_price_set_for_customer,
    version_prices_for_customer,
)

__all__ = [
    "PriceSet",
    "VersionLogs",
    "dimension_paths",
    "price_dimensional_spec",
    "plan_price_set_for_customer",
    "plan_prices_for_customer",
    "price_spec_from_price",
    "price_sets_for_subscriptions",
    "prices_for_subscriptions",
    "subscription_prices",
    "subscription_version_at",
    "version_price_set_for_customer",
    "version_prices_for_customer",
]

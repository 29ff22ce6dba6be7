"""Where invoicing gets prices and engine specs: the catalog's adapter and billing-price selectors."""

from catalog.pricing_adapter import dimension_paths, price_dimensional_spec, price_spec_from_price
from catalog.selectors import (
    VersionLogs,
    plan_prices_for_customer,
    prices_for_subscriptions,
    subscription_prices,
    subscription_version_at,
    version_prices_for_customer,
)

__all__ = [
    "VersionLogs",
    "dimension_paths",
    "price_dimensional_spec",
    "plan_prices_for_customer",
    "price_spec_from_price",
    "prices_for_subscriptions",
    "subscription_prices",
    "subscription_version_at",
    "version_prices_for_customer",
]

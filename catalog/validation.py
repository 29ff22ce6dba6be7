"""Business validation of prices, shared by the model, the admin forms and the API serializers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Price

TIERED_MODELS = {"graduated", "volume"}
PERCENTAGE_MAX = Decimal("10")


def price_errors(price: Price) -> dict[str, str]:
    """Field → message for every rule the price breaks (empty when it is consistent)."""
    from .models import PriceModel

    errors: dict[str, str] = {}
    has_metric = price.billable_metric_id is not None
    has_fee = price.fee_id is not None
    if has_metric == has_fee:
        message = (
            "Choose either a billable metric (usage price) or a fee (fixed charge), not both."
            if has_metric
            else "Choose what this price charges for: a billable metric (usage) or a fee (fixed charge)."
        )
        errors["billable_metric"] = message
        return errors

    target = price.billable_metric if has_metric else price.fee
    if price.merchant_id and target.merchant_id != price.merchant_id:
        errors["billable_metric" if has_metric else "fee"] = "It belongs to another merchant."
    if price.plan_id:
        plan = price.plan
        if plan.merchant_id != price.merchant_id:
            errors["plan"] = "The plan belongs to another merchant."
        if target.product_id != plan.product_id:
            kind = "metric" if has_metric else "fee"
            errors["billable_metric" if has_metric else "fee"] = (
                f"The {kind} “{target.name}” belongs to the product “{target.product.name}”, but the plan "
                f"“{plan.name}” sells “{plan.product.name}”."
            )

    model = price.model
    if has_fee and model != PriceModel.STANDARD:
        errors["model"] = "A fee is a fixed amount: use the standard model with a unit price."
    if has_fee and price.free_units:
        errors["free_units"] = "Free allowances apply to usage; a fee has none."
    if has_metric and price.is_obligation:
        errors["is_obligation"] = "Only fees can be obligations; usage is never prorated."
    if has_fee and not price.billing_cadence:
        errors["billing_cadence"] = "A fee needs a cadence: P0D for one-off, P1M monthly, P3M quarterly, P1Y yearly."
    if price.billing_cadence and not _is_iso_duration(price.billing_cadence):
        errors["billing_cadence"] = f"“{price.billing_cadence}” is not an ISO 8601 duration such as P1M or P0D."

    if model in {PriceModel.STANDARD, PriceModel.PACKAGE}:
        if price.unit_price is None:
            errors["unit_price"] = (
                "Enter the price per package." if model == PriceModel.PACKAGE else "Enter the price per unit."
            )
        elif price.unit_price < 0 and not (price.allows_rebate and has_metric and model == PriceModel.STANDARD):
            errors["unit_price"] = "A price cannot be negative unless it is a metered rebate (tick “allows rebate”)."
        if model == PriceModel.PACKAGE and not price.package_size:
            errors["package_size"] = "A package price needs the number of units in a package."
    if model == PriceModel.PERCENTAGE:
        if price.free_units:
            errors["free_units"] = "A percentage price charges on money amounts; free units do not apply."
        rate = price.percentage_rate
        if rate is None:
            errors["percentage_rate"] = "Enter the percentage as a fraction: 0.029 for 2.9 %."
        elif not (Decimal(0) <= rate <= PERCENTAGE_MAX):
            errors["percentage_rate"] = "The percentage must be between 0 and 10 (0.03 means 3 %, 1.10 means 110 %)."
        _min_max(errors, price.min_charge_per_event, price.max_charge_per_event, "max_charge_per_event", "per event")
        _min_max(
            errors, price.min_charge_per_period, price.max_charge_per_period, "max_charge_per_period", "per period"
        )
    if model == PriceModel.DYNAMIC:
        if not price.dynamic_mode:
            errors["dynamic_mode"] = "Choose where the rate comes from: a rate schedule or a price on each event."
        elif price.dynamic_mode == "event_price" and not price.event_price_property:
            errors["event_price_property"] = "Say where the unit price sits in each event, e.g. $.unit_price."
        _min_max(errors, price.min_unit_price, price.max_unit_price, "max_unit_price", "unit price")
    if (price.rate_per or 1) != 1:
        per_unit_rates = model in TIERED_MODELS or model == PriceModel.DYNAMIC
        per_unit_rates = per_unit_rates or (model == PriceModel.STANDARD and not price.package_size)
        if has_fee or not per_unit_rates:
            errors["rate_per"] = (
                "Per 1K or per 1M applies to usage rates per unit (standard without a package size, tiers, "
                "dynamic rates); choose “per unit”."
            )
    if model in TIERED_MODELS and price.unit_price is not None:
        errors["unit_price"] = "Tiered prices take their rates from the tier rows; leave the unit price empty."
    dimensional = dimensional_rates_error(price)
    if dimensional:
        errors["dimensional_rates"] = dimensional

    if price.customer_id or price.overrides_id:
        if not (price.customer_id and price.overrides_id):
            errors["overrides"] = "A negotiated rate names both the customer and the plan price it replaces."
        else:
            base = price.overrides
            if base.customer_id:
                errors["overrides"] = "A negotiated rate replaces a plan price, not another negotiated rate."
            elif base.plan_id != price.plan_id:
                errors["overrides"] = "The negotiated rate must sit on the same plan as the price it replaces."
            elif (base.billable_metric_id, base.fee_id) != (price.billable_metric_id, price.fee_id):
                errors["overrides"] = (
                    "The negotiated rate must charge for the same metric or fee as the price it replaces."
                )
            if price.customer.merchant_id != price.merchant_id:
                errors["customer"] = "The customer belongs to another merchant."
    elif price.effective_from is not None or price.effective_until is not None:
        errors["effective_from"] = "Only a negotiated rate has an effective window; a plan price rates every period."
    if (
        price.effective_from is not None
        and price.effective_until is not None
        and price.effective_until <= price.effective_from
    ):
        errors["effective_until"] = "The window must end after it starts."
    return errors


DIMENSIONAL_DEFAULT_MODELS = {"standard", "graduated", "volume", "package"}


def dimensional_rates_error(price: Price) -> str | None:
    """What is wrong with the price's dimensional rates (None when it has none or they are valid)."""
    from .pricing import PriceSpec, PricingError, parse_dimensional

    data = price.dimensional_rates
    if data is None:
        return None
    if price.billable_metric_id is None:
        return "Only usage prices have rates per event property; a fee has one amount."
    if price.model not in DIMENSIONAL_DEFAULT_MODELS:
        return (
            "The price's own rate prices unmatched values, so it is standard, graduated, volume or package "
            f"when it has rates per event property, not {price.model}."
        )
    if price.usage_discount_units or price.discount_percent or price.minimum_commitment is not None:
        return (
            "A price with rates per event property takes no usage discount, percentage discount or minimum "
            "commitment: each combination is its own rate (use the plan minimum or subscription adjustments)."
        )
    if price.allows_rebate:
        return "A price with rates per event property cannot be a rebate."
    currency = price.plan.currency if price.plan_id else "USD"
    default = PriceSpec(price_id="check", name="check", model="standard", currency=currency, unit_price=Decimal(0))
    try:
        parse_dimensional(
            data,
            price_id=price.pk or "unsaved",
            name=price.invoice_display_name or "Unnamed price",
            currency=currency,
            default=default,
            rate_per=price.rate_per or 1,
        )
    except PricingError as error:
        return error.detail
    return None


def tier_table_errors(tiers: Sequence[tuple[Decimal | None, Decimal | None]], *, model: str) -> list[str]:
    """Messages for an inconsistent tier table given as (up_to, unit_price) rows in entry order."""
    from .pricing import validate_tiers

    if model not in TIERED_MODELS:
        return ["Only graduated and volume prices have tiers; remove the tier rows."] if tiers else []
    if not tiers:
        return ["Add at least one tier; the last one has no upper bound."]
    return list(validate_tiers(_as_engine_tiers(tiers)))


def rate_schedule_errors(starts: Sequence[datetime | None], *, model: str, dynamic_mode: str | None) -> list[str]:
    """Messages for an inconsistent rate schedule, given as the rows' start times in entry order."""
    if model != "dynamic":
        return ["Only dynamic prices have a rate schedule; remove the rate rows."] if starts else []
    if dynamic_mode == "event_price":
        return ["Prices carried on each event use no rate schedule; remove the rate rows."] if starts else []
    if dynamic_mode == "schedule" and not starts:
        return ["Add at least one rate to the schedule, with the moment it takes effect."]
    if len(set(starts)) != len(starts):
        return ["Two rates take effect at the same moment; give each its own start."]
    return []


def _as_engine_tiers(rows: Iterable[tuple[Decimal | None, Decimal | None]]):
    from .pricing import Tier

    return tuple(
        Tier(up_to=up_to, unit_price=unit_price if unit_price is not None else Decimal(0)) for up_to, unit_price in rows
    )


def _min_max(errors: dict[str, str], low: Decimal | None, high: Decimal | None, field: str, what: str) -> None:
    if low is not None and low < 0:
        errors[field.replace("max", "min")] = f"The minimum {what} cannot be negative."
    if low is not None and high is not None and high < low:
        errors[field] = f"The maximum {what} must be at least the minimum."


def _is_iso_duration(value: str) -> bool:
    import re

    return bool(re.fullmatch(r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?", value))

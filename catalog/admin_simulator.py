"""The plan page's price simulator (an admin view; the arithmetic lives in ``catalog.simulator``)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone

from .models import Customer, Plan, PriceModel
from .pricing import PricingError
from .pricing_adapter import price_dimensional_spec
from .selectors import plan_prices_for_customer
from .simulator import SimulatedUsage, SimulatorInputError, parse_amounts, parse_quantity, plan_simulate


def plan_simulator_view(request, *, admin_site, model_admin, plan_id: str):
    """GET-only: a simulation changes nothing, so viewers may use it as well as editors."""
    # Through the admin's queryset: a staff user limited to merchants gets 404 for another merchant's plan.
    plan = get_object_or_404(model_admin.get_queryset(request).select_related("product", "merchant"), pk=plan_id)
    if not model_admin.has_view_permission(request, plan):
        raise PermissionDenied
    customers = Customer.objects.filter(merchant=plan.merchant, negotiated_prices__plan=plan).distinct()
    customer = customers.filter(pk=request.GET.get("customer")).first() if request.GET.get("customer") else None
    prices = plan_prices_for_customer(plan=plan, customer=None)
    inputs, errors = [], {}
    usage: dict[str, SimulatedUsage] = {}
    for price in prices:
        if price.fee_id:
            continue
        if price.dimensional_rates is not None:
            _dimensional_inputs(request, price, plan.currency, inputs, errors, usage)
            continue
        name = f"q_{price.pk}"
        raw = request.GET.get(name, "").strip()
        entry = {"price": price, "name": name, "value": raw, "percentage": price.model == PriceModel.PERCENTAGE}
        inputs.append(entry)
        try:
            if entry["percentage"]:
                usage[price.pk] = SimulatedUsage(event_amounts=parse_amounts(raw))
            else:
                usage[price.pk] = SimulatedUsage(quantity=parse_quantity(raw))
        except SimulatorInputError as error:
            errors[name] = str(error)
    for entry in inputs:
        entry["error"] = errors.get(entry["name"], "")
    simulation = None
    if "simulate" in request.GET and not errors:
        simulation = plan_simulate(
            plan=plan, usage=usage, at=timezone.now(), customer=customer, rounding=plan.merchant.rounding_mode
        )
    context = {
        **admin_site.each_context(request),
        "opts": Plan._meta,
        "title": f"Price simulator · {plan}",
        "plan": plan,
        "inputs": inputs,
        "customers": customers,
        "customer": customer,
        "simulation": simulation,
        "fee_prices": [p for p in prices if p.fee_id],
    }
    return TemplateResponse(request, "admin/catalog/plan/simulator.html", context)


def _dimensional_inputs(request, price, currency: str, inputs: list, errors: dict, usage: dict) -> None:
    """One quantity per combination of a price with rates per event property, and one for other values."""
    try:
        spec = price_dimensional_spec(price, currency=currency)
    except PricingError:
        usage[price.pk] = SimulatedUsage()  # the simulation shows the price's own error
        return
    other = "priced at this price's own rate" if spec.default is not None else "refused by this price"
    fields = [
        (f"q_{price.pk}__{n}", label, c.values)
        for n, (c, label) in enumerate(zip(spec.combinations, spec.labels, strict=True))
    ]
    fields.append((f"q_{price.pk}__other", f"other values ({other})", (None,) * len(spec.dimensions)))
    by_values = []
    for name, label, values in fields:
        raw = request.GET.get(name, "").strip()
        inputs.append(
            {
                "price": price,
                "name": name,
                "value": raw,
                "percentage": False,
                "label": f"{price.invoice_display_name} — {label}",
            }
        )
        try:
            by_values.append((values, parse_quantity(raw)))
        except SimulatorInputError as error:
            errors[name] = str(error)
    usage[price.pk] = SimulatedUsage(by_values=tuple(by_values))

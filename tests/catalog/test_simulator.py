"""The price simulator prices a plan with the invoicing engine: lines, breakdowns, minimum, discount."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from catalog.models import Price, PriceModel, PriceTier
from catalog.simulator import SimulatedUsage, plan_simulate
from tests.factories import CustomerFactory, FeePriceFactory, MeteredPriceFactory, PlanFactory

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 10, tzinfo=UTC)


def _pro_plan(**plan_fields):
    plan = PlanFactory(name="Pro", **plan_fields)
    tokens = MeteredPriceFactory(plan=plan, model=PriceModel.GRADUATED, unit_price=None, invoice_display_name="Input")
    PriceTier.objects.create(price=tokens, up_to=Decimal("10000000"), unit_price=Decimal("0.000002"))
    PriceTier.objects.create(price=tokens, up_to=None, unit_price=Decimal("0.000001"))
    fee = FeePriceFactory(plan=plan, unit_price=Decimal("49.00"), invoice_display_name="Platform")
    return plan, tokens, fee


def test_lines_carry_the_tier_breakdown_and_sum_to_the_total():
    plan, tokens, _ = _pro_plan()

    simulation = plan_simulate(
        plan=plan, usage={tokens.pk: SimulatedUsage(quantity=Decimal("25000000"))}, at=AT, rounding="ROUND_HALF_UP"
    )

    amounts = {line.price.invoice_display_name: line.amount for line in simulation.lines}
    assert amounts == {"Input": Decimal("35.00"), "Platform": Decimal("49.00")}
    assert simulation.total == Decimal("84.00")
    input_line = next(line for line in simulation.lines if line.price == tokens)
    assert len(input_line.breakdown) == 2
    assert "10,000,000" in input_line.breakdown[0]


def test_plan_minimum_and_discount_apply_after_the_lines():
    plan, tokens, _ = _pro_plan(minimum_commitment=Decimal("100"), discount_percent=Decimal("10"))

    simulation = plan_simulate(
        plan=plan, usage={tokens.pk: SimulatedUsage(quantity=Decimal("1000"))}, at=AT, rounding="ROUND_HALF_UP"
    )

    # 1,000 × 0.000002 = 0.002 → 0.00; + 49.00 = 49.00; true-up to 100.00; 10 % off → 90.00
    assert simulation.minimum_true_up == Decimal("51.00")
    assert simulation.discount == Decimal("-10.00")
    assert simulation.total == Decimal("90.00")


def test_negotiated_rates_of_a_chosen_customer_replace_the_plan_price():
    plan = PlanFactory()
    tokens = MeteredPriceFactory(plan=plan, unit_price=Decimal("0.000002"))
    customer = CustomerFactory(merchant=plan.merchant)
    Price.objects.create(
        merchant=plan.merchant,
        plan=plan,
        billable_metric=tokens.billable_metric,
        customer=customer,
        overrides=tokens,
        invoice_display_name="Negotiated input",
        unit_price=Decimal("0.000001"),
    )

    simulation = plan_simulate(
        plan=plan,
        usage={tokens.pk: SimulatedUsage(quantity=Decimal("3000000"))},
        at=AT,
        customer=customer,
        rounding="ROUND_HALF_UP",
    )

    assert [line.amount for line in simulation.lines] == [Decimal("3.00")]


def test_simulator_page_shows_the_breakdown_to_a_viewer(client, django_user_model):
    from django.contrib.admin.utils import quote
    from django.contrib.auth.models import Group
    from django.urls import reverse

    from catalog.roles import billing_roles_sync

    # given a viewer and the Pro plan
    billing_roles_sync()
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name="Billing viewer"))
    client.force_login(viewer)
    plan, tokens, _ = _pro_plan()
    url = reverse("admin:catalog_plan_simulate", args=[quote(plan.pk)])

    # when the viewer opens the plan page and then simulates 25M tokens
    change_page = client.get(reverse("admin:catalog_plan_change", args=[quote(plan.pk)]))
    response = client.get(url, {"simulate": "1", f"q_{tokens.pk}": "25,000,000"})

    # then
    assert url in change_page.content.decode()
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="simulation-total"><strong>$84.00</strong>' in body
    assert "10,000,000" in body


def test_simulator_rejects_a_quantity_that_is_not_a_number(admin_client):
    from django.contrib.admin.utils import quote
    from django.urls import reverse

    plan, tokens, _ = _pro_plan()

    response = admin_client.get(
        reverse("admin:catalog_plan_simulate", args=[quote(plan.pk)]), {"simulate": "1", f"q_{tokens.pk}": "lots"}
    )

    assert "Enter a number" in response.content.decode()
    assert response.context["simulation"] is None

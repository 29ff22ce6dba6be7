"""The admin side of plan versions: a price live subscriptions bill is saved as a new plan version (through
``price_save_as_new_version`` and the mint) instead of being refused, and the plan page lists its versions."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Price, PriceTier, SubscriptionStatus
from catalog.services import VersionLine, plan_version_mint
from tests.catalog.test_admin_same_rules_as_api import change_url, form_errors, page_data
from tests.factories import MeteredPriceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_price():
    """Output tokens at $0.002 per 1K on the plan "LLM Pro" (version 1), which one active subscription bills."""
    price = MeteredPriceFactory(
        plan__name="LLM Pro", invoice_display_name="Output tokens", unit_price=Decimal("0.000002"), rate_per=1000
    )
    plan_version_mint(plan=price.plan, lines=[VersionLine(price.pk, "output")], now=timezone.now() - timedelta(days=1))
    SubscriptionFactory(plan=price.plan, customer__merchant=price.merchant, status=SubscriptionStatus.ACTIVE)
    price.refresh_from_db()
    return price


def test_the_form_offers_save_as_a_new_plan_version_for_a_live_price(billing_admin_client, live_price):
    data = page_data(billing_admin_client, change_url(live_price))
    data["unit_price"] = "0.003"  # typed per 1K

    refused = billing_admin_client.post(change_url(live_price), data)

    assert refused.status_code == 200
    assert "Save as a new plan version" in form_errors(refused)[0]


def test_saving_as_a_new_version_keeps_the_old_price_and_makes_the_new_version_default(
    billing_admin_client, live_price
):
    plan = live_price.plan
    data = page_data(billing_admin_client, change_url(live_price))
    data["unit_price"] = "0.003"
    data["save_as_new_version"] = "on"

    response = billing_admin_client.post(change_url(live_price), data, follow=True)

    assert response.status_code == 200
    live_price.refresh_from_db()
    assert live_price.unit_price == Decimal("0.000002000000")  # v1 still bills running periods with it
    plan.refresh_from_db()
    v2 = plan.default_version
    assert (v2.number, v2.based_on.number, v2.created_by.startswith("admin ")) == (2, 1, True)
    [line] = v2.lines.select_related("price")
    assert (line.key, line.price.unit_price, line.price.rate_per) == ("output", Decimal("0.000003000000"), 1000)
    assert line.price.pk != live_price.pk and line.price.plan_id == plan.pk
    assert list(plan.versions.get(number=1).lines.values_list("price_id", flat=True)) == [live_price.pk]
    assert "Saved as a new price in version 2" in response.content.decode()


def test_a_changed_tier_table_goes_into_the_new_version_too(billing_admin_client, live_price):
    Price.objects.filter(pk=live_price.pk).update(model="graduated", unit_price=None)
    PriceTier.objects.create(price=live_price, up_to=None, unit_price=Decimal("0.000002"))
    data = page_data(billing_admin_client, change_url(live_price))
    data["tiers-0-unit_price"] = "0.003"
    data["save_as_new_version"] = "on"

    billing_admin_client.post(change_url(live_price), data)

    live_price.plan.refresh_from_db()
    [line] = live_price.plan.default_version.lines.select_related("price")
    assert list(line.price.tiers.values_list("up_to", "unit_price")) == [(None, Decimal("0.000003000000"))]
    assert list(live_price.tiers.values_list("unit_price", flat=True)) == [Decimal("0.000002000000")]


def test_the_plan_page_lists_its_versions(billing_admin_client, live_price):
    data = page_data(billing_admin_client, change_url(live_price))
    data["unit_price"] = "0.003"
    data["save_as_new_version"] = "on"
    billing_admin_client.post(change_url(live_price), data)

    page = billing_admin_client.get(change_url(live_price.plan)).content.decode()

    assert "Versions (the default bills floating subscriptions from their next period)" in page
    lines = re.findall(r"output: [^<]*", page)
    assert lines == ["output: tokens at $0.003 per 1K", "output: tokens at $0.002 per 1K"], lines

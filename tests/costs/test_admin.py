"""The costs admin through Django's test client: finance ("Billing admin") defines, changes and retires a
metered cost; every write goes through ``costs.services`` (the limit per merchant, validation, the soft
delete); a viewer changes nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from costs.models import MAX_COSTS_PER_MERCHANT, Cost
from tests.factories import ProductFactory

from .conftest import gpu_cost

pytestmark = pytest.mark.django_db

ADD = reverse("admin:costs_cost_add")
LIST = reverse("admin:costs_cost_changelist")


def change_url(cost: Cost) -> str:
    return reverse("admin:costs_cost_change", args=[quote(cost.pk)])


def delete_url(cost: Cost) -> str:
    return reverse("admin:costs_cost_delete", args=[quote(cost.pk)])


def form(of, **changes) -> dict:
    return {
        "merchant": of.merchant_id,
        "product": of.pk,
        "name": "GPU time",
        "unit_cost": "0.0005",
        "currency": "usd",
        "unit": "GPU-seconds",
        "aggregation": "SUM",
        "event_type": "gpu.job",
        "value_property": "$.seconds",
        "group_by": '{"gpu": "$.gpu"}',
        **changes,
    }


def test_finance_defines_a_cost_as_the_api_would(billing_admin_client, gpu_product):
    # when
    response = billing_admin_client.post(ADD, form(gpu_product))

    # then
    assert response.status_code == 302, response.content.decode()[:2000]
    cost = Cost.objects.get()
    assert (cost.merchant, cost.product, cost.name) == (gpu_product.merchant, gpu_product, "GPU time")
    assert (cost.unit_cost, cost.currency, cost.unit) == (Decimal("0.0005"), "USD", "GPU-seconds")  # upper-cased
    assert (cost.aggregation, cost.event_type, cost.value_property) == ("SUM", "gpu.job", "$.seconds")
    assert cost.group_by == {"gpu": "$.gpu"}
    listed = billing_admin_client.get(LIST).content.decode()
    assert change_url(cost) in listed and "GPU time" in listed


def test_a_sum_without_the_property_holding_the_value_is_refused_on_its_field(billing_admin_client, gpu_product):
    response = billing_admin_client.post(ADD, form(gpu_product, value_property=""))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "needs the event property" in errors["value_property"][0]
    assert not Cost.objects.exists()


def test_a_product_of_another_merchant_is_refused(billing_admin_client, gpu_product):
    other = ProductFactory(name="Elsewhere")

    response = billing_admin_client.post(ADD, form(gpu_product, product=other.pk))

    assert response.status_code == 200
    assert "another merchant" in response.context["adminform"].form.errors["product"][0]
    assert not Cost.objects.exists()


def test_the_services_limit_of_costs_per_merchant_is_shown_and_nothing_is_saved(billing_admin_client, gpu_product):
    for number in range(MAX_COSTS_PER_MERCHANT):
        gpu_cost(gpu_product, name=f"Cost {number}")

    response = billing_admin_client.post(ADD, form(gpu_product, name="One too many"), follow=True)

    shown = [str(message) for message in response.context["messages"]]
    assert shown == [f"Not saved: A merchant may define at most {MAX_COSTS_PER_MERCHANT} costs; delete one first."]
    assert not Cost.objects.filter(name="One too many").exists()
    assert Cost.objects.count() == MAX_COSTS_PER_MERCHANT


def test_changing_a_cost_changes_its_rate_and_keeps_its_product(billing_admin_client, gpu_product):
    cost = gpu_cost(gpu_product)
    other_product = ProductFactory(merchant=gpu_product.merchant, name="CPU cloud")

    response = billing_admin_client.post(
        change_url(cost), form(gpu_product, unit_cost="0.0004", product=other_product.pk, group_by="{}")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    cost.refresh_from_db()
    assert cost.unit_cost == Decimal("0.0004")
    assert cost.group_by == {}
    assert cost.product == gpu_product  # read only once the cost exists (cost_update never moves it)


def test_deleting_retires_the_cost_which_stays_listed_and_read_only(billing_admin_client, gpu_product):
    cost = gpu_cost(gpu_product)

    response = billing_admin_client.post(delete_url(cost), {"post": "yes"})

    assert response.status_code == 302
    cost.refresh_from_db()
    assert cost.deleted_at is not None  # soft: past reports keep their meaning
    page = billing_admin_client.get(change_url(cost))
    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields) == []  # every field read only
    billing_admin_client.post(change_url(cost), form(gpu_product, unit_cost="9"))
    cost.refresh_from_db()
    assert cost.unit_cost == Decimal("0.0005")
    assert billing_admin_client.get(delete_url(cost)).status_code == 403


def test_the_bulk_delete_action_retires_each_selected_cost(billing_admin_client, gpu_product):
    first, second = gpu_cost(gpu_product, name="GPU time"), gpu_cost(gpu_product, name="Egress")

    response = billing_admin_client.post(
        LIST, {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"}
    )

    assert response.status_code == 302
    assert Cost.objects.filter(deleted_at__isnull=False).count() == 2
    assert Cost.objects.count() == 2


def test_a_viewer_sees_costs_and_changes_none(viewer_client, gpu_product):
    cost = gpu_cost(gpu_product)

    assert viewer_client.get(change_url(cost)).status_code == 200
    assert viewer_client.post(ADD, form(gpu_product, name="Viewer's")).status_code == 403
    assert viewer_client.post(change_url(cost), form(gpu_product, unit_cost="9")).status_code == 403
    assert viewer_client.post(delete_url(cost), {"post": "yes"}).status_code == 403
    cost.refresh_from_db()
    assert (cost.unit_cost, cost.deleted_at) == (Decimal("0.0005"), None)
    assert Cost.objects.count() == 1

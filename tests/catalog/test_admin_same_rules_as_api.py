"""The admin refuses what the API refuses, through the same services (issue 17, section 2).

Every test posts the page as a "Billing admin" would: the form as the page rendered it, with one change.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.admin.utils import quote
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from catalog.admin_forms import CatalogModelForm, PriceAdminForm
from catalog.models import Aggregation, BillableMetric, Fee, Plan, Price, PriceTier, SubscriptionStatus, TestClock
from invoicing.models import BillingRun, PlanChangeKind, SubscriptionPlanChange
from tests.factories import (
    BillableMetricFactory,
    CustomerFactory,
    FeeFactory,
    MeteredPriceFactory,
    PlanFactory,
    PriceTierFactory,
    ProductFactory,
    SubscriptionFactory,
    TestClockFactory,
)
from wallets.models import BalancePolicy, Wallet
from wallets.services import credit_top_up

pytestmark = pytest.mark.django_db


def change_url(obj: Model) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=(quote(obj.pk),))


def delete_url(obj: Model) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=(quote(obj.pk),))


def _field_data(form, data: dict) -> None:
    for name, field in form.fields.items():
        if field.disabled:
            continue
        key, value = form.add_prefix(name), form[name].value()
        if isinstance(value, bool):
            if value:
                data[key] = "on"
        elif isinstance(value, datetime):
            data[f"{key}_0"], data[f"{key}_1"] = value.strftime("%Y-%m-%d"), value.strftime("%H:%M:%S")
        elif isinstance(value, (dict, list)):
            data[key] = json.dumps(value)
        elif isinstance(value, Model):
            data[key] = str(value.pk)
        elif isinstance(value, (date, time)):
            data[key] = value.isoformat()
        else:
            data[key] = "" if value is None else str(value)


def page_data(client, url: str) -> dict[str, str]:
    """The POST a change page sends when saved as rendered: its form, inline rows and management forms."""
    response = client.get(url)
    assert response.status_code == 200
    data: dict[str, str] = {}
    _field_data(response.context["adminform"].form, data)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        _field_data(formset.management_form, data)
        for form in formset.forms:
            _field_data(form, data)
    return data


def form_errors(response) -> list[str]:
    return list(response.context["adminform"].form.non_field_errors())


def formset(response, prefix: str):
    return next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == prefix)


@pytest.fixture
def live_price():
    """A standard price of the plan "Pro", which one active subscription bills."""
    price = MeteredPriceFactory(plan__name="Pro", invoice_display_name="Input tokens", unit_price=Decimal("0.000002"))
    SubscriptionFactory(plan=price.plan, customer__merchant=price.merchant, status=SubscriptionStatus.ACTIVE)
    return price


# --- Prices ------------------------------------------------------------------------------------------------


def test_repricing_a_price_live_subscriptions_bill_is_refused_on_the_form(billing_admin_client, live_price):
    data = page_data(billing_admin_client, change_url(live_price))
    data["unit_price"] = "0.000003"

    response = billing_admin_client.post(change_url(live_price), data)

    assert response.status_code == 200
    assert form_errors(response) == [
        "This price is billed by 1 live subscription (plan “Pro”). Changing its unit price would re-price periods "
        "already running; tick “Save as a new plan version” to put the changed price in a new version of the "
        "plan instead (floating subscriptions move to it at their next period, pinned ones stay). Only the "
        "invoice display name, display group and rate type can change in place."
    ]
    assert "This price is billed by 1 live subscription" in response.content.decode()
    live_price.refresh_from_db()
    assert live_price.unit_price == Decimal("0.000002")
    assert live_price.history.count() == 1


def test_a_refusal_the_form_did_not_foresee_rolls_back_with_the_services_reason(
    billing_admin_client, live_price, monkeypatch
):
    # given a form that does not ask the rule first (as when a subscription starts while it is open)
    monkeypatch.setattr(PriceAdminForm, "clean", CatalogModelForm.clean)
    data = page_data(billing_admin_client, change_url(live_price))
    data["unit_price"] = "0.000003"

    response = billing_admin_client.post(change_url(live_price), data, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Not saved: 1 subscription(s) bill this price; create a new price and attach it to the plan instead of "
        "changing properties."
    ]
    live_price.refresh_from_db()
    assert (live_price.unit_price, live_price.history.count()) == (Decimal("0.000002"), 1)
    assert not LogEntry.objects.exists()


def test_display_name_of_a_price_in_use_still_changes_through_the_service(billing_admin_client, live_price):
    data = page_data(billing_admin_client, change_url(live_price))
    data["invoice_display_name"] = "Prompt tokens"

    response = billing_admin_client.post(change_url(live_price), data)

    assert response.status_code == 302
    live_price.refresh_from_db()
    assert (live_price.invoice_display_name, live_price.unit_price) == ("Prompt tokens", Decimal("0.000002"))
    assert list(live_price.history.values_list("invoice_display_name", flat=True)) == [
        "Prompt tokens",
        "Input tokens",
    ]


def test_the_price_per_scale_of_a_price_in_use_changes_without_repricing(billing_admin_client, live_price):
    # given the page of a price billed per unit, switched to "per 1K" with the rate typed per 1K
    data = page_data(billing_admin_client, change_url(live_price))
    data["rate_per"], data["unit_price"] = "1000", "0.002"

    response = billing_admin_client.post(change_url(live_price), data)

    assert response.status_code == 302
    live_price.refresh_from_db()
    assert (live_price.rate_per, live_price.unit_price) == (1000, Decimal("0.000002"))


def test_price_no_subscription_bills_is_repriced_through_the_service(billing_admin_client):
    price = MeteredPriceFactory(unit_price=Decimal("0.000002"))
    data = page_data(billing_admin_client, change_url(price))
    data["unit_price"] = "0.000003"

    response = billing_admin_client.post(change_url(price), data)

    assert response.status_code == 302
    price.refresh_from_db()
    assert price.unit_price == Decimal("0.000003")
    assert list(price.history.values_list("unit_price", flat=True)) == [Decimal("0.000003"), Decimal("0.000002")]


def test_terminated_subscriptions_do_not_hold_a_price(billing_admin_client):
    price = MeteredPriceFactory(unit_price=Decimal("0.000002"))
    SubscriptionFactory(plan=price.plan, customer__merchant=price.merchant, status=SubscriptionStatus.TERMINATED)
    data = page_data(billing_admin_client, change_url(price))
    data["unit_price"] = "0.000003"

    assert billing_admin_client.post(change_url(price), data).status_code == 302
    price.refresh_from_db()
    assert price.unit_price == Decimal("0.000003")


def test_editing_a_tier_of_a_price_in_use_is_refused(billing_admin_client):
    tier = PriceTierFactory(up_to=None, unit_price=Decimal("0.000001"), price__plan__name="Pro")
    price = tier.price
    SubscriptionFactory(plan=price.plan, customer__merchant=price.merchant)
    data = page_data(billing_admin_client, change_url(price))
    data["tiers-0-unit_price"] = "0.0000005"

    response = billing_admin_client.post(change_url(price), data)

    assert response.status_code == 200
    assert formset(response, "tiers").non_form_errors() == [
        "This price is billed by 1 live subscription (plan “Pro”). Changing its tiers would re-price periods "
        "already running; tick “Save as a new plan version” to put the changed price in a new version of the "
        "plan instead (floating subscriptions move to it at their next period, pinned ones stay). Only the "
        "invoice display name, display group and rate type can change in place."
    ]
    assert list(PriceTier.objects.filter(price=price).values_list("up_to", "unit_price")) == [
        (None, Decimal("0.000001"))
    ]


def test_tiers_of_a_price_not_in_use_are_written_by_the_service(billing_admin_client):
    tier = PriceTierFactory(up_to=None, unit_price=Decimal("0.000001"))
    price = tier.price
    data = page_data(billing_admin_client, change_url(price))
    data["tiers-0-unit_price"] = "0.0000005"

    response = billing_admin_client.post(change_url(price), data)

    assert response.status_code == 302
    assert list(PriceTier.objects.filter(price=price).values_list("up_to", "unit_price")) == [
        (None, Decimal("0.0000005"))
    ]
    assert price.history.order_by("-history_id").first().history_change_reason == "Tiers: rest @ 0.0000005"


def test_adding_a_price_to_a_plan_live_subscriptions_bill_is_refused(billing_admin_client, live_price):
    plan = live_price.plan
    metric = BillableMetricFactory(product=plan.product, merchant=plan.merchant)
    data = page_data(billing_admin_client, reverse("admin:catalog_price_add"))
    data.update(
        {
            "merchant": plan.merchant_id,
            "plan": plan.pk,
            "billable_metric": metric.pk,
            "invoice_display_name": "Output tokens",
            "unit_price": "0.000006",
        }
    )

    response = billing_admin_client.post(reverse("admin:catalog_price_add"), data)

    assert response.status_code == 200
    assert form_errors(response) == [
        "The plan “Pro” is billed by 1 live subscription. Adding a price to it would change what periods already "
        "running charge; create a new plan instead."
    ]
    assert list(Price.objects.filter(plan=plan)) == [live_price]


def test_taking_a_price_off_a_plan_live_subscriptions_bill_is_refused(billing_admin_client, live_price):
    data = page_data(billing_admin_client, change_url(live_price))
    data["plan"] = ""

    response = billing_admin_client.post(change_url(live_price), data)

    assert response.status_code == 200
    assert form_errors(response) == [
        "The plan “Pro” is billed by 1 live subscription. Taking this price off it would change what periods "
        "already running charge; create a new plan instead."
    ]
    live_price.refresh_from_db()
    assert live_price.plan.name == "Pro"


def test_deleting_a_price_of_a_live_plan_is_refused_like_the_api(billing_admin_client):
    price = MeteredPriceFactory(plan__name="Pro", invoice_display_name="Input tokens")

    response = billing_admin_client.post(delete_url(price), {"post": "yes"}, follow=True)

    assert Price.objects.filter(pk=price.pk).exists()
    assert response.redirect_chain == [(change_url(price), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "The price “Input tokens” was not deleted: it is a line of the live plan “Pro”. Archive the plan, or "
        "remove the price from the plan (only while no subscription bills the plan), then delete it."
    ]


def test_deleting_selected_prices_is_all_or_nothing(billing_admin_client):
    loose = MeteredPriceFactory(plan__archived_at=datetime(2026, 1, 1, tzinfo=UTC))
    held = MeteredPriceFactory(plan__name="Pro", invoice_display_name="Input tokens")

    response = billing_admin_client.post(
        reverse("admin:catalog_price_changelist"),
        {"action": "delete_selected", "_selected_action": [loose.pk, held.pk], "post": "yes"},
        follow=True,
    )

    assert set(Price.objects.values_list("pk", flat=True)) == {loose.pk, held.pk}
    assert "it is a line of the live plan “Pro”" in [str(m) for m in response.context["messages"]][0]


def test_price_of_an_archived_plan_is_deleted_through_the_service(billing_admin_client):
    price = MeteredPriceFactory(plan__archived_at=datetime(2026, 1, 1, tzinfo=UTC))

    response = billing_admin_client.post(delete_url(price), {"post": "yes"})

    assert response.status_code == 302
    assert not Price.objects.filter(pk=price.pk).exists()


# --- Plans -------------------------------------------------------------------------------------------------


def test_cadence_of_a_plan_live_subscriptions_bill_is_refused_on_the_form(billing_admin_client, live_price):
    plan = live_price.plan
    data = page_data(billing_admin_client, change_url(plan))
    data["billing_cadence"] = "P1Y"

    response = billing_admin_client.post(change_url(plan), data)

    assert response.status_code == 200
    assert form_errors(response) == [
        "The plan “Pro” is billed by 1 live subscription. Changing its billing cadence would change what periods "
        "already running charge; create a new plan instead."
    ]
    plan.refresh_from_db()
    assert plan.billing_cadence == "P1M"


def test_name_of_a_plan_in_use_still_changes(billing_admin_client, live_price):
    plan = live_price.plan
    data = page_data(billing_admin_client, change_url(plan))
    data["name"] = "Pro 2026"

    assert billing_admin_client.post(change_url(plan), data).status_code == 302
    plan.refresh_from_db()
    assert plan.name == "Pro 2026"


def test_currency_and_product_of_a_plan_are_fixed_once_created(billing_admin_client):
    plan = PlanFactory(currency="USD")
    other = ProductFactory(merchant=plan.merchant)
    data = page_data(billing_admin_client, change_url(plan))
    data.update({"currency": "EUR", "product": other.pk})

    assert billing_admin_client.post(change_url(plan), data).status_code == 302
    assert Plan.objects.values_list("currency", "product_id").get(pk=plan.pk) == ("USD", plan.product_id)


# --- Metrics, fees, test clocks ----------------------------------------------------------------------------


def test_aggregation_of_a_metric_is_fixed_once_created(billing_admin_client):
    metric = BillableMetricFactory(aggregation=Aggregation.SUM)
    data = page_data(billing_admin_client, change_url(metric))
    data.update({"aggregation": Aggregation.MAX, "name": "Tokens"})

    assert billing_admin_client.post(change_url(metric), data).status_code == 302
    assert BillableMetric.objects.values_list("aggregation", "name").get(pk=metric.pk) == (Aggregation.SUM, "Tokens")


def test_aggregation_change_in_the_product_pages_metric_rows_is_refused(billing_admin_client):
    metric = BillableMetricFactory(aggregation=Aggregation.SUM)
    data = page_data(billing_admin_client, change_url(metric.product))
    data["billable_metrics-0-aggregation"] = Aggregation.MAX

    response = billing_admin_client.post(change_url(metric.product), data)

    assert response.status_code == 200
    assert formset(response, "billable_metrics").errors == [
        {"aggregation": ["The aggregation is fixed once created; create a new one instead."]}
    ]
    assert BillableMetric.objects.get(pk=metric.pk).aggregation == Aggregation.SUM


def test_product_of_a_fee_is_fixed_once_created(billing_admin_client):
    fee = FeeFactory()
    other = ProductFactory(merchant=fee.merchant)
    data = page_data(billing_admin_client, change_url(fee))
    data["product"] = other.pk

    assert billing_admin_client.post(change_url(fee), data).status_code == 302
    assert Fee.objects.get(pk=fee.pk).product_id == fee.product_id


def test_test_clock_time_and_deletion_stamp_are_read_only(billing_admin_client):
    clock = TestClockFactory(current_time=datetime(2026, 1, 1, tzinfo=UTC))
    data = page_data(billing_admin_client, change_url(clock))
    data.update({"current_time_0": "2026-03-01", "current_time_1": "00:00:00", "name": "Rehearsal"})

    assert billing_admin_client.post(change_url(clock), data).status_code == 302
    assert TestClock.objects.values_list("current_time", "deleted_at", "name").get(pk=clock.pk) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        None,
        "Rehearsal",
    )


# --- Invoicing and wallets ---------------------------------------------------------------------------------


def test_billing_runs_and_plan_changes_cannot_be_deleted_from_the_admin(billing_admin_client, live_price):
    at = datetime(2026, 2, 1, tzinfo=UTC)
    run = BillingRun.objects.create(as_of=at, started_at=at)
    subscription = live_price.plan.subscriptions.get()
    change = SubscriptionPlanChange.objects.create(
        subscription=subscription,
        from_plan=live_price.plan,
        to_plan=PlanFactory(product=live_price.plan.product, merchant=live_price.merchant),
        kind=PlanChangeKind.DOWNGRADE,
        requested_at=at,
        effective_at=at,
    )

    assert billing_admin_client.post(delete_url(run), {"post": "yes"}).status_code == 403
    assert billing_admin_client.post(delete_url(change), {"post": "yes"}).status_code == 403
    assert (BillingRun.objects.count(), SubscriptionPlanChange.objects.count()) == (1, 1)


def test_a_wallet_policy_the_service_refuses_is_reported_not_saved(billing_admin_client):
    customer = CustomerFactory()
    credit_top_up(customer=customer, currency="USD", amount=Decimal("50"), idempotency_key="t", now=timezone.now())
    wallet = Wallet.objects.get()

    response = billing_admin_client.post(
        change_url(wallet), {"policy": "auto_top_up", "low_balance_threshold": "5"}, follow=True
    )

    assert [str(m) for m in response.context["messages"]] == [
        "Not saved: Automatic top-up needs a threshold and a top-up amount."
    ]
    wallet.refresh_from_db()
    assert (wallet.policy, wallet.balance) == (BalancePolicy.ALLOW_OVERAGE, Decimal("50"))

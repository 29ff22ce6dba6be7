"""Spend alerts and caps in the admin: finance sets them through the services the API calls (bounds refused
on the form), sees the thresholds an alert fired on its page, and lifts a reached cap for the rest of the
period; a viewer can do none of it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from catalog.models import Customer
from invoicing.models import SpendAlert, SpendCap, SpendWatch
from invoicing.services import subscription_start
from invoicing.spend.services import spend_cap_set, spend_evaluate_due
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, currency="USD")
    price = metered_price(plan, "0.01", name="Calls", unit="calls")
    customer = CustomerFactory(merchant=merchant, name="Acme")
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    subscription_start(customer=customer, plan=plan, started_at=start, now=start)
    customer.calls = price.billable_metric
    return customer


def alert_form(customer, **changes) -> dict:
    return {
        "customer": customer.pk,
        "subscription": "",
        "name": "Budget",
        "currency": "USD",
        "threshold_kind": "percent",
        "budget": "1000",
        "thresholds": "50, 80, 100",
        "recipients": "",
        "active": "on",
        "firings-TOTAL_FORMS": "0",
        "firings-INITIAL_FORMS": "0",
        **changes,
    }


def test_finance_adds_an_alert_and_sees_it_fire(billing_admin_client, acme):
    response = billing_admin_client.post(reverse("admin:invoicing_spendalert_add"), alert_form(acme))

    assert response.status_code == 302, response.context["adminform"].form.errors
    alert = SpendAlert.objects.get()
    assert (alert.thresholds, alert.merchant_id) == (["50", "80", "100"], acme.merchant_id)
    assert SpendWatch.objects.filter(customer=acme).exists()

    record_usage(acme, acme.calls, timezone.now() - timedelta(seconds=1), 55_000)  # $550
    spend_evaluate_due(now=timezone.now())

    page = billing_admin_client.get(reverse("admin:invoicing_spendalert_change", args=[alert.pk])).content.decode()
    assert "Thresholds fired" in page and "550" in page


def test_bounds_are_refused_on_the_form(billing_admin_client, acme):
    response = billing_admin_client.post(
        reverse("admin:invoicing_spendalert_add"), alert_form(acme, thresholds="50, 5000")
    )

    assert response.status_code == 200
    assert "thresholds" in response.context["adminform"].form.errors
    assert not SpendAlert.objects.exists()


def test_finance_lifts_a_reached_cap(billing_admin_client, acme):
    spend_cap_set(customer=acme, currency="USD", amount="100", on_reach="block", now=timezone.now())
    record_usage(acme, acme.calls, timezone.now() - timedelta(seconds=1), 10_000)
    spend_evaluate_due(now=timezone.now())
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is not None

    response = billing_admin_client.post(
        reverse("admin:invoicing_spendcap_changelist"),
        {"action": "lift_for_the_rest_of_the_period", "_selected_action": [acme.pk]},
    )

    assert response.status_code == 302
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is None
    assert SpendCap.objects.get().lifted_by == "billing-admin"


def test_a_viewer_cannot_lift_a_cap(viewer_client, acme):
    spend_cap_set(customer=acme, currency="USD", amount="100", on_reach="block", now=timezone.now())
    record_usage(acme, acme.calls, timezone.now() - timedelta(seconds=1), 10_000)
    spend_evaluate_due(now=timezone.now())

    viewer_client.post(
        reverse("admin:invoicing_spendcap_changelist"),
        {"action": "lift_for_the_rest_of_the_period", "_selected_action": [acme.pk]},
    )

    assert SpendCap.objects.get().lifted_at is None
    assert Customer.objects.get(pk=acme.pk).spend_blocked_since is not None

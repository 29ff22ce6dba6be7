"""Spend alerts in a real browser: a "Billing admin" (finance) sets a spend alert on a customer in the admin
(50 %, 80 % and 100 % of a $1,000 budget), usage is sent through the API, the beat's evaluation runs, and the
alert's page shows the threshold it fired.

Hand-computed: calls at $0.01; 55,000 calls = $550.00 accrued, past 50 % ($500) and short of 80 % ($800): one
threshold fired, accrued 550.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Merchant
from catalog.roles import BILLING_ADMIN
from catalog.services import api_key_create
from invoicing.models import SpendAlert, SpendAlertFiring
from invoicing.services import subscription_start
from invoicing.spend.services import spend_evaluate_due
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price

from .admin_pages import autocomplete, log_in, save, staff_user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_finance_sets_a_spend_alert_and_sees_it_fire_after_usage_is_sent(page, live_server):
    base = live_server.url
    merchant = Merchant.objects.create(name="Budget Labs", default_currency="USD")
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, product__name="Inference", name="Pay as you go")
    metered_price(plan, "0.01", name="Calls", unit="calls", event_type="api.calls")
    customer = CustomerFactory(merchant=merchant, name="Acme Robotics", billing_emails="ap@acme.example")
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    subscription_start(customer=customer, plan=plan, started_at=start, now=start)
    _, key = api_key_create(merchant=merchant, name="usage sender")
    staff_user_with_role("fin", BILLING_ADMIN)

    # finance adds the alert
    log_in(page, base, "fin")
    page.goto(f"{base}/admin/invoicing/spendalert/add/")
    autocomplete(page, "customer", "Acme Robotics")
    page.fill("#id_name", "Monthly budget")
    page.fill("#id_currency", "USD")
    page.select_option("#id_threshold_kind", "percent")
    page.fill("#id_budget", "1000")
    page.fill("#id_thresholds", "50, 80, 100")
    page.screens("new spend alert")
    save(page)
    alert = SpendAlert.objects.get(customer=customer)

    # usage is sent through the API: 55,000 calls ($550)
    response = page.request.post(
        f"{base}/v0/events",
        headers={"Authorization": f"Bearer {key}"},
        data={
            "type": "api.calls",
            "source": "https://acme.example/app",
            "subject": customer.pk,
            "timestamp": (timezone.now() - timedelta(seconds=1)).isoformat(),
            "idempotencyKey": "journey-1",
            "data": {"tokens": 55_000},
        },
    )
    assert response.status == 202, response.text()

    # the beat's evaluation runs (every minute in production)
    spend_evaluate_due(now=timezone.now())
    assert SpendAlertFiring.objects.filter(alert=alert).count() == 1

    # finance opens the alert: the 50 % threshold fired at $550 accrued
    page.goto(f"{base}/admin/invoicing/spendalert/")
    page.click(f"text={alert.name}")
    page.wait_for_url(re.compile(r"/admin/invoicing/spendalert/[^/]+/change/$"))
    fired = page.locator("#firings-group").inner_text()
    assert "thresholds fired" in fired.lower()
    assert re.search(r"\b50\b", fired) and "550" in fired and "500" in fired
    page.screens("the alert fired")

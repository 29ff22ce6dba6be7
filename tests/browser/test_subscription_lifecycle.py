"""A "Billing admin" upgrades a subscription from its page in a real browser: the confirmation form lists the
plans it may move to, the plan-change invoice is linked from the success message, and the page then shows
the new plan read-only.

Hand-computed invoice: a $30 in-advance fee on Basic, a $90 one on Pro, upgraded with d of the month's n days
left: −30 × d/n credited, +90 × d/n charged, no usage — the lines are checked, not recomputed here.
"""

from __future__ import annotations

import re
from datetime import UTC

import pytest
from django.utils import timezone

from catalog.models import Merchant, PaymentTerm
from catalog.roles import BILLING_ADMIN
from invoicing.models import Invoice, InvoiceKind
from invoicing.services import subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price

from .admin_pages import admin_url, log_in, staff_user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_billing_admin_changes_the_plan_now_and_reads_the_plan_change_invoice(page, live_server):
    base = live_server.url
    merchant = Merchant.objects.create(name="Lifecycle Labs", default_currency="USD")
    plans = {}
    for name, fee in (("Basic", "30.00"), ("Pro", "90.00")):
        plans[name] = PlanFactory(merchant=merchant, product__merchant=merchant, product__name="Cloud", name=name)
        fee_price(plans[name], fee, term=PaymentTerm.IN_ADVANCE, name=f"{name} fee")
    month_start = timezone.now().astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    customer = CustomerFactory(merchant=merchant, name="Ada's Robots")
    subscription = subscription_start(
        customer=customer, plan=plans["Basic"], started_at=month_start, now=timezone.now()
    )
    staff_user_with_role("ada", BILLING_ADMIN)

    log_in(page, base, "ada")
    page.goto(admin_url(base, "catalog/subscription", subscription.pk))
    assert page.locator(".field-plan .readonly").inner_text() == "Cloud · Basic"
    page.click("#subscription-action-change-plan-now")
    page.wait_for_url(re.compile(r"/change-plan-now/$"))
    options = page.eval_on_selector_all("#id_plan option", "els => els.map(e => e.textContent)")
    assert options == ["---------", "Cloud · Pro"]
    page.select_option("#id_plan", label="Cloud · Pro")
    page.screens("change plan now")
    page.click("#subscription-action-form input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/catalog/subscription/[^/]+/change/$"))
    success = page.locator(".messagelist .success")
    assert success.inner_text().startswith("Plan changed to Cloud · Pro. Plan-change invoice")
    assert page.locator(".field-plan .readonly").inner_text() == "Cloud · Pro"
    page.screens("subscription after the upgrade")

    success.locator("a").click()
    page.wait_for_url(re.compile(r"/admin/invoicing/invoice/[^/]+/change/$"))
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.PLAN_CHANGE)
    lines = page.locator("#lines-group").inner_text()
    for line in invoice.lines.all():
        assert line.description in lines
    assert {line.description.split(" (")[0] for line in invoice.lines.all()} == {
        "Credit for unused time: Basic fee",
        "Pro fee",
    }
    page.screens("plan-change invoice")

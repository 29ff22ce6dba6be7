"""The finance journey in a real browser: a "Billing admin" builds a product and a tiered plan in the admin,
simulates it, subscribes a customer, sends usage through the API, runs billing and reads the invoice and its
PDF; a "Billing viewer" then sees the same pages and can save nothing.

Hand-computed invoice (last month, a full period, no tax): 15 API calls on a graduated price
(first 10 at $0.00, next 90 at $0.50, then $0.10) = 5 × $0.50 = $2.50, plus the in-arrears platform
fee of $20.00: total $22.50.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from catalog.models import Merchant, Subscription
from catalog.roles import BILLING_ADMIN, BILLING_VIEWER
from catalog.services import api_key_create

from .admin_pages import (
    add_inline_row,
    admin_url,
    log_in,
    log_out,
    object_id_from_url,
    save,
    select_containing,
    staff_user_with_role,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _last_month_start(now: datetime) -> datetime:
    this_month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (this_month - timedelta(days=1)).replace(day=1)


def _post_event(base_url: str, api_key: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base_url}/v0/events",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return {"status": response.status, **json.loads(response.read())}
    except urllib.error.HTTPError as error:
        raise AssertionError(f"POST /v0/events → {error.code}: {error.read().decode()}") from None


def test_billing_admin_builds_bills_and_reads_an_invoice_and_a_viewer_cannot_save(page, live_server):
    base = live_server.url
    now = timezone.now()
    period_start = _last_month_start(now)
    merchant = Merchant.objects.create(name="Journey Labs", default_currency="USD")
    _, api_key = api_key_create(merchant=merchant, name="journey")
    staff_user_with_role("ada", BILLING_ADMIN)
    staff_user_with_role("vic", BILLING_VIEWER)

    # 1. log in: the home page shows its charts and lists
    log_in(page, base, "ada")
    assert page.locator("#billing-home").is_visible()
    assert page.locator("#revenue-chart-figure").is_visible()
    assert page.locator("#drafts-in-grace").is_visible()
    assert page.locator("#past-due").is_visible()
    assert page.locator("#failed-runs").is_visible()
    page.screens("home page")

    # 2. a product with two metrics and a fee, through the product page's inlines
    page.goto(f"{base}/admin/catalog/product/add/")
    page.select_option("#id_merchant", label="Journey Labs")
    page.fill("#id_name", "Journey Cloud")
    add_inline_row(
        page,
        "billable_metrics",
        {"name": "API calls", "unit": "calls", "aggregation": "COUNT", "event_type": "api.call"},
    )
    add_inline_row(
        page,
        "billable_metrics",
        {
            "name": "Storage",
            "unit": "GB",
            "aggregation": "MAX",
            "event_type": "storage.used",
            "value_property": "$.gb",
        },
    )
    add_inline_row(page, "fees", {"name": "Platform fee", "description": "Monthly platform access"})
    page.screens("product with metrics and fee")
    save(page, "_continue")
    assert page.locator("#billable_metrics-group tbody tr.has_original").count() == 2
    assert page.locator("#fees-group tbody tr.has_original").count() == 1

    # 3. a plan, a graduated price with three tiers added with "add another", and a fee price
    page.goto(f"{base}/admin/catalog/plan/add/")
    page.select_option("#id_merchant", label="Journey Labs")
    select_containing(page, "#id_product", "Journey Cloud")
    page.fill("#id_name", "Journey Pro")
    page.fill("#id_currency", "USD")
    page.select_option("#id_billing_cadence", "P1M")
    save(page, "_continue")
    plan_id = object_id_from_url(page.url)

    page.click(".catalog-inline-add a.addlink")
    page.wait_for_url(re.compile(r"/admin/catalog/price/add/"))
    select_containing(page, "#id_billable_metric", "API calls")
    page.fill("#id_invoice_display_name", "API calls")
    page.select_option("#id_model", "graduated")
    page.select_option("#id_payment_term", "in_arrears")
    add_inline_row(page, "tiers", {"up_to": "10", "unit_price": "0"})
    add_inline_row(page, "tiers", {"up_to": "100", "unit_price": "0.50"})
    add_inline_row(page, "tiers", {"unit_price": "0.10"})
    page.screens("graduated price with three tiers")
    save(page)

    page.goto(admin_url(base, "catalog/plan", plan_id))
    page.click(".catalog-inline-add a.addlink")
    page.wait_for_url(re.compile(r"/admin/catalog/price/add/"))
    select_containing(page, "#id_fee", "Platform fee")
    page.fill("#id_invoice_display_name", "Platform fee")
    page.select_option("#id_model", "standard")
    page.select_option("#id_payment_term", "in_arrears")
    page.fill("#id_billing_cadence", "P1M")
    page.fill("#id_unit_price", "20")
    save(page)
    page.goto(admin_url(base, "catalog/plan", plan_id))
    assert page.locator("#prices-group tbody tr.has_original").count() == 2
    page.screens("plan with its prices")

    # 4. the price simulator reads the tier breakdown
    page.click("#price-simulator-link")
    page.locator("#simulator-form input[type=text]").first.fill("150")
    page.click("#simulate-button")
    result = page.locator("#simulation-result")
    result.wait_for()
    # 10 free, 90 × $0.50 = $45, 50 × $0.10 = $5, platform fee $20
    assert page.locator("#simulation-total").inner_text().replace(",", "") in {"70.00", "$70.00", "USD 70.00"}
    breakdown = result.inner_text()
    assert "0.5" in breakdown and "0.1" in breakdown
    page.screens("price simulator")

    # 5. a customer and a subscription that started on the first day of last month
    page.goto(f"{base}/admin/catalog/customer/add/")
    page.select_option("#id_merchant", label="Journey Labs")
    page.fill("#id_name", "Ada's Robots")
    page.fill("#id_external_id", "ada-robots")
    page.fill("#id_email", "billing@ada-robots.example")
    save(page, "_continue")
    customer_id = object_id_from_url(page.url)

    # usage through the API: 15 calls inside last month's period, 3 this month, one replayed key. It is sent
    # before the subscription starts: a backdated start bills last month's closed period at once (the
    # subscription_start service, as through the API), so the run below finds it already invoiced.
    for index in range(15):
        _post_event(
            base,
            api_key,
            {
                "type": "api.call",
                "source": "journey-test",
                "subject": customer_id,
                "data": {"endpoint": "/v1/robots"},
                "timestamp": (period_start + timedelta(days=3, minutes=index)).isoformat(),
                "idempotencyKey": f"last-month-{index}",
            },
        )
    replay = _post_event(
        base,
        api_key,
        {
            "type": "api.call",
            "source": "journey-test",
            "subject": customer_id,
            "data": {"endpoint": "/v1/robots"},
            "timestamp": (period_start + timedelta(days=3)).isoformat(),
            "idempotencyKey": "last-month-0",
        },
    )
    assert replay.get("duplicate") is True
    this_month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for index in range(3):
        _post_event(
            base,
            api_key,
            {
                "type": "api.call",
                "source": "journey-test",
                "subject": customer_id,
                "data": {},
                "timestamp": min(this_month + timedelta(minutes=index), now).isoformat(),
                "idempotencyKey": f"this-month-{index}",
            },
        )

    # the customer page's "Add subscription" link opens the add page with the customer and merchant chosen
    page.goto(admin_url(base, "catalog/customer", customer_id))
    page.click("#add-subscription-link")
    page.wait_for_url(re.compile(r"/admin/catalog/subscription/add/"))
    assert "Ada's Robots" in page.locator("#id_customer + .select2").inner_text()
    select_containing(page, "#id_plan", "Journey Pro")
    page.fill("#id_name", "Ada's Robots · Journey Pro")
    page.fill("#id_started_at_0", f"{period_start:%Y-%m-%d}")
    page.fill("#id_started_at_1", "00:00:00")
    page.screens("subscription")
    save(page)
    # its page: plan, status and dates read-only, lifecycle changes as buttons that call the services
    subscription_id = Subscription.objects.get(customer_id=customer_id).pk
    page.goto(admin_url(base, "catalog/subscription", subscription_id))
    # three lifecycle changes and the negotiated rate
    assert page.locator(".subscription-action").count() == 4
    assert page.locator("#subscription-action-negotiate-rate").count() == 1
    assert page.locator("#id_plan").count() == 0
    page.screens("subscription with lifecycle buttons")

    # 6. usage on the customer page, billing run from the admin, the invoice and its PDF
    page.goto(admin_url(base, "catalog/customer", customer_id))
    usage = page.locator("tr", has_text="API calls").first
    assert re.search(r"\b3\b", usage.inner_text()), usage.inner_text()
    page.screens("customer usage this month")

    page.goto(f"{base}/admin/invoicing/invoice/")
    page.click("#run-billing-now")
    # a confirmation first: what a run now would invoice, and why it is started by hand
    page.wait_for_url(re.compile(r"/admin/invoicing/invoice/run-billing/"))
    # (the backdated start already billed last month: nothing is left due)
    assert "would write 0 invoices for 0 subscriptions" in page.locator("#run-billing-summary").inner_text()
    page.fill("#id_reason", "Journey: bill the first period now")
    page.screens("run billing confirmation")
    page.click("#run-billing-form input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/invoicing/billingrun/\d+/change/"))
    page.screens("billing run")

    page.goto(f"{base}/admin/invoicing/invoice/?kind__exact=recurring&customer__id__exact={customer_id}")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1, page.locator("#result_list").inner_text()
    rows.first.locator("th a").click()
    page.wait_for_url(re.compile(r"/admin/invoicing/invoice/inv_[^/]+/change/"))
    total = page.locator(".field-total_display .readonly").inner_text()
    assert total.replace("$", "").strip() in {"22.50", "22.5000"}, total
    lines = page.locator("#lines-group").inner_text()
    assert "API calls" in lines and "Platform fee" in lines
    page.screens("invoice")

    with page.expect_download() as download_info:
        page.click("text=Download PDF")
    pdf_path = download_info.value.path()
    with open(pdf_path, "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"

    # the home page now lists the draft waiting out its grace period
    page.goto(f"{base}/admin/")
    assert page.locator("#drafts-in-grace tbody tr").count() >= 1
    assert "Ada's Robots" in page.locator("#drafts-in-grace").inner_text()
    page.screens("home page after billing")
    invoice_url = None
    invoice_url = page.locator("#drafts-in-grace tbody tr th a", has_text=re.compile("Draft")).first.get_attribute(
        "href"
    )

    # 7. a Billing viewer sees the same pages and can save nothing
    log_out(page, base)
    log_in(page, base, "vic")
    assert page.locator("#revenue-chart-figure").is_visible()
    for url in (
        admin_url(base, "catalog/plan", plan_id),
        admin_url(base, "catalog/customer", customer_id),
        admin_url(base, "catalog/subscription", subscription_id),
        f"{base}{invoice_url}",
    ):
        page.goto(url)
        assert page.locator("#content h1, #content h2").first.is_visible()
        assert page.locator(".subscription-action, #add-subscription-link").count() == 0
        assert page.locator("input[name=_save], input[name=_continue], input[name=_addanother]").count() == 0
    page.screens("viewer on the invoice")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    refused = page.request.post(
        admin_url(base, "catalog/plan", plan_id),
        form={"csrfmiddlewaretoken": csrf, "name": "Hijacked", "_save": "Save"},
        headers={"X-CSRFToken": csrf, "Referer": admin_url(base, "catalog/plan", plan_id)},
        max_redirects=0,
    )
    assert refused.status == 403
    page.goto(admin_url(base, "catalog/plan", plan_id))
    assert "Hijacked" not in page.content()

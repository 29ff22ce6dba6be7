"""Pricing an AI API the way it is sold, in a real browser: a "Billing admin" (finance) builds an input-tokens
price with a rate per model on the plan's price page (typed per 1K tokens, as rows), simulates it per model,
sets a spend alert on a customer, usage is sent through the API with each event's model, and the alert's page
shows the threshold it fired.

Hand-computed, per 1K tokens: nle-small $0.002, nle-large $0.006, any other model the price's own $0.004.
Simulated: 1,500,000 nle-small = $3.00; 250,000 nle-large = $1.50; 100,000 of other models = $0.40; total $4.90.
Sent: 1,000,000 nle-large = $6.00 and 500,000 nle-small = $1.00: $7.00 accrued on a $10.00 budget, past 50 %
($5.00) and short of 80 % ($8.00): one threshold fired.

A second, shorter journey types rates per model and region as rows (issue #23): the region column opens and
takes its name as "region" is typed; per 1K tokens nle-small in eu $0.002, in us $0.0025, nle-large in eu
$0.006 with 10,000 free tokens, stored per token.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Merchant, Price
from catalog.roles import BILLING_ADMIN
from catalog.services import api_key_create
from invoicing.models import SpendAlert, SpendAlertFiring
from invoicing.services import subscription_start
from invoicing.spend.services import spend_evaluate_due
from tests.factories import BillableMetricFactory, PlanFactory
from tests.invoicing.factories import CustomerFactory

from .admin_pages import admin_url, autocomplete, log_in, save, select_containing, staff_user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_finance_builds_a_per_model_price_simulates_it_and_sees_a_spend_alert_fire(page, live_server):
    base = live_server.url
    merchant = Merchant.objects.create(name="Neural Budget Labs", default_currency="USD")
    metric = BillableMetricFactory(
        product__merchant=merchant,
        product__name="Neural Language Engine",
        name="Input tokens",
        unit="tokens",
        event_type="llm.input",
        value_property="$.tokens",
    )
    plan = PlanFactory(merchant=merchant, product=metric.product, name="Per model", currency="USD")
    customer = CustomerFactory(merchant=merchant, name="Acme Robotics", billing_emails="ap@acme.example")
    _, key = api_key_create(merchant=merchant, name="usage sender")
    staff_user_with_role("fin", BILLING_ADMIN)

    # 1. finance adds the input-tokens price from the plan page: $0.004 per 1K, and a row per model
    log_in(page, base, "fin")
    _open_input_tokens_price(page, base, plan)
    page.fill("#id_dimensional_rates_property", "model")
    page.fill("#id_dimensional_rates_value_0", "nle-small")
    page.fill("#id_dimensional_rates_price_0", "0.002")
    page.fill("#id_dimensional_rates_value_1", "nle-large")
    page.fill("#id_dimensional_rates_price_1", "0.006")
    page.select_option("#id_dimensional_rates_unmatched", "default")
    # switching "price per" rewrites the rows' prices with the other rates: $0.002 per 1K is $2 per 1M
    page.select_option("#id_rate_per", "1000000")
    assert (page.input_value("#id_dimensional_rates_price_0"), page.input_value("#id_unit_price")) == ("2", "4")
    page.select_option("#id_rate_per", "1000")
    assert page.input_value("#id_dimensional_rates_price_1") == "0.006"
    page.screens("price with a rate per model")
    save(page)
    price = Price.objects.get(plan=plan)
    assert price.unit_price == Decimal("0.000004")  # typed per 1K, stored per token
    assert [(r["values"]["model"], r["unitPrice"]) for r in price.dimensional_rates["rates"]] == [
        ("nle-small", "0.000002"),
        ("nle-large", "0.000006"),
    ]

    # the price page shows the rows again, per 1K
    page.goto(admin_url(base, "catalog/price", price.pk))
    assert page.input_value("#id_dimensional_rates_value_1") == "nle-large"
    assert page.input_value("#id_dimensional_rates_price_1") == "0.006"

    # 2. the simulator asks a quantity per model and prices each like the invoice
    page.goto(admin_url(base, "catalog/plan", plan.pk))
    page.click("#price-simulator-link")
    page.fill(f"#id_q_{price.pk}__0", "1,500,000")
    page.fill(f"#id_q_{price.pk}__1", "250000")
    page.fill(f"#id_q_{price.pk}__other", "100000")
    page.click("#simulate-button")
    page.locator("#simulation-result").wait_for()
    lines = {
        row.locator("th").inner_text().strip(): row.locator("td").last.inner_text().strip()
        for row in page.locator("#simulation-result tr.simulation-line").all()
    }
    assert lines == {
        "Input tokens — model=nle-small": "$3.00",
        "Input tokens — model=nle-large": "$1.50",
        "Input tokens — other values": "$0.40",
    }
    assert page.locator("#simulation-total").inner_text().strip() == "$4.90"
    page.screens("simulated per model")

    # 3. the customer subscribes (through the API in production) and finance sets a spend alert on them
    start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    subscription_start(customer=customer, plan=plan, started_at=start, now=start)
    page.goto(f"{base}/admin/invoicing/spendalert/add/")
    autocomplete(page, "customer", "Acme Robotics")
    page.fill("#id_name", "Monthly model budget")
    page.fill("#id_currency", "USD")
    page.select_option("#id_threshold_kind", "percent")
    page.fill("#id_budget", "10")
    page.fill("#id_thresholds", "50, 80, 100")
    save(page)
    alert = SpendAlert.objects.get(customer=customer)

    # 4. usage is sent through the API, each event naming its model
    sent_at = (timezone.now() - timedelta(seconds=1)).isoformat()
    for number, (model, tokens) in enumerate((("nle-large", 1_000_000), ("nle-small", 500_000)), start=1):
        response = page.request.post(
            f"{base}/v0/events",
            headers={"Authorization": f"Bearer {key}"},
            data={
                "type": "llm.input",
                "source": "https://acme.example/app",
                "subject": customer.pk,
                "timestamp": sent_at,
                "idempotencyKey": f"per-model-{number}",
                "data": {"tokens": tokens, "model": model},
            },
        )
        assert response.status == 202, response.text()

    # the beat's evaluation runs (every minute in production): $7.00 accrued, past 50 % of $10
    spend_evaluate_due(now=timezone.now())
    firing = SpendAlertFiring.objects.get(alert=alert)
    assert (firing.threshold, firing.threshold_amount, firing.accrued) == (Decimal(50), Decimal(5), Decimal(7))

    # 5. finance opens the alert: the 50 % threshold fired at $7.00 accrued
    page.goto(f"{base}/admin/invoicing/spendalert/")
    page.click(f"text={alert.name}")
    page.wait_for_url(re.compile(r"/admin/invoicing/spendalert/[^/]+/change/$"))
    fired = page.locator("#firings-group")
    assert "thresholds fired" in fired.inner_text().lower()
    cells = {
        name: fired.locator(f"td.field-{name}").all_inner_texts()
        for name in ("threshold", "threshold_amount", "accrued")
    }
    assert cells == {"threshold": ["50"], "threshold_amount": ["5"], "accrued": ["7"]}
    page.screens("the alert fired")


def test_finance_types_rates_per_model_and_region_as_rows(page, live_server):
    base = live_server.url
    metric = BillableMetricFactory(product__name="Neural Language Engine", name="Input tokens", unit="tokens")
    plan = PlanFactory(merchant=metric.product.merchant, product=metric.product, name="Per region", currency="USD")
    staff_user_with_role("fin", BILLING_ADMIN)

    log_in(page, base, "fin")
    _open_input_tokens_price(page, base, plan)
    # one property to start with: the second column waits for its name, the third box for the second
    assert page.locator('th[data-value-column="0"]').text_content() == "Value"
    assert page.locator("#id_dimensional_rates_value2_0").is_hidden()
    assert page.locator("#id_dimensional_rates_property3").is_hidden()
    page.fill("#id_dimensional_rates_property", "model")
    page.fill("#id_dimensional_rates_property2", "region")
    assert page.locator('th[data-value-column="0"]').text_content() == "model"
    assert page.locator('th[data-value-column="1"]').text_content() == "region"
    assert page.locator("#id_dimensional_rates_property3").is_visible()
    assert page.locator("#id_dimensional_rates_value3_0").is_hidden()
    for row, (model, region, price, free) in enumerate(
        (("nle-small", "eu", "0.002", ""), ("nle-small", "us", "0.0025", ""), ("nle-large", "eu", "0.006", "10,000"))
    ):
        page.fill(f"#id_dimensional_rates_value_{row}", model)
        page.fill(f"#id_dimensional_rates_value2_{row}", region)
        page.fill(f"#id_dimensional_rates_price_{row}", price)
        page.fill(f"#id_dimensional_rates_free_{row}", free)
    page.select_option("#id_dimensional_rates_unmatched", "refuse")
    page.screens("rates per model and region")
    save(page, "_continue")

    price = Price.objects.get(plan=plan)
    assert price.dimensional_rates == {
        "dimensions": ["model", "region"],
        "tierScope": "combination",
        "unmatched": "refuse",
        "rates": [
            {"values": {"model": "nle-small", "region": "eu"}, "model": "standard", "unitPrice": "0.000002"},
            {"values": {"model": "nle-small", "region": "us"}, "model": "standard", "unitPrice": "0.0000025"},
            {
                "values": {"model": "nle-large", "region": "eu"},
                "model": "standard",
                "unitPrice": "0.000006",
                "freeUnits": "10000",
            },
        ],
    }
    # "save and continue" shows the rows again, per 1K, with three blank rows under them
    assert page.locator('th[data-value-column="1"]').text_content() == "region"
    assert page.input_value("#id_dimensional_rates_value2_1") == "us"
    assert page.input_value("#id_dimensional_rates_price_1") == "0.0025"
    assert page.locator("#id_dimensional_rates_value2_5").is_visible()
    page.screens("the rows shown again")


def _open_input_tokens_price(page, base: str, plan) -> None:
    """From the plan's page, a new standard price of its input tokens in arrears, $0.004 per 1K."""
    page.goto(admin_url(base, "catalog/plan", plan.pk))
    page.click(".catalog-inline-add a.addlink")
    page.wait_for_url(re.compile(r"/admin/catalog/price/add/"))
    select_containing(page, "#id_billable_metric", "Input tokens")
    page.fill("#id_invoice_display_name", "Input tokens")
    page.select_option("#id_model", "standard")
    page.select_option("#id_payment_term", "in_arrears")
    page.select_option("#id_rate_per", "1000")
    page.fill("#id_unit_price", "0.004")

"""Issue 23, end to end through the HTTP API alone: an AI API priced per model, a month on a test clock,
the invoice it issues, and the cost, margin and revenue reads that must agree with it.

Everything is created over HTTP on a live server: by the unmodified Paygentic client where it has the
operation, by plain HTTP for our extensions (``dimensionalRates``, ``/v0/events/batch``,
``/v0/revenue/recurring``). The only ORM write is the merchant and its API key (no API creates those).
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from paygentic_sdk import Paygentic

from catalog.services import api_key_create
from tests.factories import MerchantFactory

JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2025, 2, 1, tzinfo=UTC)
MAR_1 = datetime(2025, 3, 1, tzinfo=UTC)

# Tokens per model: nle-small at $0.000001, nle-large at $0.000004, any other model at the price's own
# $0.000002. GPU-seconds cost $0.002 each.
RATES = {
    "dimensions": ["model"],
    "tierScope": "combination",
    "unmatched": "default",
    "rates": [
        {"values": {"model": "nle-small"}, "model": "standard", "unitPrice": "0.000001"},
        {"values": {"model": "nle-large"}, "model": "standard", "unitPrice": "0.000004"},
    ],
}


def _event(subject: str, key: str, day: int, model: str, tokens: int, gpu_seconds: int) -> dict:
    return {
        "type": "llm.completion",
        "source": "https://api.example.com",
        "subject": subject,
        "idempotencyKey": key,
        "timestamp": datetime(2025, 1, day, 12, tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "data": {"model": model, "tokens": tokens, "gpu_seconds": gpu_seconds},
    }


@pytest.mark.django_db(transaction=True)
def test_an_ai_api_month_priced_per_model_with_its_cost_margin_and_revenue(live_server):
    merchant = MerchantFactory(name="Neural Labs", default_currency="USD")
    _, key = api_key_create(merchant=merchant, name="e2e")
    mid = merchant.pk
    http = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"})
    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk, http:
        # given: the catalog (client), with the per-model rates on the price (our extension, plain HTTP)
        product = sdk.products.create(merchant_id=mid, name="Neural Language Engine", description="LLM API")
        tokens = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=product.id,
            name="Tokens",
            description="Tokens processed",
            unit="tokens",
            aggregation="SUM",
            event_type="llm.completion",
            value_property="$.tokens",
            group_by={"model": "$.model"},
        )
        answer = http.post(
            "/v0/prices",
            json={
                "billableMetricId": tokens.id,
                "model": "standard",
                "invoiceDisplayName": "Tokens",
                "paymentTerm": "in_arrears",
                "properties": {"unitPrice": "0.000002"},
                "dimensionalRates": RATES,
            },
        )
        assert answer.status_code == 201, answer.text
        price = answer.json()
        plan = sdk.plans.create(
            merchant_id=mid,
            product_id=product.id,
            name="Pay as you go",
            currency="USD",
            billing_cadence="P1M",
            prices=[{"price_id": price["id"], "key": "tokens"}],
        )
        customer = sdk.customers.create(
            merchant_id=mid,
            consumer={"name": "Acme Inc", "email": "billing@acme.io", "address": {"country": "US"}},
            external_id="acme-001",
        )
        cost = sdk.costs.create_cost(
            type_="metered",
            name="GPU time",
            unit_cost=0.002,
            currency="USD",
            product_id=product.id,
            aggregation="SUM",
            event_type="llm.completion",
            unit="GPU-seconds",
            value_property="$.gpu_seconds",
            group_by={"model": "$.model"},
        )
        clock = sdk.test_clocks.create(name="January", current_time=JAN_1)
        subscription = sdk.subscriptions.create(
            name="Acme - PAYG",
            plan_id=plan.id,
            customer_id=customer.customer_id,
            started_at=JAN_1,
            test_clock_id=clock.id,
        )
        assert subscription.status == "active"
        subject = customer.customer_id

        # when: January's usage, two events one by one (client), three in a batch, one of them a replay
        for event in (
            _event(subject, "req-1", 5, "nle-small", 2_000_000, 100),
            _event(subject, "req-2", 10, "nle-large", 500_000, 300),
        ):
            sdk.events.ingest(request=event)
        batch = http.post(
            "/v0/events/batch",
            json={
                "events": [
                    _event(subject, "req-3", 15, "nle-small", 1_000_000, 50),
                    _event(subject, "req-4", 20, "nle-x", 250_000, 50),
                    _event(subject, "req-1", 5, "nle-small", 2_000_000, 100),
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        # and the month closes, then its 24 h grace period passes
        assert sdk.test_clocks.advance(id=clock.id, request_body={"advance_by": "P1M"}).current_time == FEB_1
        sdk.test_clocks.advance(id=clock.id, request_body={"advance_by": "P1D"})

        # then: one line per model, each rounded once:
        #   nle-small 3,000,000 × 0.000001 = 3.00; nle-large 500,000 × 0.000004 = 2.00;
        #   other models (nle-x) 250,000 × 0.000002 = 0.50; total 5.50
        [invoice] = [i for i in sdk.invoices_v2.list(request={"subscription_id": subscription.id}).data]
        invoice = sdk.invoices_v2.get(id=invoice.id, expand="lineItems")
        assert (invoice.status, invoice.period_start, invoice.period_end) == ("ISSUED", JAN_1, FEB_1)
        assert (invoice.subtotal, invoice.total_tax, invoice.grand_total) == ("5.50", "0.00", "5.50")
        lines = sorted(
            (line.invoice_display_name, line.quantity, line.unit_price, line.total_amount)
            for line in invoice.line_items.line_items
        )
        assert lines == [
            ("Tokens", 250_000, "0.000002", "0.50"),
            ("Tokens", 500_000, "0.000004", "2.00"),
            ("Tokens", 3_000_000, "0.000001", "3.00"),
        ]
        # each line names its combination (our extension, ``description``, which the client does not read)
        described = http.get(f"/v2/invoices/{invoice.id}/lineItems").json()["lineItems"]
        assert sorted((line["description"].split(":")[0], line["totalAmount"]) for line in described) == [
            ("Tokens — model=nle-large", "2.00"),
            ("Tokens — model=nle-small", "3.00"),
            ("Tokens — other values", "0.50"),
        ]

        # then: the cost, 500 GPU-seconds × 0.002 = 1.00 (nle-small 150 s 0.30, nle-large 300 s 0.60,
        # nle-x 50 s 0.10), from the same events
        summary = sdk.costs.get_cost_summary(id=cost.id, from_=JAN_1, to=FEB_1)
        assert (summary.total_quantity, summary.total_cost) == (500, 1)
        report = sdk.costs.get_cost_report(from_=JAN_1, to=FEB_1, group_by="model", cost_id=[cost.id])
        assert [(g.key, g.total_quantity, g.total_cost) for g in report.groups] == [
            ("nle-large", 300, 0.6),
            ("nle-small", 150, 0.3),
            ("nle-x", 50, 0.1),
        ]
        assert report.total_cost == summary.total_cost

        # then: margin over the invoice's revenue: 5.50 − 1.00 = 4.50, 4.50 / 5.50 = 81.82 %
        profitability = sdk.profitability.get_profitability(merchant_id=mid, from_=JAN_1, to=MAR_1)
        [row] = profitability.rows
        assert (row.customer_id, row.net_revenue, row.total_cost, row.profit, row.margin_pct, row.cost_data) == (
            subject,
            "5.50",
            "1.00",
            "4.50",
            "81.82",
            "recorded",
        )

        # then: revenue is the invoice (issued on the clock's Feb 2), owed in full
        revenue = sdk.revenue.get(start_time=FEB_1, end_time=MAR_1, bucket_width="week")
        assert (revenue.net_revenue, revenue.invoices.issued.amount, revenue.invoices.issued.count) == (
            "5.50",
            "5.50",
            1,
        )
        assert sum(float(bucket.revenue) for bucket in revenue.trend) == 5.5
        accounts = sdk.revenue.get_revenue_accounts(merchant_id=mid)
        assert [(a.customer_id, a.outstanding.amount, a.outstanding.count) for a in accounts.data] == [
            (subject, "5.50", 1)
        ]
        # the reads agree with each other and with the invoice
        assert row.net_revenue == revenue.net_revenue == invoice.subtotal
        assert float(row.total_cost) == summary.total_cost == report.total_cost
        # usage only: nothing recurring
        recurring = http.get("/v0/revenue/recurring", params={"asOf": "2025-02-02T00:00:00Z"}).json()
        assert (recurring["mrr"], recurring["arr"], recurring["subscriptionCount"]) == ("0.00", "0.00", 1)

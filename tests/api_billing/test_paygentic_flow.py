"""The unmodified Paygentic client drives a live server through the digest's §8 flow, end to end:
catalog, customer, test clock, subscription (Invoice 0), events, meter, clock advance, invoice, PDF, payment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from tests.factories import MerchantFactory

JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2025, 2, 1, tzinfo=UTC)


def _sdk(live_server, name: str):
    merchant = MerchantFactory(name=name)
    _, key = api_key_create(merchant=merchant, name="sdk")
    return merchant.id, Paygentic(bearer_auth=key, server_url=live_server.url)


@pytest.mark.django_db(transaction=True)
def test_llm_api_month_on_a_test_clock(live_server):
    mid, sdk = _sdk(live_server, "Neural Labs")
    with sdk:
        # given: the catalog of §8 (a $49 monthly platform fee in advance, input and output tokens in arrears)
        prod = sdk.products.create(merchant_id=mid, name="Neural Language Engine", description="LLM inference API")
        m_in = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Input tokens",
            description="Prompt tokens consumed",
            unit="tokens",
            aggregation="SUM",
            event_type="llm.completion",
            value_property="$.input_tokens",
            group_by={"model": "$.model"},
        )
        m_out = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Output tokens",
            description="Completion tokens generated",
            unit="tokens",
            aggregation="SUM",
            event_type="llm.completion",
            value_property="$.output_tokens",
        )
        fee = sdk.fees.create(merchant_id=mid, product_id=prod.id, name="Platform fee", description="Monthly access")
        p_fee = sdk.prices.create(
            fee_id=fee.id,
            invoice_display_name="Platform fee",
            payment_term="in_advance",
            billing_cadence="P1M",
            properties={"unit_price": "49.00"},
            quantity=1,
        )
        p_in = sdk.prices.create(
            billable_metric_id=m_in.id,
            model="standard",
            invoice_display_name="Input tokens",
            payment_term="in_arrears",
            properties={"unit_price": "0.000002"},
        )
        p_out = sdk.prices.create(
            billable_metric_id=m_out.id,
            model="standard",
            invoice_display_name="Output tokens",
            payment_term="in_arrears",
            properties={"unit_price": "0.000006"},
        )
        plan = sdk.plans.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Pro",
            currency="USD",
            billing_cadence="P1M",
            prices=[
                {"price_id": p_fee.id, "key": "platform_fee"},
                {"price_id": p_in.id, "key": "input_tokens"},
                {"price_id": p_out.id, "key": "output_tokens"},
            ],
        )
        cust = sdk.customers.create(
            merchant_id=mid,
            consumer={
                "name": "Acme Inc",
                "email": "billing@acme.io",
                "address": {"country": "US", "state": "CA", "zip_code": "94105", "city": "San Francisco"},
            },
            external_id="acme-001",
        )
        tc = sdk.test_clocks.create(name="demo", current_time=JAN_1)

        # when: subscribing on the clock
        sub = sdk.subscriptions.create(
            name="Acme - Pro", plan_id=plan.id, customer_id=cust.customer_id, started_at=JAN_1, test_clock_id=tc.id
        )

        # then: Invoice 0 ($49 in advance) must be paid before the subscription is active
        assert sub.status == "pending_payment"
        assert sub.payment.status == "pending"
        assert sub.payment.amount == "49.00"
        assert sub.payment.breakdown.upfront_charges == "49.00"
        assert sub.payment.payment_session_id == sub.payment.invoice_id
        paid = sdk.invoices_v2.record_invoice_payment(id=sub.payment.invoice_id, method="out_of_band", reason="wire")
        assert paid.method == "out_of_band"
        assert paid.invoice.status == "PAID"
        assert paid.invoice.sequence_number == 0
        sub = sdk.subscriptions.get(id=sub.id)
        assert sub.status == "active"
        assert sub.payment.status == "paid"

        # when: usage in January (two events of 1.2M/350k and 800k/150k tokens) and one duplicate
        for key, when, tokens_in, tokens_out in (
            ("req_0001", datetime(2025, 1, 5, tzinfo=UTC), 1_200_000, 350_000),
            ("req_0002", datetime(2025, 1, 20, 12, tzinfo=UTC), 800_000, 150_000),
            ("req_0001", datetime(2025, 1, 5, tzinfo=UTC), 1_200_000, 350_000),
        ):
            sdk.events.ingest(
                request={
                    "type": "llm.completion",
                    "source": "https://api.example.com",
                    "subject": cust.customer_id,
                    "data": {"input_tokens": tokens_in, "output_tokens": tokens_out, "model": "nle-1"},
                    "idempotency_key": key,
                    "timestamp": when,
                }
            )
        meter = sdk.billable_metrics.meter(
            id=m_in.id, from_=JAN_1, to=FEB_1, subject=cust.customer_id, window_size="DAY"
        )
        pending = sdk.invoices_v2.list_line_items(request={"subscription_id": sub.id, "status": "pending"})

        # then: the meter and the estimate see 2,000,000 input tokens
        assert meter.total_value == 2_000_000
        metered = {line.display_name: line for line in pending.data if line.type == "metered"}
        assert metered["Input tokens"].estimated_metered_quantity == "2000000"
        assert metered["Input tokens"].estimated_subtotal == "4"
        assert pending.summary.metered_estimated_subtotal == "7"  # $4 input + $3 output

        # when: a month passes
        advanced = sdk.test_clocks.advance(id=tc.id, request_body={"advance_by": "P1M"})
        assert advanced.current_time == FEB_1
        invs = sdk.invoices_v2.list(request={"subscription_id": sub.id})

        # then: January is closed: input 2,000,000 × 0.000002 = 4.00, output 500,000 × 0.000006 = 3.00,
        # plus February's platform fee 49.00 in advance → 56.00; a draft during the 24 h grace period
        january = next(inv for inv in invs.data if inv.sequence_number == 1)
        assert january.status == "DRAFT"
        assert january.grand_total == "56.00"
        assert january.period_start == JAN_1
        assert january.period_end == FEB_1

        # when: the grace period passes
        sdk.test_clocks.advance(id=tc.id, request_body={"advance_by": "P1D"})
        inv = sdk.invoices_v2.get(id=january.id, expand="lineItems")

        # then: issued, numbered, with the lines that add up
        assert inv.status == "ISSUED"
        assert inv.invoice_number.endswith("-000002")
        assert (inv.subtotal, inv.total_tax, inv.grand_total) == ("56.00", "0.00", "56.00")
        lines = {line.invoice_display_name: line for line in inv.line_items.line_items}
        assert inv.line_items.total_count == 3
        assert lines["Input tokens"].quantity == 2_000_000
        assert lines["Input tokens"].unit_price == "0.000002"
        assert lines["Input tokens"].total_amount == "4.00"
        assert lines["Output tokens"].quantity == 500_000
        assert lines["Output tokens"].total_price == "3.00"
        assert lines["Platform fee"].total_amount == "49.00"
        assert lines["Platform fee"].payment_term == "in_advance"
        assert lines["Platform fee"].period_start == FEB_1
        page = sdk.invoices_v2.get_line_items(id=inv.id, limit=2)
        assert len(page.line_items) == 2
        rest = sdk.invoices_v2.get_line_items(id=inv.id, limit=2, page_token=page.next_page_token)
        assert len(rest.line_items) == 1
        assert rest.next_page_token is None

        pdf = sdk.invoices_v2.download_invoice_pdf(id=inv.id)
        assert pdf.status_code == 200
        assert pdf.read().startswith(b"%PDF")

        paid = sdk.invoices_v2.record_invoice_payment(id=inv.id, method="out_of_band", reason="wire")
        assert paid.invoice.status == "PAID"
        assert paid.invoice.paid_amount == "56.00"
        assert paid.invoice.unpaid_amount == "0.00"
        with pytest.raises(errors.Error) as again:
            sdk.invoices_v2.record_invoice_payment(id=inv.id, method="out_of_band")
        assert again.value.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_cloud_analytics_volume_egress_on_a_test_clock(live_server):
    mid, sdk = _sdk(live_server, "Cloud Analytics")
    with sdk:
        # given: egress priced by volume (the whole quantity at the rate of the tier it reaches), in arrears
        prod = sdk.products.create(merchant_id=mid, name="Cloud Analytics", description="Managed analytics")
        egress = sdk.billable_metrics.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Egress",
            description="Data transferred out",
            unit="GB",
            aggregation="SUM",
            event_type="egress",
            value_property="$.gb",
        )
        p_egress = sdk.prices.create(
            billable_metric_id=egress.id,
            model="volume",
            invoice_display_name="Egress",
            payment_term="in_arrears",
            properties={
                "tiers": [
                    {"up_to": "1000", "unit_price": "0.09"},
                    {"up_to": "10000", "unit_price": "0.07"},
                    {"up_to": None, "unit_price": "0.05"},
                ]
            },
        )
        plan = sdk.plans.create(
            merchant_id=mid,
            product_id=prod.id,
            name="Usage",
            currency="USD",
            billing_cadence="P1M",
            prices=[p_egress.id],
        )
        tc = sdk.test_clocks.create(name="egress", current_time=JAN_1)
        sub = sdk.subscriptions.create(
            name="Globex - Usage",
            plan_id=plan.id,
            started_at=JAN_1,
            test_clock_id=tc.id,
            customer={"name": "Globex", "email": "ap@globex.test", "address": {"country": "DE", "zip_code": "10115"}},
        )
        # then: nothing in advance → active at once, no Invoice 0
        assert sub.status == "active"
        assert sub.payment is None

        # when: 2,500 GB + 1,700 GB in January, then the month closes and its grace period passes
        for key, gb in (("e1", 2500), ("e2", 1700)):
            sdk.events.ingest(
                request={
                    "type": "egress",
                    "source": "https://cloud.example.com",
                    "subject": sub.customer_id,
                    "data": {"gb": gb},
                    "idempotency_key": key,
                    "timestamp": datetime(2025, 1, 10, tzinfo=UTC),
                }
            )
        sdk.test_clocks.advance(id=tc.id, request_body={"advance_by": "P1M1D"})
        invs = sdk.invoices_v2.list(request={"subscription_id": sub.id, "status": "ISSUED"})

        # then: 4,200 GB falls in the 1,001–10,000 tier: 4,200 × 0.07 = 294.00
        assert len(invs.data) == 1
        inv = sdk.invoices_v2.get(id=invs.data[0].id, expand="lineItems")
        assert inv.grand_total == "294.00"
        (line,) = inv.line_items.line_items
        assert line.quantity == 4200
        assert line.event_type == "usage"
        assert line.metric_unit == "GB"
        assert line.total_amount == "294.00"
        assert sdk.invoices_v2.download_invoice_pdf(id=inv.id).read().startswith(b"%PDF")
        assert sdk.invoices_v2.record_invoice_payment(id=inv.id, method="out_of_band").invoice.status == "PAID"

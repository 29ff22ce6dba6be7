"""The subscription page's "Negotiate a rate": the API's price interval edit (subscription_intervals_edit) from the
admin, recorded as an interval change; a "Billing viewer" may not."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.models import Price
from invoicing.models import Invoice, InvoiceKind, SubscriptionIntervalChange
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.invoicing.factories import CustomerFactory, PlanFactory, metered_price, record_usage

pytestmark = pytest.mark.django_db

JAN_1, FEB_1, MAR_1 = (datetime(2026, month, 1, tzinfo=UTC) for month in (1, 2, 3))


@pytest.fixture
def enterprise(seller):
    plan = PlanFactory(merchant=seller, product__merchant=seller, name="Enterprise")
    inputs = metered_price(plan, "0.000002", name="Input tokens", event_type="llm.input", plan_line_key="input_tokens")
    customer = CustomerFactory(merchant=seller, name="Acme AI", tax_rate=Decimal("0"))
    return subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1), inputs


def url(subscription) -> str:
    return reverse("admin:invoicing_subscription_negotiate_rate", args=(quote(subscription.pk),))


def test_a_rate_negotiated_in_the_admin_is_billed_from_the_first_period_not_invoiced(billing_admin_client, enterprise):
    subscription, inputs = enterprise
    record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 1_000_000)
    billing_run_execute(as_of=FEB_1)
    january = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING, period_start=JAN_1)
    invoice_finalize(invoice=january, now=FEB_1)

    page = billing_admin_client.get(url(subscription))
    assert page.status_code == 200
    assert list(page.context["form"].fields["line"].choices) == [("input_tokens", "Input tokens (input_tokens)")]
    response = billing_admin_client.post(
        url(subscription),
        {"line": "input_tokens", "unit_price": "0.0000015", "change_reason": "commercial", "description": "Deal"},
    )
    assert response.status_code == 302
    rate = Price.objects.get(customer=subscription.customer, overrides=inputs)
    change = SubscriptionIntervalChange.objects.get(subscription=subscription)
    assert (rate.unit_price, change.change_reason, change.description) == (Decimal("0.0000015"), "commercial", "Deal")
    record_usage(subscription.customer, inputs.billable_metric, datetime(2026, 2, 10, tzinfo=UTC), 2_000_000)
    billing_run_execute(as_of=MAR_1)
    # 2,000,000 × 0.0000015 = 3.00; January keeps 1,000,000 × 0.000002 = 2.00
    assert Invoice.objects.get(subscription=subscription, period_start=FEB_1).total == Decimal("3.00")
    assert Invoice.objects.get(pk=january.pk).total == Decimal("2.00")


def test_a_refusal_is_shown_on_the_form_and_nothing_is_written(billing_admin_client, enterprise):
    subscription, inputs = enterprise
    billing_run_execute(as_of=FEB_1)  # January's draft is open: its refresh would re-rate it
    response = billing_admin_client.post(
        url(subscription), {"line": "input_tokens", "unit_price": "0.0000015", "change_reason": "commercial"}
    )
    assert response.status_code == 200
    assert "draft invoice" in " ".join(response.context["form"].non_field_errors())
    assert not Price.objects.filter(customer=subscription.customer).exists()


def test_a_viewer_cannot_negotiate(viewer_client, enterprise):
    subscription, _ = enterprise
    assert viewer_client.get(url(subscription)).status_code == 403
    body = {"line": "input_tokens", "unit_price": "0.0000015", "change_reason": "commercial"}
    assert viewer_client.post(url(subscription), body).status_code == 403
    assert not SubscriptionIntervalChange.objects.exists()


def test_a_rate_with_an_end_then_the_next_rate_from_where_it_ends(billing_admin_client, enterprise):
    subscription, inputs = enterprise
    body = {"line": "input_tokens", "unit_price": "0.0000015", "change_reason": "commercial"}
    # an end inside February: the rate bills January and February, the plan price from March 1
    response = billing_admin_client.post(url(subscription), {**body, "end_date": "2026-02-15"})
    assert response.status_code == 302
    first = Price.objects.get(customer=subscription.customer, overrides=inputs)
    assert (first.effective_from, first.effective_until) == (JAN_1, MAR_1)
    # the line is negotiable again from March 1: the next rate starts there, open-ended
    page = billing_admin_client.get(url(subscription))
    assert list(page.context["form"].fields["line"].choices) == [("input_tokens", "Input tokens (input_tokens)")]
    response = billing_admin_client.post(url(subscription), {**body, "unit_price": "0.000001"})
    assert response.status_code == 302
    second = Price.objects.exclude(pk=first.pk).get(customer=subscription.customer, overrides=inputs)
    assert (second.unit_price, second.effective_from, second.effective_until) == (Decimal("0.000001"), MAR_1, None)
    # nothing left to negotiate on the line: the open-ended rate rates every period from March
    page = billing_admin_client.get(url(subscription))
    assert list(page.context["form"].fields["line"].choices) == []

"""The unmodified Paygentic client against a live server: createLineItem (idempotent by its header) and
listProjectedInvoices (its query parameters and offset pagination)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from paygentic_sdk import Paygentic, errors

from catalog.services import api_key_create
from invoicing.models import ManualLineItem
from invoicing.services import subscription_start
from tests.factories import MerchantFactory

from .factories import CustomerFactory, TestClockFactory, llm_plan

JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_client_adds_a_manual_line_and_reads_projections(live_server):
    # given: the LLM API's Pro plan ($49 a month in advance, tokens in arrears) on a test clock
    merchant = MerchantFactory(name="Neural Labs")
    _, key = api_key_create(merchant=merchant, name="sdk")
    plan = llm_plan(merchant)
    customer = CustomerFactory(merchant=merchant, name="Acme Inc", time_zone="UTC")
    clock = TestClockFactory(merchant=merchant, current_time=JAN_1)
    sub = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1, test_clock=clock)

    with Paygentic(bearer_auth=key, server_url=live_server.url) as sdk:
        # when
        item = sdk.invoices_v2.create_line_item(
            subscription_id=sub.id,
            display_name="Onboarding workshop",
            currency="USD",
            quantity=2,
            unit_price=150.0,
            idempotency_key_param="workshop-1",
        )
        replay = sdk.invoices_v2.create_line_item(
            subscription_id=sub.id,
            display_name="Onboarding workshop",
            currency="USD",
            quantity=2,
            unit_price=150.0,
            idempotency_key_param="workshop-1",
        )
        with pytest.raises(errors.Error) as reused:
            sdk.invoices_v2.create_line_item(
                subscription_id=sub.id,
                display_name="Onboarding workshop",
                currency="USD",
                quantity=3,
                unit_price=150.0,
                idempotency_key_param="workshop-1",
            )
        projected = sdk.invoices_v2.list_projected_invoices(
            subscription_id=sub.id, to=datetime(2025, 4, 1, 0, 0, 1, tzinfo=UTC), limit=2, offset=0
        )
        rest = sdk.invoices_v2.list_projected_invoices(
            subscription_id=sub.id, to=datetime(2025, 4, 1, 0, 0, 1, tzinfo=UTC), limit=2, offset=2
        )

    # then
    assert (item.type, item.status, item.subtotal) == ("manual", "pending", "300.00")
    assert replay.id == item.id
    assert reused.value.status_code == 409
    assert ManualLineItem.objects.get().amount == Decimal("300.00")
    assert projected.pagination.total == 3
    assert [invoice.status for invoice in projected.data] == ["PROJECTED", "PROJECTED"]
    assert [invoice.period_start for invoice in [*projected.data, *rest.data]] == [
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2025, 2, 1, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
    ]
    # projections are fixed charges: the next month's platform fee, and on January's close the pending workshop
    assert [invoice.subtotal for invoice in [*projected.data, *rest.data]] == ["349.00", "49.00", "49.00"]

"""Spend alerts: thresholds of 50 %, 80 % and 100 % of a $1,000 budget fire once each as usage accrues (as
a signed webhook and an e-mail through a real SMTP server), never twice in a period, and again the next
period. Worked figures: calls at $0.01 each; the $20 platform fee is not usage and never counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import standardwebhooks
from django.db import IntegrityError, transaction

from invoicing.models import SpendAlertFiring, SpendEmailStatus, SpendThresholdKind, SpendWatch
from invoicing.services import subscription_start
from invoicing.spend.selectors import spend_accrued, spend_watches_due
from invoicing.spend.services import (
    SpendAlertInput,
    SpendError,
    spend_alert_create,
    spend_evaluate_customer,
    spend_evaluate_due,
)
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage
from tests.invoicing.test_webhook_events import Receiver
from tests.wallets.factories import WebhookEndpointFactory
from wallets.models import WebhookDelivery

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def jan(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


@pytest.fixture
def customer(seller):
    seller.email = "finance@neural.example"
    seller.save()
    return CustomerFactory(merchant=seller, name="Acme Corp", billing_emails="ap@acme.example")


@pytest.fixture
def calls(customer):
    """Acme on Pro since Jan 1: a $20 fee and calls at $0.01; the calls metric."""
    plan = PlanFactory(merchant=customer.merchant, product__merchant=customer.merchant, name="Pro", currency="USD")
    fee_price(plan, "20.00")
    price = metered_price(plan, "0.01", name="Calls", unit="calls")
    subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    return price.billable_metric


def budget_alert(customer, **extra):
    return spend_alert_create(
        customer=customer,
        data=SpendAlertInput(
            currency="USD",
            threshold_kind=SpendThresholdKind.PERCENT,
            budget="1000",
            thresholds=("50", "80", "100"),
            name="Monthly budget",
            **extra,
        ),
    )


def fired(alert) -> list[tuple[str, str, str]]:
    """(period start, threshold, accrued) of the alert's firings, oldest first."""
    return [
        (f"{f.period_start:%Y-%m-%d}", f"{f.threshold.normalize():f}", f"{f.accrued.normalize():f}")
        for f in SpendAlertFiring.objects.filter(alert=alert).order_by("fired_at", "threshold")
    ]


def test_accrued_cost_is_the_usage_of_the_period_without_fees(customer, calls):
    record_usage(customer, calls, jan(5), 40_000)

    spend = spend_accrued(customer=customer, currency="USD", now=jan(6))

    # 40,000 calls × $0.01 = $400 (the $20 fee is a fee, not usage)
    assert (spend.amount, spend.period_start, spend.period_end) == (Decimal("400"), JAN_1, FEB_1)


def test_thresholds_fire_once_each_as_usage_accrues_and_again_next_period(customer, calls):
    alert = budget_alert(customer)

    # $400: below 50 % of $1,000
    record_usage(customer, calls, jan(5), 40_000)
    spend_evaluate_due(now=jan(5, 12))
    assert fired(alert) == []

    # $550: 50 % ($500) crossed
    record_usage(customer, calls, jan(10), 15_000)
    spend_evaluate_due(now=jan(10, 12))
    assert fired(alert) == [("2026-01-01", "50", "550")]

    # evaluated again without new usage (forced): nothing fires twice
    spend_evaluate_customer(customer_id=customer.pk, now=jan(11))
    assert spend_watches_due(now=jan(12), limit=10) == []

    # $1,050 in one jump: 80 % ($800) and 100 % ($1,000) both cross, once each
    record_usage(customer, calls, jan(20), 50_000)
    spend_evaluate_due(now=jan(20, 12))
    spend_evaluate_customer(customer_id=customer.pk, now=jan(21))
    assert fired(alert) == [("2026-01-01", "50", "550"), ("2026-01-01", "80", "1050"), ("2026-01-01", "100", "1050")]

    # February starts from zero: $600 crosses 50 % again, in its own period
    record_usage(customer, calls, datetime(2026, 2, 3, tzinfo=UTC), 60_000)
    spend_evaluate_due(now=datetime(2026, 2, 3, 12, tzinfo=UTC))
    assert fired(alert)[-1] == ("2026-02-01", "50", "600")
    assert len(fired(alert)) == 4


def test_amount_thresholds_and_a_subscription_scope(customer, calls):
    subscription = customer.subscriptions.get()
    alert = spend_alert_create(
        customer=customer,
        data=SpendAlertInput(
            currency="USD",
            threshold_kind=SpendThresholdKind.AMOUNT,
            thresholds=("250.5",),
            subscription_id=subscription.pk,
        ),
    )
    record_usage(customer, calls, jan(5), 25_050)  # $250.50 exactly: reached counts as crossed

    spend_evaluate_due(now=jan(6))

    assert fired(alert) == [("2026-01-01", "250.5", "250.5")]


def test_a_threshold_fires_once_per_period_by_constraint(customer, calls):
    alert = budget_alert(customer)
    record_usage(customer, calls, jan(10), 55_000)
    spend_evaluate_due(now=jan(10, 12))

    with pytest.raises(IntegrityError), transaction.atomic():
        SpendAlertFiring.objects.create(
            alert=alert,
            period_start=JAN_1,
            period_end=FEB_1,
            threshold=Decimal("50"),
            threshold_amount=Decimal("500"),
            accrued=Decimal("550"),
            fired_at=jan(10, 13),
        )


def test_the_firing_arrives_as_a_signed_webhook_and_one_e_mail(
    customer, calls, smtp, django_capture_on_commit_callbacks
):
    receiver = Receiver()
    try:
        endpoint = WebhookEndpointFactory(
            merchant=customer.merchant, url=receiver.url, event_types=["spend.alert.fired.v0"]
        )
        alert = budget_alert(customer)
        record_usage(customer, calls, jan(10), 55_000)

        with django_capture_on_commit_callbacks(execute=True):
            spend_evaluate_due(now=jan(10, 12))
        with django_capture_on_commit_callbacks(execute=True):
            spend_evaluate_customer(customer_id=customer.pk, now=jan(11))  # nothing new: nothing sent again

        [(headers, body)] = receiver.requests
    finally:
        receiver.close()
    event = standardwebhooks.Webhook(endpoint.secret).verify(body, headers)
    assert event["type"] == "spend.alert.fired.v0"
    assert {k: event["data"][k] for k in ("alertId", "customerId", "threshold", "thresholdAmount", "accrued")} == {
        "alertId": alert.pk,
        "customerId": customer.pk,
        "threshold": "50",
        "thresholdAmount": "500",
        "accrued": "550",
    }
    assert WebhookDelivery.objects.get().status == "succeeded"

    [received] = smtp.received
    assert received.rcpt_tos == ["ap@acme.example"]
    message = received.message
    assert message["Subject"] == "Spend alert: Acme Corp reached 50 % of the 1000 USD budget (500 USD)"
    assert "has reached 550 USD" in message.get_body(("plain",)).get_content()
    firing = SpendAlertFiring.objects.get()
    assert (firing.email_status, firing.email_attempts) == (SpendEmailStatus.SENT, 1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget": None}, "budget"),
        ({"budget": "1000000000.01"}, "budget"),
        ({"budget": "-5"}, "budget"),
        ({"thresholds": ("1000.5",)}, "thresholds"),
        ({"thresholds": ()}, "thresholds"),
        ({"thresholds": tuple(str(n) for n in range(1, 12))}, "thresholds"),
        ({"thresholds": ("0.00001",)}, "thresholds"),
        ({"currency": "XYZ"}, "currency"),
        ({"threshold_kind": "ratio"}, "thresholdKind"),
        ({"subscription_id": "sub_nope"}, "subscriptionId"),
        ({"recipients": "not an address"}, "recipients"),
    ],
)
def test_bounds_are_refused(customer, changes, field):
    data = {"currency": "USD", "threshold_kind": "percent", "budget": "1000", "thresholds": ("50",), **changes}

    with pytest.raises(SpendError) as error:
        spend_alert_create(customer=customer, data=SpendAlertInput(**data))

    assert error.value.field == field


def test_a_customer_with_nothing_left_to_watch_leaves_the_sweep(customer, calls):
    alert = budget_alert(customer)
    alert.delete()
    record_usage(customer, calls, jan(5), 1)

    spend_evaluate_due(now=jan(6))

    assert spend_watches_due(now=jan(7), limit=10) == []
    assert not SpendWatch.objects.filter(customer=customer).exists()


def test_a_usage_alert_watches_the_metrics_usage_in_its_unit(customer, calls):
    alert = spend_alert_create(
        customer=customer,
        data=SpendAlertInput(
            currency="USD",
            threshold_kind=SpendThresholdKind.PERCENT,
            budget="100000",
            thresholds=("50", "80"),
            metric_id=calls.pk,
        ),
    )
    record_usage(customer, calls, jan(5), 40_000)
    record_usage(customer, calls, jan(6), 15_000)

    spend_evaluate_due(now=jan(7))

    # 55,000 calls of a 100,000-call budget: 50 % (50,000 calls) crossed, 80 % (80,000) not
    assert fired(alert) == [("2026-01-01", "50", "55000")]


def test_a_usage_alert_names_a_metric_of_the_merchant(customer, calls):
    with pytest.raises(SpendError) as error:
        spend_alert_create(
            customer=customer,
            data=SpendAlertInput(currency="USD", threshold_kind="amount", thresholds=("1",), metric_id="bm_nope"),
        )
    assert error.value.field == "metricId"

"""Trials through the API (our extension on POST /v0/subscriptions: ``trialEnd`` or ``trialDays``), billed as the
admin's "trial ends at": no fee and no usage before the trial ends, the first fee prorated from its end."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import PaymentTerm, Subscription
from invoicing.models import Invoice, InvoiceKind
from tests.invoicing.factories import PlanFactory, fee_price, metered_price

pytestmark = pytest.mark.django_db


@pytest.fixture
def pro(merchant):
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro")
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Pro fee")
    metered_price(plan, "0.01", name="Pro calls", unit="calls", event_type="api.call")
    return plan


def test_a_fourteen_day_trial_bills_the_opening_fee_from_its_end(subscribe, pro):
    response = subscribe(pro, trialDays=14)
    assert response.status_code == 201, response.json()
    assert response.json()["billingStartsAt"] == "2025-01-15T00:00:00Z"
    subscription = Subscription.objects.get(pk=response.json()["id"])
    opening = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.OPENING)
    # 49 × 17/31 (January 15–31) = 26.870… → 26.87
    assert [line.amount for line in opening.lines.all()] == [Decimal("26.8700")]


def test_trial_end_is_the_same_trial(subscribe, pro):
    response = subscribe(pro, trialEnd="2025-01-15T00:00:00Z")
    assert response.status_code == 201
    assert response.json()["billingStartsAt"] == "2025-01-15T00:00:00Z"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"trialEnd": "2025-01-15T00:00:00Z", "trialDays": 14}, "trialDays"),
        ({"trialEnd": "2024-12-31T00:00:00Z"}, "trialEnd"),
        ({"trialDays": 0}, "trialDays"),
        ({"trialDays": 731}, "trialDays"),
        ({"trialDays": 40, "endingAt": "2025-02-01T00:00:00Z"}, "trialEnd"),
    ],
)
def test_bad_trials_are_400_naming_the_field(subscribe, pro, extra, field):
    response = subscribe(pro, **extra)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Subscription.objects.exists()

""" "Billed in real time" is one rule written three ways beside each other in ``catalog.models``: the model
property, the queryset method and the SQL fragment of hand-written statements. They agree on every
combination of the subscription's own billing mode and its plan's."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection

from catalog.models import (
    SUBSCRIPTION_REAL_TIME_PARAMS,
    SUBSCRIPTION_REAL_TIME_SQL,
    BillingMode,
    Plan,
    Subscription,
)
from tests.factories import MerchantFactory, PlanFactory, ProductFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

OWN_MODES = ("", BillingMode.POST_PAID, BillingMode.REAL_TIME)
PLAN_MODES = (BillingMode.POST_PAID, BillingMode.REAL_TIME)


@pytest.fixture
def subscriptions() -> dict[tuple[str, str], Subscription]:
    merchant = MerchantFactory()
    product = ProductFactory(merchant=merchant)
    plans = {mode: PlanFactory(product=product, merchant=merchant, billing_mode=mode) for mode in PLAN_MODES}
    return {
        (own, plan_mode): SubscriptionFactory(plan=plans[plan_mode], merchant=merchant, billing_mode=own)
        for own, plan_mode in itertools.product(OWN_MODES, PLAN_MODES)
    }


def _expected(own: str, plan_mode: str) -> bool:
    return own == BillingMode.REAL_TIME or (own == "" and plan_mode == BillingMode.REAL_TIME)


def test_the_property_the_queryset_and_the_sql_fragment_agree(subscriptions):
    expected = {sub.pk for key, sub in subscriptions.items() if _expected(*key)}
    subscription, plan = Subscription._meta.db_table, Plan._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.id FROM {subscription} s JOIN {plan} p ON p.id = s.plan_id WHERE {SUBSCRIPTION_REAL_TIME_SQL}",
            list(SUBSCRIPTION_REAL_TIME_PARAMS),
        )
        by_sql = {row[0] for row in cursor.fetchall()}

    assert len(expected) == 3
    assert set(Subscription.objects.real_time().values_list("pk", flat=True)) == expected
    assert by_sql == expected
    assert {sub.pk for sub in Subscription.objects.all() if sub.is_real_time} == expected

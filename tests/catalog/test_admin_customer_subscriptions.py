"""The customer page lists its subscriptions read-only, in a constant number of queries, with an
"Add subscription" link instead of an add row (subscriptions start through invoicing's service)."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Subscription, SubscriptionStatus
from tests.factories import CustomerFactory, PlanFactory, ProductFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def customer_url(customer) -> str:
    return reverse("admin:catalog_customer_change", args=(quote(customer.pk),))


def subscribe(customer, name: str, status: str = SubscriptionStatus.ACTIVE) -> Subscription:
    product = ProductFactory(merchant=customer.merchant, name=f"{name} product")
    plan = PlanFactory(merchant=customer.merchant, product=product, name=name)
    return SubscriptionFactory(customer=customer, plan=plan, status=status, name=f"{customer.name} · {name}")


def customer_form(customer, **extra) -> dict[str, str]:
    """POST data of the customer page with its two read-only inlines."""
    data = {
        "merchant": customer.merchant_id,
        "name": customer.name,
        "email": customer.email,
        "external_id": "",
        "currency": "USD",
        "time_zone": "UTC",
        "metadata": "{}",
        "country": "US",
        "negotiated_prices-TOTAL_FORMS": "0",
        "negotiated_prices-INITIAL_FORMS": "0",
        "negotiated_prices-MIN_NUM_FORMS": "0",
        "negotiated_prices-MAX_NUM_FORMS": "1000",
    }
    data.update(extra)
    return data


def subscriptions_formset(response):
    return next(f for f in response.context["inline_admin_formsets"] if f.opts.model is Subscription)


def test_subscriptions_are_listed_read_only_with_an_add_link(superuser_client):
    # given a customer with one subscription
    customer = CustomerFactory(name="Acme")
    subscription = subscribe(customer, "Pro")

    # when finance opens the customer page
    response = superuser_client.get(customer_url(customer))

    # then the row shows name, plan, status and dates, links to the subscription, and nothing is editable
    inline = subscriptions_formset(response)
    assert inline.has_add_permission is False
    assert inline.has_change_permission is False
    assert inline.has_delete_permission is False
    assert [sorted(form.fields) for form in inline.formset.forms] == [["customer", "id"]]  # the row's keys only
    assert list(inline.readonly_fields) == ["name", "plan", "status", "started_at", "ending_at"]
    page = response.content.decode()
    assert "Pro product · Pro" in page
    assert reverse("admin:catalog_subscription_change", args=(quote(subscription.pk),)) in page
    add_link = f"{reverse('admin:catalog_subscription_add')}?customer={customer.pk}&amp;merchant={customer.merchant_id}"
    assert f'id="add-subscription-link" href="{add_link}"' in page


def test_a_viewer_gets_no_add_link(viewer_client):
    customer = CustomerFactory()
    subscribe(customer, "Pro")

    page = viewer_client.get(customer_url(customer)).content.decode()

    assert "Pro product · Pro" in page
    assert "add-subscription-link" not in page


def test_the_add_link_opens_the_add_page_with_customer_and_merchant(superuser_client):
    customer = CustomerFactory(name="Acme")

    response = superuser_client.get(
        f"{reverse('admin:catalog_subscription_add')}?customer={customer.pk}&merchant={customer.merchant_id}"
    )

    form = response.context["adminform"].form
    assert (form.initial["customer"], form.initial["merchant"]) == (customer.pk, customer.merchant_id)
    assert "Acme" in response.content.decode()  # the autocomplete shows the chosen customer


def test_a_subscription_row_posted_on_the_customer_page_creates_nothing(superuser_client):
    # given a hand-made POST with a new subscription row (the page offers none)
    customer = CustomerFactory()
    plan = PlanFactory(merchant=customer.merchant, product__merchant=customer.merchant)
    data = customer_form(
        customer,
        **{
            "subscriptions-TOTAL_FORMS": "1",
            "subscriptions-INITIAL_FORMS": "0",
            "subscriptions-MIN_NUM_FORMS": "0",
            "subscriptions-MAX_NUM_FORMS": "0",
            "subscriptions-0-name": "Sneaky",
            "subscriptions-0-plan": plan.pk,
            "subscriptions-0-status": "active",
            "subscriptions-0-started_at_0": "2026-03-01",
            "subscriptions-0-started_at_1": "00:00:00",
        },
    )

    superuser_client.post(customer_url(customer), data)

    # then no subscription was started behind the invoicing service's back
    assert customer.subscriptions.count() == 0


def test_the_customer_page_cannot_change_a_subscriptions_plan_or_status(superuser_client):
    customer = CustomerFactory()
    subscription = subscribe(customer, "Basic")
    other = PlanFactory(merchant=customer.merchant, product__merchant=customer.merchant, name="Pro")
    data = customer_form(
        customer,
        **{
            "subscriptions-TOTAL_FORMS": "1",
            "subscriptions-INITIAL_FORMS": "1",
            "subscriptions-MIN_NUM_FORMS": "0",
            "subscriptions-MAX_NUM_FORMS": "0",
            "subscriptions-0-id": subscription.pk,
            "subscriptions-0-customer": customer.pk,
            "subscriptions-0-plan": other.pk,
            "subscriptions-0-status": "terminated",
        },
    )

    response = superuser_client.post(customer_url(customer), data)

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.plan.name, subscription.status) == ("Basic", SubscriptionStatus.ACTIVE)


def test_the_subscription_table_costs_the_same_queries_for_one_or_ten_rows(superuser_client, monkeypatch):
    # The invoicing panel composes one upcoming-invoice preview per active subscription (its own cost):
    # stub it so the count measures the page and its subscription table.
    monkeypatch.setattr("invoicing.selectors.customer_invoice_previews", lambda **kwargs: [])
    customer = CustomerFactory()
    subscribe(customer, "Plan 0")

    def queries() -> int:
        # both counts from a cold content-type cache: whether it is warm depends on the tests run before
        ContentType.objects.clear_cache()
        with CaptureQueriesContext(connection) as captured:
            response = superuser_client.get(customer_url(customer))
        assert response.status_code == 200
        return len(captured)

    one = queries()
    for index in range(1, 10):
        subscribe(customer, f"Plan {index}", SubscriptionStatus.TERMINATED if index % 2 else SubscriptionStatus.ACTIVE)
    ten = queries()

    assert customer.subscriptions.count() == 10
    assert ten == one


def test_ten_terminated_subscriptions_render_within_a_fixed_query_budget(superuser_client, django_assert_num_queries):
    # terminated subscriptions have no upcoming-invoice preview: the whole page is constant
    customer = CustomerFactory()
    for index in range(10):
        subscribe(customer, f"Plan {index}", SubscriptionStatus.TERMINATED)

    # 13 (the session, the user and a cold content-type cache included), none growing with the number of
    # subscriptions. The merchant comes with the customer's row, and so do whether the customer was ever
    # reminded or had credit: the dunning panel and the credit balances read one query each only then
    # (tests/invoicing/test_dunning.py); the payment methods panel is one query. Cold on purpose and exact:
    # a ceiling let one query more pass whenever an earlier test had warmed the cache.
    ContentType.objects.clear_cache()
    with django_assert_num_queries(13):
        assert superuser_client.get(customer_url(customer)).status_code == 200

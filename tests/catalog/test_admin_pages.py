"""Every catalog admin page renders, and changelists cost the same number of queries for any size."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Price, Subscription
from tests.factories import MeteredPriceFactory, PlanFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

CATALOG_ADMINS = sorted(
    ((model, model_admin) for model, model_admin in admin.site._registry.items() if model._meta.app_label == "catalog"),
    key=lambda pair: pair[0]._meta.model_name,
)


def url(model, view: str, *args) -> str:
    return reverse(f"admin:catalog_{model._meta.model_name}_{view}", args=args)


def test_every_catalog_model_is_registered():
    assert [model._meta.model_name for model, _ in CATALOG_ADMINS] == [
        "apikey",
        "billablemetric",
        "customer",
        "feature",
        "fee",
        "merchant",
        "plan",
        "price",
        "product",
        "subscription",
        "testclock",
    ]


@pytest.mark.parametrize(("model", "model_admin"), CATALOG_ADMINS, ids=lambda v: getattr(v, "__name__", ""))
def test_changelist_add_change_and_history_pages_render(superuser_client, catalog_data, model, model_admin):
    instance = model.objects.order_by("pk").first()
    pages = [
        url(model, "changelist"),
        url(model, "changelist") + "?q=a",
        url(model, "add"),
        url(model, "change", quote(instance.pk)),
    ]
    if hasattr(model, "history"):
        pages.append(url(model, "history", quote(instance.pk)))

    for page in pages:
        assert superuser_client.get(page).status_code == 200, page


def test_record_stamps_are_read_only(superuser_client, catalog_data):
    price = Price.objects.filter(customer__isnull=True).first()

    form = superuser_client.get(url(Price, "change", quote(price.pk))).context["adminform"].form

    assert {"created_at", "updated_at", "id"}.isdisjoint(form.fields)


def test_history_page_cannot_be_used_to_revert(superuser_client, catalog_data):
    price = Price.objects.filter(customer__isnull=True).first()
    record = price.history.first()
    # simple-history links its record pages with the raw pk and does not unquote it
    history_url = reverse("admin:catalog_price_simple_history", args=(price.pk, record.history_id))

    assert superuser_client.get(history_url).status_code == 200
    assert superuser_client.post(history_url, {"invoice_display_name": "Reverted"}).status_code == 403


def queries_for(client, page: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(page).status_code == 200
    return len(captured)


def test_price_changelist_queries_do_not_grow_with_rows(superuser_client):
    plan = PlanFactory()
    MeteredPriceFactory(plan=plan)
    few = queries_for(superuser_client, url(Price, "changelist"))
    for _ in range(5):
        MeteredPriceFactory(plan=PlanFactory())

    assert queries_for(superuser_client, url(Price, "changelist")) == few


def test_subscription_changelist_queries_do_not_grow_with_rows(superuser_client):
    SubscriptionFactory()
    few = queries_for(superuser_client, url(Subscription, "changelist"))
    for _ in range(5):
        SubscriptionFactory()

    assert queries_for(superuser_client, url(Subscription, "changelist")) == few

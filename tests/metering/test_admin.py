"""Admin: read-only events list with estimated counts; this month's usage on the customer page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils import timezone

from catalog.models import Customer
from metering.admin import COUNT_CAP, EstimatedCountPaginator, UsageEventAdmin
from metering.models import UsageEvent
from tests.metering.factories import UsageEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_events_changelist_is_read_only_and_filters(staff_client, input_tokens, customer):
    event = UsageEventFactory(customer=customer, data={"input_tokens": 5})
    UsageEventFactory(customer=customer, event_type="other.type")

    response = staff_client.get("/admin/metering/usageevent/", {"customer": customer.pk, "metric": input_tokens.pk})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [event]
    assert staff_client.get("/admin/metering/usageevent/add/").status_code == 403
    model_admin = admin.site.get_model_admin(UsageEvent)
    assert isinstance(model_admin, UsageEventAdmin)
    assert not model_admin.has_delete_permission(None)


def test_paginator_caps_filtered_counts(customer):
    UsageEventFactory.create_batch(3, customer=customer)

    assert EstimatedCountPaginator(UsageEvent.objects.filter(customer=customer).order_by("id"), 50).count == 3
    assert COUNT_CAP == 10_000


def test_customer_page_shows_this_months_usage(staff_client, input_tokens, customer):
    now = timezone.now()
    UsageEventFactory(customer=customer, timestamp=now, data={"input_tokens": 1200})
    UsageEventFactory(customer=customer, timestamp=now, data={"input_tokens": "0.5"})
    UsageEventFactory(customer=customer, timestamp=datetime(2020, 1, 1, tzinfo=UTC), data={"input_tokens": 99})

    response = staff_client.get(f"/admin/catalog/customer/{customer.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Usage this month" in html
    assert '<td>Input tokens</td><td style="text-align:right">1200.5</td><td>tokens</td>' in html
    assert f"?customer={customer.pk}&amp;metric={input_tokens.pk}" in html


def test_customer_admin_keeps_catalogs_class(customer):
    model_admin = admin.site.get_model_admin(Customer)

    from catalog.admin import CustomerAdmin
    from metering.admin import CustomerUsageAdminMixin

    assert isinstance(model_admin, CustomerUsageAdminMixin)
    assert isinstance(model_admin, CustomerAdmin)

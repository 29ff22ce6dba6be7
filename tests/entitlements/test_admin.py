"""The entitlement and grant admin pages through the Django test client: balances as the API computes them,
grants with what is left of each, adding a grant (finance-readable refusals), voiding one, and the roles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from metering.selectors import EVENTS_TABLE
from wallets.entitlements import entitlement_grant_create, entitlement_issue
from wallets.models import EntitlementGrant

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def metered(merchant, customer, metered_feature, now):
    return entitlement_issue(
        merchant=merchant,
        customer=customer,
        feature=metered_feature,
        template={"type": "metered", "usagePeriod": {"interval": "P1M"}},
        now=now,
        active_from=now - timedelta(days=1),
    )


def _grant(entitlement, amount, key, now, **terms):
    grant, _ = entitlement_grant_create(
        entitlement=entitlement,
        amount=Decimal(amount),
        idempotency_key=key,
        now=now,
        effective_at=now - timedelta(days=1),
        **terms,
    )
    return grant


def _usage(api_client, customer, tokens, key):
    event = {"type": "llm.completion", "source": "app", "subject": customer.pk, "data": {"tokens": tokens}}
    assert api_client.post("/v0/events", {**event, "idempotencyKey": key}, format="json").status_code == 202


def _change_url(entitlement) -> str:
    return reverse("admin:wallets_entitlement_change", args=[quote(entitlement.pk)])


def _add_url(entitlement) -> str:
    return reverse("admin:wallets_entitlement_grant_add", args=[quote(entitlement.pk)])


def _void_url(entitlement, grant) -> str:
    return reverse("admin:wallets_entitlement_grant_void", args=[quote(entitlement.pk), grant.pk])


def test_the_changelist_shows_each_entitlements_balance(
    billing_admin_client, api_client, merchant, customer, metered, boolean_feature, now
):
    _grant(metered, 50, "g", now)
    _usage(api_client, customer, 30, "e-1")
    entitlement_issue(
        merchant=merchant, customer=customer, feature=boolean_feature, template={"type": "boolean"}, now=now
    )

    with CaptureQueriesContext(connection) as queries:
        page = billing_admin_client.get(reverse("admin:wallets_entitlement_changelist"))

    html = page.content.decode()
    assert page.status_code == 200
    assert '<td class="field-granted">50</td><td class="field-usage_in_period">30</td>' in html
    assert '<td class="field-balance">20</td><td class="field-overage">0</td>' in html
    assert '<td class="field-granted">—</td><td class="field-usage_in_period">—</td>' in html  # boolean
    # one usage aggregate for the metered row, however many columns read its state
    assert sum(1 for q in queries.captured_queries if EVENTS_TABLE in q["sql"]) == 1


def test_the_entitlement_page_lists_grants_with_what_is_left_of_each(
    billing_admin_client, api_client, customer, metered, now
):
    first = _grant(metered, 50, "first", now)
    second = _grant(metered, 40, "second", now, priority=1, reset_max_rollover=Decimal(10))
    _usage(api_client, customer, 70, "e-1")

    page = billing_admin_client.get(_change_url(metered))

    html = page.content.decode()
    assert page.status_code == 200
    assert f"<tr><td>{first.pk}</td><td>50</td><td>0</td><td>0</td>" in html
    assert f"<tr><td>{second.pk}</td><td>40</td><td>20</td><td>1</td>" in html
    assert "<td>at most 10</td>" in html
    assert '<div class="readonly">-20</div>' not in html
    assert '<div class="readonly">20</div>' in html  # the balance
    assert _add_url(metered) in html
    assert _void_url(metered, first) in html
    assert 'name="_save"' not in html  # read-only: entitlements are issued through the API


def test_adding_a_grant_calls_the_service_once_per_form(billing_admin_client, metered):
    form = billing_admin_client.get(_add_url(metered))
    key = form.context["form"]["idempotency_key"].initial
    body = {
        "amount": "1500",
        "priority": "-1",
        "effective_at": "",
        "expires_at": "",
        "reset_max_rollover": "100",
        "reset_min_rollover": "",
        "idempotency_key": key,
    }

    first = billing_admin_client.post(_add_url(metered), body)
    second = billing_admin_client.post(_add_url(metered), body)  # a double submit

    assert (form.status_code, first.status_code, second.status_code) == (200, 302, 302)
    assert first["Location"] == _change_url(metered)
    grant = EntitlementGrant.objects.get()
    assert (grant.amount, grant.priority, grant.reset_max_rollover, grant.reset_min_rollover) == (
        Decimal(1500),
        -1,
        Decimal(100),
        None,
    )


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"amount": "-5"}, "amount", "Give a positive number of credits (more than 0)."),
        ({"amount": "0"}, "amount", "Give a positive number of credits (more than 0)."),
        ({"amount": "ten"}, "amount", "Enter a number."),
        (
            {"effective_at": "2026-05-01 00:00", "expires_at": "2026-04-01 00:00"},
            "expires_at",
            "The expiry must be after the credits take effect (2026-05-01 00:00).",
        ),
        ({"reset_max_rollover": "-1"}, "reset_max_rollover", "Give 0 or more credits, or leave it empty."),
        (
            {"reset_max_rollover": "5", "reset_min_rollover": "6"},
            "reset_min_rollover",
            "The least kept at a reset cannot be more than the most kept.",
        ),
    ],
)
def test_bad_grants_are_refused_in_words(billing_admin_client, metered, changes, field, message):
    body = {
        "amount": "10",
        "priority": "0",
        "effective_at": "",
        "expires_at": "",
        "reset_max_rollover": "",
        "reset_min_rollover": "",
        "idempotency_key": "k",
        **changes,
    }

    response = billing_admin_client.post(_add_url(metered), body)

    assert response.status_code == 200
    assert response.context["form"].errors == {field: [message]}
    assert not EntitlementGrant.objects.exists()


def test_a_grant_on_a_boolean_entitlement_is_refused_on_the_form(
    billing_admin_client, merchant, customer, boolean_feature, now
):
    entitlement = entitlement_issue(
        merchant=merchant, customer=customer, feature=boolean_feature, template={"type": "boolean"}, now=now
    )
    body = {"amount": "10", "priority": "0", "idempotency_key": "k"}

    response = billing_admin_client.post(_add_url(entitlement), body)

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        f"Grants add credits to metered entitlements; {entitlement.pk} is boolean."
    ]


def test_voiding_a_grant_asks_first_then_stops_its_credits(billing_admin_client, api_client, metered, now):
    grant = _grant(metered, 50, "g", now)

    confirm = billing_admin_client.get(_void_url(metered, grant))
    done = billing_admin_client.post(_void_url(metered, grant))
    again = billing_admin_client.post(_void_url(metered, grant))

    assert confirm.status_code == 200
    assert f"Void grant {grant.pk} of 50 credits (50 left now)?" in confirm.content.decode()
    assert (done.status_code, again.status_code) == (302, 302)
    grant.refresh_from_db()
    assert grant.voided_at is not None
    assert api_client.get(f"/v1/entitlements/{metered.pk}").json()["balance"] == 0


def test_the_grant_list_voids_selected_grants(billing_admin_client, metered, now):
    keep, void = _grant(metered, 5, "keep", now), _grant(metered, 7, "void", now)

    response = billing_admin_client.post(
        reverse("admin:wallets_entitlementgrant_changelist"),
        {"action": "void_selected", "_selected_action": [void.pk]},
    )

    assert response.status_code == 302
    assert list(EntitlementGrant.objects.filter(voided_at__isnull=False)) == [void]
    assert billing_admin_client.get(reverse("admin:wallets_entitlementgrant_change", args=[keep.pk])).status_code == 200


def test_a_viewer_sees_the_pages_but_cannot_add_or_void(viewer_client, metered, now):
    grant = _grant(metered, 50, "g", now)

    changelist = viewer_client.get(reverse("admin:wallets_entitlement_changelist"))
    page = viewer_client.get(_change_url(metered))
    grants = viewer_client.get(reverse("admin:wallets_entitlementgrant_changelist"))
    add = viewer_client.post(_add_url(metered), {"amount": "10", "priority": "0", "idempotency_key": "k"})
    void = viewer_client.post(_void_url(metered, grant))
    action = viewer_client.post(
        reverse("admin:wallets_entitlementgrant_changelist"),
        {"action": "void_selected", "_selected_action": [grant.pk]},
    )

    assert (changelist.status_code, page.status_code, grants.status_code) == (200, 200, 200)
    html = page.content.decode()
    assert _add_url(metered) not in html and _void_url(metered, grant) not in html
    assert "void_selected" not in grants.content.decode()
    assert (add.status_code, void.status_code) == (403, 403)
    assert action.status_code in (200, 302)
    grant.refresh_from_db()
    assert grant.voided_at is None
    assert not EntitlementGrant.objects.exclude(pk=grant.pk).exists()


def test_the_page_shows_the_allowance_and_its_rollover(
    billing_admin_client, api_client, merchant, customer, metered_feature, now
):
    entitlement = entitlement_issue(
        merchant=merchant,
        customer=customer,
        feature=metered_feature,
        template={
            "type": "metered",
            "usagePeriod": {"interval": "P1M"},
            "issueAfterReset": Decimal(100),
            "resetMaxRollover": Decimal(30),
        },
        now=now,
        active_from=now - timedelta(days=1),
    )
    _usage(api_client, customer, 30, "e-1")

    html = billing_admin_client.get(_change_url(entitlement)).content.decode()

    assert "Per-period allowance: 100 issued at each reset, 70 left this period." in html
    assert '<div class="readonly">30</div>' in html  # most of the allowance kept at a reset
    assert "No grants yet." in html


def test_grant_amounts_read_as_finance_writes_them_on_every_grant_page(billing_admin_client, metered, now):
    grant = _grant(metered, "1000000", "million", now, reset_max_rollover=Decimal("2500.5"))

    entitlement_page = billing_admin_client.get(_change_url(metered)).content.decode()
    void_page = billing_admin_client.get(_void_url(metered, grant)).content.decode()
    grant_page = billing_admin_client.get(
        reverse("admin:wallets_entitlementgrant_change", args=[quote(grant.pk)])
    ).content.decode()
    grant_list = billing_admin_client.get(reverse("admin:wallets_entitlementgrant_changelist")).content.decode()

    assert f"<tr><td>{grant.pk}</td><td>1,000,000</td><td>1,000,000</td>" in entitlement_page
    assert "<td>at most 2,500.5</td>" in entitlement_page
    assert f"Void grant {grant.pk} of 1,000,000 credits (1,000,000 left now)?" in void_page
    assert '<div class="readonly">1,000,000</div>' in grant_page
    assert '<div class="readonly">2,500.5</div>' in grant_page
    assert f"1,000,000 on {metered.pk}" in grant_page
    assert '<td class="field-amount">1,000,000</td>' in grant_list
    for page in (entitlement_page, void_page, grant_page, grant_list):
        assert "1000000.000000000000" not in page
        assert "1E+6" not in page

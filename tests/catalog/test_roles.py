"""The two staff roles: Billing admin edits every billing model, Billing viewer only looks."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.urls import reverse

from catalog.models import Plan
from catalog.roles import BILLING_ADMIN, BILLING_VIEWER, billing_roles_sync

pytestmark = pytest.mark.django_db

CATALOG_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "catalog"),
    key=lambda model: model._meta.model_name,
)


def url(model, view: str, *args) -> str:
    return reverse(f"admin:catalog_{model._meta.model_name}_{view}", args=args)


def group_codenames(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename")
    }


def test_sync_is_idempotent_and_grants_by_role():
    billing_roles_sync()
    first = (group_codenames(BILLING_ADMIN), group_codenames(BILLING_VIEWER))

    billing_roles_sync()
    call_command("sync_billing_roles", stdout=io.StringIO())

    admin_perms, viewer_perms = group_codenames(BILLING_ADMIN), group_codenames(BILLING_VIEWER)
    assert (admin_perms, viewer_perms) == first
    assert Group.objects.filter(name__in=[BILLING_ADMIN, BILLING_VIEWER]).count() == 2
    assert {"catalog.add_price", "catalog.delete_price", "django_celery_beat.change_periodictask"} <= admin_perms
    assert {p.split(".")[1].split("_")[0] for p in viewer_perms} == {"view"}
    assert {"catalog.view_price", "catalog.view_subscription", "django_celery_beat.view_periodictask"} <= viewer_perms
    billing_apps = Permission.objects.filter(
        content_type__app_label__in=[
            "catalog",
            "metering",
            "invoicing",
            "wallets",
            "payments",
            "costs",
            "django_celery_beat",
        ]
    )
    assert len(admin_perms) == billing_apps.count()
    assert len(viewer_perms) == billing_apps.filter(codename__startswith="view_").count()


def test_sync_restores_a_role_that_was_widened_in_the_catalog_apps_only():
    billing_roles_sync()
    viewer = Group.objects.get(name=BILLING_VIEWER)
    viewer.permissions.add(
        Permission.objects.get(codename="change_price"), Permission.objects.get(codename="view_user")
    )

    billing_roles_sync()

    assert "catalog.change_price" not in group_codenames(BILLING_VIEWER)
    assert "auth.view_user" in group_codenames(BILLING_VIEWER)


def test_viewer_can_open_every_catalog_page_without_save_buttons(viewer_client, catalog_data):
    for model in CATALOG_MODELS:
        instance = model.objects.order_by("pk").first()
        assert viewer_client.get(url(model, "changelist")).status_code == 200, model
        change_page = viewer_client.get(url(model, "change", quote(instance.pk)))
        assert change_page.status_code == 200, model
        assert 'name="_save"' not in change_page.content.decode(), model
        assert 'name="_continue"' not in change_page.content.decode(), model
        if hasattr(model, "history"):
            assert viewer_client.get(url(model, "history", quote(instance.pk))).status_code == 200, model
    assert viewer_client.get(reverse("admin:django_celery_beat_periodictask_changelist")).status_code == 200


def test_viewer_gets_403_on_add_and_change(viewer_client, catalog_data):
    for model in CATALOG_MODELS:
        instance = model.objects.order_by("pk").first()
        assert viewer_client.get(url(model, "add")).status_code == 403, model
        assert viewer_client.post(url(model, "add"), {"name": "x"}).status_code == 403, model
        assert viewer_client.post(url(model, "change", quote(instance.pk)), {"name": "x"}).status_code == 403, model
        assert viewer_client.post(url(model, "delete", quote(instance.pk)), {"post": "yes"}).status_code == 403, model


def test_viewer_cannot_revoke_keys(viewer_client, catalog_data):
    api_key = catalog_data.merchants[0].api_keys.get()

    response = viewer_client.post(
        url(api_key, "changelist"), {"action": "revoke_selected", "_selected_action": [api_key.pk]}
    )

    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert response.status_code in (200, 302)


def test_billing_admin_can_add_and_save(billing_admin_client, catalog_data):
    plan = Plan.objects.get(name="Pro")
    form_data = {
        "merchant": plan.merchant_id,
        "product": plan.product_id,
        "name": "Pro 2026",
        "currency": "USD",
        "billing_cadence": "P1M",
        "billing_mode": "post_paid",
        "tax_behavior": "exclusive",
        "default_tax_code": "eservice",
        "default_tax_rate": "0",
        "renewal_reminder_enabled": "on",
        "renewal_reminder_days": "3",
        "prices-TOTAL_FORMS": str(plan.prices.count()),
        "prices-INITIAL_FORMS": str(plan.prices.count()),
        "prices-MIN_NUM_FORMS": "0",
        "prices-MAX_NUM_FORMS": "0",
        "versions-TOTAL_FORMS": str(plan.versions.count()),
        "versions-INITIAL_FORMS": str(plan.versions.count()),
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "0",
    }
    assert billing_admin_client.get(url(Plan, "add")).status_code == 200
    response = billing_admin_client.post(url(Plan, "change", quote(plan.pk)), form_data)

    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.name == "Pro 2026"
    assert plan.history.first().history_user.username == "billing-admin"

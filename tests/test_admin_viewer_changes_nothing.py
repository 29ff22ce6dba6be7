"""A "Billing viewer" changes nothing through the admin, whatever it posts.

Generic on purpose: the tests walk every registered ModelAdmin, every action it offers a superuser and
every URL it serves, so an action or admin view added later is covered without anyone remembering to.
The fixture makes at least one row of every registered model; a model without one fails the test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.test import Client, RequestFactory
from django.urls import URLPattern, reverse
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from catalog.demo import demo_catalog_build
from catalog.models import Customer, Plan, Subscription
from catalog.roles import BILLING_VIEWER, billing_roles_sync
from catalog.services import feature_create
from costs.services import cost_create
from invoicing.mail_templates import mail_template_defaults
from invoicing.models import DeliverySettings, DunningSettings, Invoice, InvoiceKind, MailTemplate
from invoicing.receivables import payment_record
from invoicing.services import (
    billing_run_execute,
    credit_note_issue,
    invoice_finalize,
    subscription_downgrade,
    subscription_start,
    test_clock_create,
)
from invoicing.services.adjustments import AdjustmentInput, subscription_adjustment_create
from invoicing.spend.services import SpendAlertInput, spend_alert_create, spend_cap_set
from tests.invoicing.factories import record_usage
from tests.payments.factories import payments_rows
from tests.wallets.factories import WebhookEndpointFactory
from wallets import entitlements
from wallets.models import WebhookDelivery
from wallets.services import commitment_create, credit_grant, wallet_policy_update
from wallets.webhooks import webhooks_enable

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
# What a person could have typed into any form: the posts carry it so a view that forgets its
# permission check has everything it needs to write.
PLAUSIBLE_FORM = {
    "post": "yes",
    "confirm": "yes",
    "reason": "viewer was here",
    "amount": "100",
    "currency": "USD",
    "description": "viewer",
    "idempotency_key": "viewer-1",
    "name": "Viewer's",
    "plan": "",
    "effective": "now",
}
# Pages of Django's own that only read, whatever the method: the change list (its POST runs actions,
# walked one by one below), an object's history, and the shortcut that redirects to the change page.
READ_PAGES = ("_changelist", "_history")
BILLING_APPS = (
    "catalog",
    "metering",
    "wallets",
    "invoicing",
    "payments",
    "costs",
    "reporting",
    "django_celery_beat",
)


@pytest.fixture
def every_admin_object(db):
    """At least one row of every model registered in the admin, made through the services."""
    summary = demo_catalog_build(now=JAN_1)
    neural = summary.merchants[0]
    metric = neural.billable_metrics.get(name="Input tokens")
    pro, free = neural.plans.get(name="Pro"), neural.plans.get(name="Free")
    customer = Customer.objects.create(merchant=neural, name="Viewer Test Co", external_id="viewer-test")
    subscription = subscription_start(customer=customer, plan=pro, started_at=JAN_1, now=JAN_1)
    record_usage(customer, metric, datetime(2026, 1, 9, tzinfo=UTC), 1_234_567)
    billing_run_execute(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    invoice_finalize(invoice=invoice, now=FEB_1)
    credit_note_issue(invoice=invoice, now=FEB_1, reason="outage")  # both documents queue a delivery
    # more than anything due: the rest is customer credit (a payment, its allocations, a credit entry)
    payment_record(
        customer=customer, currency="USD", amount=Decimal("5000"), method="bank_transfer", received_at=FEB_1, now=FEB_1
    )
    DeliverySettings.objects.create(merchant=neural, from_email="billing@neural.example")
    MailTemplate.objects.create(merchant=neural, kind="invoice", **mail_template_defaults("invoice"))
    DunningSettings.objects.create(merchant=neural)
    subscription_downgrade(subscription=subscription, new_plan=free, now=FEB_1)

    credit_grant(customer=customer, currency="USD", amount=Decimal("25"), idempotency_key="g1", now=JAN_1)
    wallet_policy_update(
        customer=customer, currency="USD", policy="block", now=JAN_1, low_balance_threshold=Decimal("50")
    )
    commitment_create(
        customer=customer, currency="USD", amount=Decimal("100"), term_start=JAN_1, term_end=JAN_1 + timedelta(365)
    )
    endpoint = WebhookEndpointFactory(merchant=neural)
    WebhookDelivery.objects.create(
        endpoint=endpoint, event_id="evt_viewer", event_type="balance.low", payload={}, next_attempt_at=FEB_1
    )
    webhooks_enable(merchant=neural, now=FEB_1)
    feature = feature_create(
        merchant=neural,
        product=metric.product,
        key="api-tokens",
        name="API tokens",
        type="metered",
        billable_metric=metric,
    )
    entitlement = entitlements.entitlement_issue(
        merchant=neural,
        customer=customer,
        feature=feature,
        template={"type": "metered", "usagePeriod": {"interval": "P1M"}},
        now=JAN_1,
    )
    entitlements.entitlement_grant_create(
        entitlement=entitlement, amount=Decimal("1000"), idempotency_key="eg1", now=JAN_1
    )

    payments_rows(customer=customer, name="Viewer", now=FEB_1)
    first_subscription = Subscription.objects.order_by("pk").first()
    subscription_adjustment_create(
        subscription=first_subscription,
        data=AdjustmentInput(type="percentageDiscount", number="0.1", effective_from=JAN_1),
        now=JAN_1,
    )

    spend_alert_create(
        customer=customer,
        data=SpendAlertInput(currency="USD", threshold_kind="amount", thresholds=("1",), name="Viewer alert"),
    )
    spend_cap_set(customer=customer, currency="USD", amount="1", on_reach="block", now=FEB_1)
    cost_create(
        merchant=neural,
        product=metric.product,
        name="GPU time",
        unit_cost=Decimal("0.0005"),
        currency="USD",
        unit="GPU-seconds",
        aggregation="SUM",
        event_type="gpu.job",
        value_property="$.seconds",
    )

    every_15_minutes = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(
        name="invoicing-close-billing-periods", task="invoicing.tasks.close_billing_periods", interval=every_15_minutes
    )
    CrontabSchedule.objects.create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=Decimal("52.52"), longitude=Decimal("13.40"))
    ClockedSchedule.objects.create(clocked_time=FEB_1)
    test_clock_create(merchant=neural, current_time=JAN_1, name="Month-end rehearsal")
    User.objects.create_user("someone", is_staff=True)
    return neural


@pytest.fixture
def viewer(db) -> User:
    billing_roles_sync()
    user = User.objects.create_user("viewer", is_staff=True, password="pw")
    user.groups.add(Group.objects.get(name=BILLING_VIEWER))
    return user


@pytest.fixture
def viewer_client(viewer) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def billing_admins():
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()]


def database_snapshot() -> dict[str, list[tuple]]:
    """Every row of every installed model, in primary-key order (sessions aside: logging in writes them)."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.app_label not in ("sessions",) and model._meta.managed
    }


def _request_as(user: User):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_every_registered_model_has_a_row_to_try(every_admin_object):
    empty = [model._meta.label for model, _ in billing_admins() if not model._default_manager.exists()]
    assert empty == []


def test_viewer_is_offered_only_actions_that_read(every_admin_object, viewer):
    superuser = User.objects.create_superuser("root", "root@example.com", "pw")
    offered_to_viewer = {}
    for model, model_admin in billing_admins():
        for name, (func, _, _) in model_admin.get_actions(_request_as(viewer)).items():
            offered_to_viewer[f"{model._meta.label}.{name}"] = set(getattr(func, "allowed_permissions", ()))
        for name, (func, _, _) in model_admin.get_actions(_request_as(superuser)).items():
            assert getattr(func, "allowed_permissions", None), f"{model._meta.label}.{name} declares no permissions"
    assert {label: perms for label, perms in offered_to_viewer.items() if perms != {"view"}} == {}


def test_viewer_posting_any_action_changes_nothing(every_admin_object, viewer_client):
    superuser = User.objects.create_superuser("root", "root@example.com", "pw")
    before = database_snapshot()
    tried = []
    for model, model_admin in billing_admins():
        pks = [quote(pk) for pk in model._default_manager.values_list("pk", flat=True)[:50]]
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for name in model_admin.get_actions(_request_as(superuser)):
            response = viewer_client.post(
                changelist, {**PLAUSIBLE_FORM, "action": name, "_selected_action": pks, "index": "0"}
            )
            tried.append(f"{model._meta.label}.{name}")
            assert response.status_code in (200, 302, 403), (model, name, response.status_code)
            assert database_snapshot() == before, f"{model._meta.label}.{name} changed the database"
    # The invoice actions of the defect report, and django-celery-beat's, are among those tried.
    assert {
        "invoicing.Invoice.action_void",
        "invoicing.Invoice.action_mark_paid",
        "invoicing.Invoice.action_finalize",
        "invoicing.Invoice.action_credit_note",
        "django_celery_beat.PeriodicTask.disable_tasks",
        "django_celery_beat.PeriodicTask.run_tasks",
    } <= set(tried)


def _admin_urls():
    """(model, url pattern) for every URL every registered ModelAdmin serves."""
    for model, model_admin in billing_admins():
        for pattern in model_admin.get_urls():
            if isinstance(pattern, URLPattern) and pattern.name:
                yield model, pattern


def _fill(pattern: URLPattern, model) -> str:
    """The URL of ``pattern`` for a real row of ``model`` (and of a grant for the grant routes)."""
    if pattern.name.endswith("_simple_history"):  # simple-history's regex route: (object id, history id)
        record = model.history.order_by("pk").first()
        return reverse(f"admin:{pattern.name}", args=[quote(getattr(record, model._meta.pk.attname)), record.pk])
    kwargs = {}
    for name in pattern.pattern.converters:
        if name in ("object_id", "id"):
            obj = model._default_manager.order_by("pk").first()
            kwargs[name] = quote(obj.pk) if name == "object_id" else obj.pk
        elif name == "adjustment_id":
            kwargs[name] = apps.get_model("invoicing", "SubscriptionAdjustment").objects.order_by("pk").first().pk
        elif name == "grant_id":
            kwargs[name] = apps.get_model("wallets", "EntitlementGrant").objects.order_by("pk").first().pk
        else:
            raise AssertionError(f"{pattern}: no value for <{name}>; teach this test")
    return reverse(f"admin:{pattern.name}", kwargs=kwargs)


def test_viewer_posting_to_any_admin_url_is_refused_and_changes_nothing(every_admin_object, viewer_client):
    before = database_snapshot()
    refused, read = [], []
    for model, pattern in _admin_urls():
        url = _fill(pattern, model)
        response = viewer_client.post(url, PLAUSIBLE_FORM)
        assert database_snapshot() == before, f"POST {url} ({pattern.name}) changed the database"
        if pattern.name.endswith(READ_PAGES) or str(pattern.pattern) == "<path:object_id>/":
            read.append(pattern.name)
            continue
        assert response.status_code in (403, 405), (pattern.name, url, response.status_code)
        refused.append(pattern.name)
    assert {
        "invoicing_run_billing",
        "catalog_customer_credit_grant",
        "catalog_customer_credit_top_up",
        "invoicing_subscription_terminate",
        "invoicing_subscription_change_plan_now",
        "wallets_entitlement_grant_add",
        "wallets_entitlement_grant_void",
        "django_celery_beat_periodictask_change",
        "costs_cost_add",
        "costs_cost_change",
        "costs_cost_delete",
    } <= set(refused)


def test_viewer_never_sees_a_button_that_would_answer_403(every_admin_object, viewer_client):
    refused = set()
    pages = []
    for model, pattern in _admin_urls():
        url = _fill(pattern, model)
        if viewer_client.get(url).status_code == 403:
            refused.add(url)
        if pattern.name.endswith(("_changelist", "_change")):
            pages.append(url)
    assert pages and refused
    seen = 0
    for page in pages:
        response = viewer_client.get(page)
        if response.status_code == 403:  # a page the viewer may not open at all (users, groups)
            continue
        assert response.status_code == 200, page
        seen += 1
        body = response.content.decode()
        assert [url for url in refused if f'"{url}' in body] == [], page
    assert seen > 40


def test_billing_admin_still_sees_the_buttons(every_admin_object):
    billing_roles_sync()
    user = User.objects.create_user("finance", is_staff=True)
    user.groups.add(Group.objects.get(name="Billing admin"))
    client = Client()
    client.force_login(user)
    customer = Customer.objects.get(external_id="viewer-test")

    invoices = client.get(reverse("admin:invoicing_invoice_changelist")).content.decode()
    customer_page = client.get(reverse("admin:catalog_customer_change", args=[customer.pk])).content.decode()

    assert reverse("admin:invoicing_run_billing") in invoices
    assert reverse("admin:catalog_customer_credit_grant", args=[quote(customer.pk)]) in customer_page
    assert reverse("admin:catalog_customer_credit_top_up", args=[quote(customer.pk)]) in customer_page
    assert Plan.objects.exists() and Subscription.objects.exists()

"""Staff limited to merchants: a staff user bound to merchant A sees, searches, exports and changes only A's
objects on every admin page of the billing apps; superusers and unbound staff see every merchant."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from catalog.admin_scoping import MerchantScopedAdminMixin
from catalog.models import Merchant, StaffMerchantAccess
from catalog.roles import BILLING_ADMIN, billing_roles_sync
from catalog.services import api_key_create, feature_create
from costs.services import cost_create
from invoicing.mail_templates import mail_template_defaults
from invoicing.models import (
    BillingRun,
    DeliverySettings,
    DunningSettings,
    Invoice,
    InvoiceKind,
    MailTemplate,
    PlanChangeKind,
    SubscriptionPlanChange,
)
from invoicing.receivables import payment_record
from invoicing.services import billing_run_execute, credit_note_issue, invoice_finalize, subscription_start
from invoicing.spend.services import SpendAlertInput, spend_alert_create, spend_cap_set
from tests.factories import MerchantFactory, TestClockFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage
from tests.payments.factories import payments_rows
from tests.wallets.factories import WebhookEndpointFactory
from wallets.entitlements import entitlement_grant_create, entitlement_issue
from wallets.models import WebhookDelivery
from wallets.services import commitment_create, credit_grant, wallet_policy_update
from wallets.webhooks import webhooks_enable

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
BILLING_APPS = ("catalog", "metering", "wallets", "invoicing", "payments", "costs", "reporting")

# Each registered model of the billing apps and how its rows reach their merchant, written down here on
# purpose (not read from the admins): a newly registered admin fails ``test_the_table_names_every_admin``
# until someone decides how it is scoped. None: platform-wide rows, shown to unrestricted staff only.
MERCHANT_PATHS = {
    "catalog.merchant": "pk",
    "catalog.apikey": "merchant",
    "catalog.product": "merchant",
    "catalog.billablemetric": "merchant",
    "catalog.fee": "merchant",
    "catalog.plan": "merchant",
    "catalog.price": "merchant",
    "catalog.customer": "merchant",
    "catalog.testclock": "merchant",
    "catalog.subscription": "merchant",
    "catalog.feature": "merchant",
    "metering.usageevent": "merchant",
    "wallets.wallet": "merchant",
    "wallets.lowbalancewallet": "merchant",
    "wallets.creditlot": "wallet__merchant",
    "wallets.ledgerentry": "wallet__merchant",
    "wallets.commitment": "merchant",
    "wallets.webhookendpoint": "merchant",
    "wallets.webhookdelivery": "endpoint__merchant",
    "wallets.webhooksettings": "merchant",
    "wallets.entitlement": "merchant",
    "wallets.entitlementgrant": "entitlement__merchant",
    "invoicing.invoice": "merchant",
    "invoicing.creditnote": "merchant",
    "invoicing.documentdelivery": "merchant",
    "invoicing.deliverysettings": "merchant",
    "invoicing.mailtemplate": "merchant",
    "invoicing.dunningsettings": "merchant",
    "invoicing.spendalert": "merchant",
    "invoicing.spendcap": "merchant",
    "invoicing.subscriptionplanchange": "subscription__merchant",
    "invoicing.billingrun": None,
    "invoicing.payment": "merchant",
    "invoicing.customercreditentry": "merchant",
    "payments.merchantintegration": "merchant",
    "payments.providercustomer": "integration__merchant",
    "payments.paymentmethod": "customer__merchant",
    "payments.paymentsession": "merchant",
    "payments.paymentretrysettings": "merchant",
    "payments.providerrefund": "payment__merchant",
    "payments.providerevent": "integration__merchant",
    "costs.cost": "merchant",
}


def registered_billing_models():
    return [
        model
        for label in BILLING_APPS
        for model in apps.get_app_config(label).get_models()
        if admin.site.is_registered(model)
    ]


def label(model) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


MERCHANT_OWNED = [model for model in registered_billing_models() if MERCHANT_PATHS.get(label(model))]


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def build_merchant(name: str, prefix: str) -> SimpleNamespace:
    """One merchant with a row of every billing model (names start with ``name``)."""
    merchant = MerchantFactory(name=f"{name} Labs", invoice_number_prefix=prefix)
    plan = PlanFactory(
        merchant=merchant, product__merchant=merchant, product__name=f"{name} Engine", name=f"{name} Pro"
    )
    PlanFactory(merchant=merchant, product=plan.product, name=f"{name} Basic")
    fee_price(plan, "10.00", name=f"{name} platform fee")
    price = metered_price(plan, "0.01", name=f"{name} tokens")
    customer = CustomerFactory(merchant=merchant, name=f"{name} Customer", external_id=f"{name.lower()}-001")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    record_usage(customer, price.billable_metric, datetime(2026, 1, 9, tzinfo=UTC), 100)
    billing_run_execute(as_of=FEB_1, merchant=merchant)
    invoice = invoice_finalize(
        invoice=Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING), now=FEB_1
    )
    # a partial credit note: the invoice keeps money due (a full one would settle it), so "Mark paid" can pay it
    fee_line = invoice.lines.get(description__startswith=f"{name} platform fee")
    credit_note_issue(invoice=invoice, now=FEB_1, reason=f"{name} outage", amounts={fee_line.pk: Decimal("1.00")})
    # in a currency nothing is billed in: all of it is customer credit (the invoice stays as the actions expect)
    payment_record(
        customer=customer, currency="EUR", amount=Decimal("70"), method="bank_transfer", received_at=FEB_1, now=FEB_1
    )
    SubscriptionPlanChange.objects.create(
        subscription=subscription,
        from_plan=plan,
        to_plan=merchant.plans.get(name=f"{name} Basic"),
        kind=PlanChangeKind.DOWNGRADE,
        requested_at=FEB_1,
        effective_at=FEB_1 + timedelta(days=28),
    )
    api_key_create(merchant=merchant, name=f"{name} key")
    TestClockFactory(merchant=merchant, name=f"{name} clock")
    credit_grant(customer=customer, currency="USD", amount=Decimal("5"), idempotency_key=f"{name}-g", now=FEB_1)
    wallet_policy_update(
        customer=customer, currency="USD", policy="allow_overage", low_balance_threshold=Decimal("100"), now=FEB_1
    )
    commitment_create(
        customer=customer,
        currency="USD",
        amount=Decimal("1000"),
        term_start=JAN_1,
        term_end=JAN_1 + timedelta(days=365),
        description=f"{name} commitment",
    )
    endpoint = WebhookEndpointFactory(merchant=merchant, url=f"https://{name.lower()}.example/hook")
    WebhookDelivery.objects.create(endpoint=endpoint, event_id=f"evt_{name}", event_type="balance.low", payload={})
    webhooks_enable(merchant=merchant, now=FEB_1)
    DeliverySettings.objects.create(merchant=merchant, from_email=f"billing@{name.lower()}.example")
    MailTemplate.objects.create(merchant=merchant, kind="invoice", **mail_template_defaults("invoice"))
    DunningSettings.objects.create(merchant=merchant, steps=[3, 7], final_notice_days=21)
    feature = feature_create(
        merchant=merchant,
        product=plan.product,
        key=f"{name.lower()}-api",
        name=f"{name} API",
        type="metered",
        billable_metric=price.billable_metric,
    )
    entitlement = entitlement_issue(
        merchant=merchant,
        customer=customer,
        feature=feature,
        template={"type": "metered", "usagePeriod": {"interval": "P1M"}},
        now=FEB_1,
    )
    entitlement_grant_create(entitlement=entitlement, amount=Decimal("50"), idempotency_key=f"{name}-eg", now=FEB_1)
    payments_rows(customer=customer, name=name, now=FEB_1)
    spend_alert_create(
        customer=customer,
        data=SpendAlertInput(currency="USD", threshold_kind="amount", thresholds=("100",), name=f"{name} budget"),
    )
    spend_cap_set(customer=customer, currency="USD", amount="1000", on_reach="block", now=FEB_1)
    cost_create(
        merchant=merchant,
        product=plan.product,
        name=f"{name} GPU time",
        unit_cost=Decimal("0.0005"),
        currency="USD",
        unit="GPU-seconds",
        aggregation="SUM",
        event_type="gpu.job",
        value_property="$.seconds",
    )
    return SimpleNamespace(
        merchant=merchant,
        plan=plan,
        customer=customer,
        subscription=subscription,
        invoice=invoice,
        entitlement=entitlement,
    )


@pytest.fixture
def world():
    return SimpleNamespace(a=build_merchant("Alpha", "ALP"), b=build_merchant("Bravo", "BRV"))


def staff_client(username: str, *merchants: Merchant) -> Client:
    billing_roles_sync()
    user = User.objects.create_user(username, is_staff=True, password="pw")
    user.groups.add(Group.objects.get(name=BILLING_ADMIN))
    for merchant in merchants:
        StaffMerchantAccess.objects.create(user=user, merchant=merchant)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def scoped_client(world) -> Client:
    return staff_client("alpha-staff", world.a.merchant)


@pytest.fixture
def unbound_client(world) -> Client:
    return staff_client("any-staff")


def row_of(model, merchant):
    return model._default_manager.filter(**{MERCHANT_PATHS[label(model)]: merchant.pk}).order_by("pk").first()


def rows_of(world, model):
    row_a, row_b = row_of(model, world.a.merchant), row_of(model, world.b.merchant)
    assert row_a is not None and row_b is not None, f"the fixture has no {label(model)} of each merchant"
    return row_a, row_b


def change_link(model, obj) -> str:
    return admin_url(model, "change", quote(obj.pk))


# --- every admin is scoped -------------------------------------------------------------------------


def test_the_table_names_every_admin():
    assert sorted(label(model) for model in registered_billing_models()) == sorted(MERCHANT_PATHS)


@pytest.mark.parametrize("model", registered_billing_models(), ids=label)
def test_every_admin_and_inline_is_scoped_by_the_path_to_its_merchant(model):
    model_admin = admin.site.get_model_admin(model)

    assert isinstance(model_admin, MerchantScopedAdminMixin)
    assert model_admin.merchant_path == MERCHANT_PATHS[label(model)]
    for inline in model_admin.inlines:
        assert issubclass(inline, MerchantScopedAdminMixin), inline


@pytest.mark.parametrize("model", MERCHANT_OWNED, ids=label)
def test_a_bound_user_sees_only_their_merchants_rows(model, world, scoped_client, superuser_client, unbound_client):
    row_a, row_b = rows_of(world, model)

    scoped = scoped_client.get(admin_url(model, "changelist")).content.decode()
    every = [
        client.get(admin_url(model, "changelist")).content.decode() for client in (superuser_client, unbound_client)
    ]

    assert change_link(model, row_a) in scoped
    assert change_link(model, row_b) not in scoped
    for page in every:
        assert change_link(model, row_a) in page and change_link(model, row_b) in page


@pytest.mark.parametrize("model", MERCHANT_OWNED, ids=label)
def test_another_merchants_object_page_does_not_open(model, world, scoped_client, superuser_client):
    row_a, row_b = rows_of(world, model)

    own = scoped_client.get(change_link(model, row_a))
    other = scoped_client.get(change_link(model, row_b))

    assert own.status_code == 200
    # Django's admin answers an object it cannot find with a redirect to the index ("doesn't exist").
    assert other.status_code == 302 and other.url == reverse("admin:index")
    assert superuser_client.get(change_link(model, row_b)).status_code == 200
    history = scoped_client.get(admin_url(model, "history", quote(row_b.pk)))
    assert history.status_code in (302, 404)


@pytest.mark.parametrize(
    "model", [model for model in MERCHANT_OWNED if admin.site.get_model_admin(model).search_fields], ids=label
)
def test_searching_another_merchants_name_finds_nothing(model, world, scoped_client, superuser_client):
    _, row_b = rows_of(world, model)

    scoped = scoped_client.get(admin_url(model, "changelist"), {"q": "Bravo"}).content.decode()

    assert change_link(model, row_b) not in scoped
    assert "Bravo Labs" not in scoped


def test_search_finds_the_other_merchants_customer_only_for_unrestricted_staff(world, scoped_client, superuser_client):
    customer_b = world.b.customer
    url = admin_url(customer_b, "changelist")

    assert change_link(customer_b, customer_b) not in scoped_client.get(url, {"q": "Bravo"}).content.decode()
    assert change_link(customer_b, customer_b) in superuser_client.get(url, {"q": "Bravo"}).content.decode()


@pytest.mark.parametrize(("model_name", "field_name"), [("price", "customer"), ("subscription", "customer")])
def test_autocomplete_offers_only_their_merchants_customers(
    model_name, field_name, world, scoped_client, superuser_client
):
    params = {"app_label": "catalog", "model_name": model_name, "field_name": field_name, "term": "Customer"}
    url = reverse("admin:autocomplete")

    scoped = scoped_client.get(url, params).json()["results"]
    every = superuser_client.get(url, params).json()["results"]

    assert [row["text"] for row in scoped] == ["Alpha Customer"]
    assert sorted(row["text"] for row in every) == ["Alpha Customer", "Bravo Customer"]
    assert scoped_client.get(url, {**params, "term": "Bravo"}).json()["results"] == []


# --- choices and filters ---------------------------------------------------------------------------------


def test_adding_offers_only_their_merchants_as_choices(world, scoped_client, superuser_client):
    product_add = scoped_client.get(reverse("admin:catalog_product_add")).content.decode()
    price_add = scoped_client.get(reverse("admin:catalog_price_add")).content.decode()

    assert f'value="{world.a.merchant.pk}"' in product_add
    assert f'value="{world.b.merchant.pk}"' not in product_add
    assert f'value="{world.a.plan.pk}"' in price_add
    assert f'value="{world.b.plan.pk}"' not in price_add
    assert (
        f'value="{world.b.merchant.pk}"' in superuser_client.get(reverse("admin:catalog_product_add")).content.decode()
    )


def test_saving_an_object_for_another_merchant_is_refused(world, scoped_client):
    response = scoped_client.post(
        reverse("admin:catalog_product_add"), {"merchant": world.b.merchant.pk, "name": "Smuggled", "metadata": "{}"}
    )

    assert response.status_code == 200  # the form again, with an error on the merchant
    assert "Select a valid choice" in response.content.decode()
    assert not world.b.merchant.products.filter(name="Smuggled").exists()


@pytest.mark.parametrize(
    "page", ["catalog_product", "catalog_plan", "catalog_price", "wallets_entitlementgrant", "costs_cost"]
)
def test_list_filters_name_only_their_merchants(page, world, scoped_client, superuser_client):
    url = reverse(f"admin:{page}_changelist")

    scoped = scoped_client.get(url).content.decode()

    assert "Bravo" not in scoped  # neither in the rows nor in the filters' choices
    assert "Bravo" in superuser_client.get(url).content.decode()


def test_a_bound_user_cannot_add_merchants(world, scoped_client, unbound_client):
    assert scoped_client.get(reverse("admin:catalog_merchant_add")).status_code == 403
    assert unbound_client.get(reverse("admin:catalog_merchant_add")).status_code == 200


# --- custom views, actions and CSV ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url_of",
    [
        lambda w: reverse("admin:invoicing_invoice_pdf", args=[w.invoice.pk]),
        lambda w: reverse("admin:invoicing_invoice_html", args=[w.invoice.pk]),
        lambda w: reverse("admin:invoicing_creditnote_pdf", args=[w.invoice.credit_notes.get().pk]),
        lambda w: reverse("admin:catalog_plan_simulate", args=[w.plan.pk]),
        lambda w: reverse("admin:catalog_customer_credit_grant", args=[w.customer.pk]),
        lambda w: reverse("admin:catalog_customer_credit_top_up", args=[w.customer.pk]),
        lambda w: reverse("admin:invoicing_subscription_terminate", args=[quote(w.subscription.pk)]),
        lambda w: reverse("admin:invoicing_subscription_change_plan_now", args=[quote(w.subscription.pk)]),
        lambda w: reverse("admin:wallets_entitlement_grant_add", args=[quote(w.entitlement.pk)]),
    ],
    ids=[
        "invoice-pdf",
        "invoice-html",
        "credit-note-pdf",
        "simulator",
        "grant",
        "top-up",
        "terminate",
        "upgrade",
        "entitlement-grant",
    ],
)
def test_custom_views_answer_404_for_another_merchants_object(url_of, world, scoped_client):
    assert scoped_client.get(url_of(world.a)).status_code == 200
    assert scoped_client.get(url_of(world.b)).status_code == 404


def test_posting_a_credit_grant_for_another_merchants_customer_records_nothing(world, scoped_client):
    url = reverse("admin:catalog_customer_credit_grant", args=[world.b.customer.pk])

    response = scoped_client.post(url, {"currency": "USD", "amount": "1000", "idempotency_key": "smuggle"})

    assert response.status_code == 404
    assert not world.b.customer.wallets.get().entries.filter(idempotency_key="smuggle").exists()


def _csv_customers(response) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    return sorted(row["customer"] for row in rows)


def test_csv_export_contains_only_their_merchants_invoices(world, scoped_client, superuser_client):
    url = reverse("admin:invoicing_invoice_export")
    period = {"start": "2026-01-01", "end": "2026-02-01"}

    scoped = _csv_customers(scoped_client.get(url, period))
    asking_for_b = _csv_customers(scoped_client.get(url, {**period, "merchant": world.b.merchant.pk}))
    every = _csv_customers(superuser_client.get(url, period))

    assert (
        set(scoped) == {"Alpha Customer"} and len(scoped) == Invoice.objects.filter(merchant=world.a.merchant).count()
    )
    assert asking_for_b == []
    assert set(every) == {"Alpha Customer", "Bravo Customer"}


def test_csv_action_exports_only_their_merchants_invoices(world, scoped_client):
    selected = list(Invoice.objects.values_list("pk", flat=True))

    response = scoped_client.post(
        reverse("admin:invoicing_invoice_changelist"), {"action": "action_export_csv", "_selected_action": selected}
    )

    assert set(_csv_customers(response)) == {"Alpha Customer"}


def test_actions_leave_another_merchants_rows_alone(world, scoped_client):
    # both invoices were partly credited: money is still due on each
    world.a.invoice.refresh_from_db()
    world.b.invoice.refresh_from_db()
    assert [world.a.invoice.amount_due, world.b.invoice.amount_due] == [Decimal("10.00"), Decimal("10.00")]

    response = scoped_client.post(
        reverse("admin:invoicing_invoice_changelist"),
        {"action": "action_mark_paid", "_selected_action": [world.a.invoice.pk, world.b.invoice.pk]},
    )

    world.a.invoice.refresh_from_db()
    world.b.invoice.refresh_from_db()
    assert response.status_code == 302
    assert (world.a.invoice.status, world.a.invoice.amount_due) == ("paid", Decimal("0.00"))
    assert (world.b.invoice.status, world.b.invoice.amount_due) == ("issued", Decimal("10.00"))


def test_run_billing_now_is_refused_to_a_bound_user(world, scoped_client):
    runs = BillingRun.objects.count()

    page = scoped_client.get(reverse("admin:invoicing_invoice_changelist")).content.decode()
    response = scoped_client.post(reverse("admin:invoicing_run_billing"), {"reason": "month end"})

    assert BillingRun.objects.count() == runs
    assert response.status_code == 403
    assert reverse("admin:invoicing_run_billing") not in page


def test_billing_runs_are_hidden_from_a_bound_user(world, scoped_client, unbound_client):
    run = BillingRun.objects.order_by("pk").first()

    assert change_link(BillingRun, run) not in scoped_client.get(admin_url(BillingRun, "changelist")).content.decode()
    assert change_link(BillingRun, run) in unbound_client.get(admin_url(BillingRun, "changelist")).content.decode()


# --- the billing home -----------------------------------------------------------------------------------


def test_the_billing_home_shows_only_their_merchants(world, scoped_client, unbound_client):
    scoped = scoped_client.get(reverse("admin:index")).content.decode()
    every = unbound_client.get(reverse("admin:index")).content.decode()

    assert "Alpha Engine" in scoped and "Alpha Customer" in scoped  # product picker, low balances
    assert "Bravo" not in scoped
    assert "Bravo Engine" in every and "Bravo Customer" in every


def test_a_superuser_bound_to_a_merchant_still_sees_every_merchant(world):
    root = User.objects.create_superuser("root-bound", "root@example.com", "pw")
    StaffMerchantAccess.objects.create(user=root, merchant=world.a.merchant)
    client = Client()
    client.force_login(root)

    page = client.get(reverse("admin:catalog_customer_changelist")).content.decode()

    assert "Alpha Customer" in page and "Bravo Customer" in page


# --- the bindings ---------------------------------------------------------------------------------------


def test_only_superusers_edit_the_bindings_on_the_user_page(world, superuser_client):
    user = User.objects.create_user("newcomer", is_staff=True)
    page = superuser_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert "Merchants this user is limited to" in page

    editor = User.objects.create_user("user-editor", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(content_type__app_label="auth", codename__endswith="_user"))
    client = Client()
    client.force_login(editor)
    assert (
        "merchants this user is limited to"
        not in client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    )


def test_the_system_check_refuses_an_admin_without_a_path_to_its_merchant():
    class Undeclared(MerchantScopedAdminMixin, admin.ModelAdmin):
        pass

    class Wrong(MerchantScopedAdminMixin, admin.ModelAdmin):
        merchant_path = "customer"

    site = admin.AdminSite(name="scoping-check")

    assert [e.id for e in Undeclared(Invoice, site)._check_merchant_path()] == ["catalog.E001"]
    assert [e.id for e in Wrong(Invoice, site)._check_merchant_path()] == ["catalog.E002"]
    assert admin.site.get_model_admin(Invoice)._check_merchant_path() == []


def test_the_billing_schedule_is_read_only_for_staff_limited_to_merchants(world, scoped_client, unbound_client):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_15 = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="close", task="invoicing.tasks.close_billing_periods", interval=every_15)
    tasks = reverse("admin:django_celery_beat_periodictask_changelist")

    scoped_list = scoped_client.get(tasks)
    refused = scoped_client.post(tasks, {"action": "disable_tasks", "_selected_action": [task.pk]})
    refused_edit = scoped_client.post(
        reverse("admin:django_celery_beat_intervalschedule_change", args=[every_15.pk]), {"every": 1, "period": "days"}
    )

    task.refresh_from_db()
    every_15.refresh_from_db()
    assert scoped_list.status_code == 200
    assert "disable_tasks" not in scoped_list.content.decode()
    assert refused.status_code in (200, 302) and task.enabled is True
    assert refused_edit.status_code == 403 and (every_15.every, every_15.period) == (15, "minutes")
    assert "disable_tasks" in unbound_client.get(tasks).content.decode()

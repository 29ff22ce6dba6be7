"""The subscription page: lifecycle fields read-only, the add page and the lifecycle buttons call the
invoicing services (the same invoices as the API or a direct service call), refusals are finance messages,
and only a "Billing admin" may act."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse

from catalog.models import PaymentTerm, Subscription, SubscriptionStatus
from catalog.pricing.currency import format_money
from invoicing.models import (
    BillingRun,
    Invoice,
    InvoiceError,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    PlanChangeKind,
    SubscriptionPlanChange,
)
from invoicing.services import (
    SubscriptionChangeError,
    subscription_create_with_upfront_payment,
    subscription_start,
    subscription_terminate,
    subscription_upgrade,
)
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price, metered_price, record_usage

pytestmark = pytest.mark.django_db

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_22_NOON = datetime(2026, 1, 22, 12, 0, tzinfo=UTC)  # 10 of January's 31 days remain
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
TERMS = {
    "name",
    "auto_charge",
    "tax_exempt",
    "payment_term_days",
    "version_policy",
    "metadata",
    "threshold_amount",
    "threshold_ladder",
    "threshold_recurring",
}


def make_plan(seller, name, fee, unit_price, **extra):
    plan = PlanFactory(merchant=seller, product__merchant=seller, product__name="Cloud", name=name, **extra)
    fee_price(plan, fee, term=PaymentTerm.IN_ADVANCE, name=f"{name} fee")
    metered_price(plan, unit_price, name=f"{name} calls", unit="calls", event_type="api.call")
    return plan


def metric_of(plan):
    return plan.prices.get(billable_metric__isnull=False).billable_metric


def lines_of(invoice):
    return [(line.kind, line.description, line.amount) for line in invoice.lines.order_by("position")]


def change_url(subscription) -> str:
    return reverse("admin:catalog_subscription_change", args=(quote(subscription.pk),))


def action_url(subscription, slug: str) -> str:
    return reverse(f"admin:invoicing_subscription_{slug.replace('-', '_')}", args=(quote(subscription.pk),))


def texts(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def at(monkeypatch):
    """Freeze the admin's clock: ``at(moment)``."""

    def freeze(moment: datetime) -> None:
        monkeypatch.setattr("invoicing.admin_subscriptions.timezone.now", lambda: moment)

    return freeze


@pytest.fixture
def basic(seller):
    return make_plan(seller, "Basic", "30.00", "0.01")


@pytest.fixture
def pro(seller):
    return make_plan(seller, "Pro", "90.00", "0.005")


@pytest.fixture
def subscription(seller, basic):
    customer = CustomerFactory(merchant=seller, name="Acme")
    return subscription_start(customer=customer, plan=basic, started_at=JAN_1, now=JAN_1)


# -- the change page ----------------------------------------------------------------------------------------


def test_lifecycle_fields_are_read_only_and_the_buttons_are_offered(billing_admin_client, subscription):
    response = billing_admin_client.get(change_url(subscription))

    assert response.status_code == 200
    assert set(response.context["adminform"].form.fields) == TERMS
    page = response.content.decode()
    for slug in ("change-plan-now", "change-plan-at-period-end", "terminate"):
        assert f'href="{action_url(subscription, slug)}"' in page
    assert "cancel-scheduled-end" not in page  # no scheduled end to cancel


def test_terms_are_saved_and_posted_lifecycle_fields_are_ignored(billing_admin_client, subscription, pro):
    response = billing_admin_client.post(
        change_url(subscription),
        {
            "name": "Acme · Basic (EU)",
            "tax_exempt": "on",
            "payment_term_days": "30",
            "version_policy": "pinned",
            "metadata": '{"po": "PO-7"}',
            # a hand-made POST trying the fields the page shows read-only
            "plan": pro.pk,
            "status": "terminated",
            "ending_at_0": "2026-01-10",
            "ending_at_1": "00:00:00",
        },
    )

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.name, subscription.tax_exempt, subscription.payment_term_days) == (
        "Acme · Basic (EU)",
        True,
        30,
    )
    assert (subscription.version_policy, subscription.metadata) == ("pinned", {"po": "PO-7"})
    assert (subscription.plan.name, subscription.status, subscription.ending_at) == (
        "Basic",
        SubscriptionStatus.ACTIVE,
        None,
    )
    assert SubscriptionPlanChange.objects.count() == 0


def test_version_policy_takes_the_apis_values_only(billing_admin_client, subscription):
    response = billing_admin_client.post(
        change_url(subscription),
        {"name": "Acme", "payment_term_days": "0", "version_policy": "sometimes", "metadata": "{}"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["version_policy"] == [
        "Select a valid choice. sometimes is not one of the available choices."
    ]
    subscription.refresh_from_db()
    assert (subscription.name, subscription.version_policy) == ("Acme · Basic", "floating")


def test_a_refused_terms_change_is_reported_and_nothing_is_saved_or_logged(
    billing_admin_client, subscription, monkeypatch
):
    def refuse(**kwargs):
        raise SubscriptionChangeError("The subscription is terminated; it can no longer change.")

    monkeypatch.setattr("invoicing.services.subscription_update", refuse)

    response = billing_admin_client.post(
        change_url(subscription),
        {"name": "Renamed", "payment_term_days": "0", "version_policy": "floating", "metadata": "{}"},
    )

    assert (response.status_code, response.url) == (302, change_url(subscription))
    assert texts(response) == ["Not saved: The subscription is terminated; it can no longer change."]
    subscription.refresh_from_db()
    assert subscription.name != "Renamed"
    assert LogEntry.objects.count() == 0


def test_a_terminated_subscription_is_read_only_and_offers_no_button(billing_admin_client, subscription):
    subscription_terminate(subscription=subscription, now=JAN_22_NOON)

    response = billing_admin_client.get(change_url(subscription))

    assert set(response.context["adminform"].form.fields) == set()
    assert "subscription-action-" not in response.content.decode()


def test_subscriptions_cannot_be_deleted(superuser_client, subscription):
    response = superuser_client.get(
        reverse("admin:catalog_subscription_delete", args=(quote(subscription.pk),)), follow=True
    )

    assert response.status_code == 403
    assert Subscription.objects.filter(pk=subscription.pk).exists()


# -- adding: the API's service ------------------------------------------------------------------------------


def add_form(customer, plan, **extra) -> dict[str, str]:
    return {
        "merchant": customer.merchant_id,
        "customer": customer.pk,
        "plan": plan.pk,
        "name": "",
        "started_at_0": "2026-01-01",
        "started_at_1": "00:00:00",
        "payment_term_days": "0",
        "version_policy": "floating",
        "elapsed_period_billing": "none",
        "metadata": "{}",
        **extra,
    }


def test_adding_issues_invoice_0_exactly_as_the_api(billing_admin_client, seller, basic, at):
    # given two customers, one started by the admin's add page and one by the API's service, at the same moment
    at(JAN_1)
    acme = CustomerFactory(merchant=seller, name="Acme")
    twin = subscription_create_with_upfront_payment(
        customer=CustomerFactory(merchant=seller, name="Twin"), plan=basic, started_at=JAN_1, now=JAN_1
    )

    response = billing_admin_client.post(reverse("admin:catalog_subscription_add"), add_form(acme, basic))

    # then the admin's subscription has the same Invoice 0 and waits for its payment like the API's
    assert response.status_code == 302
    added = Subscription.objects.get(customer=acme)
    assert (added.name, added.status, added.started_at) == ("Acme · Basic", SubscriptionStatus.PENDING_PAYMENT, JAN_1)
    opening = Invoice.objects.get(subscription=added, kind=InvoiceKind.OPENING)
    twin_opening = Invoice.objects.get(subscription=twin, kind=InvoiceKind.OPENING)
    assert (
        lines_of(opening)
        == lines_of(twin_opening)
        == [(LineKind.FEE, "Basic fee (Jan 1, 2026 – Jan 31, 2026)", Decimal("30.0000"))]
    )
    assert (opening.status, opening.total, opening.amount_due) == (
        InvoiceStatus.ISSUED,
        Decimal("30.00"),
        Decimal("30.00"),
    )
    assert any(
        text.startswith(f'Invoice 0 <a href="/admin/invoicing/invoice/{quote(opening.pk)}/change/">')
        for text in texts(response)
    )
    assert response.url == reverse("admin:catalog_subscription_changelist")


def test_an_added_subscription_is_logged_and_linked_as_the_row_the_service_created(
    billing_admin_client, seller, basic, at
):
    at(JAN_1)
    acme = CustomerFactory(merchant=seller, name="Acme")

    response = billing_admin_client.post(
        reverse("admin:catalog_subscription_add"), add_form(acme, basic, _continue="1")
    )

    added = Subscription.objects.get()
    assert response.url == reverse("admin:catalog_subscription_change", args=[quote(added.pk)])
    assert list(LogEntry.objects.values_list("action_flag", "object_id")) == [(ADDITION, added.pk)]


def test_a_backdated_start_closes_the_periods_that_already_ended(billing_admin_client, seller, basic, at):
    at(datetime(2026, 2, 10, tzinfo=UTC))
    acme = CustomerFactory(merchant=seller, name="Acme")
    record_usage(acme, metric_of(basic), datetime(2026, 1, 5, tzinfo=UTC), 100)

    billing_admin_client.post(reverse("admin:catalog_subscription_add"), add_form(acme, basic, name="Acme Basic"))

    added = Subscription.objects.get(customer=acme)
    recurring = Invoice.objects.get(subscription=added, kind=InvoiceKind.RECURRING)
    assert (recurring.period_start, recurring.period_end) == (JAN_1, FEB_1)
    assert lines_of(recurring)[0] == (
        LineKind.USAGE,
        "Basic calls: 100 calls (Jan 1, 2026 – Jan 31, 2026)",
        Decimal("1.0000"),
    )


def test_adding_refuses_a_plan_of_another_merchant(billing_admin_client, seller):
    acme = CustomerFactory(merchant=seller)
    foreign = make_plan(PlanFactory().merchant, "Foreign", "10.00", "0.01")

    response = billing_admin_client.post(reverse("admin:catalog_subscription_add"), add_form(acme, foreign))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["plan"] == ["The plan belongs to another merchant."]
    assert Subscription.objects.count() == 0


def test_a_refused_start_is_reported_on_the_add_page_and_nothing_is_kept(
    billing_admin_client, seller, basic, monkeypatch
):
    def refuse(**kwargs):
        raise InvoiceError("The plan and the customer belong to different merchants.")

    monkeypatch.setattr("invoicing.services.subscription_create_with_upfront_payment", refuse)
    acme = CustomerFactory(merchant=seller)

    response = billing_admin_client.post(reverse("admin:catalog_subscription_add"), add_form(acme, basic))

    assert (response.status_code, response.url) == (302, reverse("admin:catalog_subscription_add"))
    assert texts(response) == [
        "The subscription was not started: The plan and the customer belong to different merchants."
    ]
    assert (Subscription.objects.count(), LogEntry.objects.count()) == (0, 0)


def test_a_viewer_cannot_add(viewer_client, seller, basic):
    acme = CustomerFactory(merchant=seller)

    assert viewer_client.get(reverse("admin:catalog_subscription_add")).status_code == 403
    assert viewer_client.post(reverse("admin:catalog_subscription_add"), add_form(acme, basic)).status_code == 403
    assert Subscription.objects.count() == 0


# -- change plan now (upgrade) ------------------------------------------------------------------------------


def test_upgrade_from_the_admin_issues_the_same_plan_change_invoice_as_the_service(
    billing_admin_client, seller, subscription, basic, pro, at
):
    # given a twin subscription on the same plan with the same usage, upgraded by a direct service call
    twin = subscription_start(customer=CustomerFactory(merchant=seller), plan=basic, started_at=JAN_1, now=JAN_1)
    for sub in (subscription, twin):
        record_usage(sub.customer, metric_of(basic), datetime(2026, 1, 5, tzinfo=UTC), 100)
    twin_invoice = subscription_upgrade(subscription=twin, new_plan=pro, now=JAN_22_NOON)
    at(JAN_22_NOON)

    # when finance changes the plan now from the subscription page
    form_page = billing_admin_client.get(action_url(subscription, "change-plan-now"))
    response = billing_admin_client.post(action_url(subscription, "change-plan-now"), {"plan": pro.pk})

    # then the plan-change invoice is the service's, to the cent
    assert [str(plan) for plan in form_page.context["form"].fields["plan"].queryset] == ["Cloud · Pro"]
    assert (response.status_code, response.url) == (302, change_url(subscription))
    invoice = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.PLAN_CHANGE)
    assert (
        lines_of(invoice)
        == lines_of(twin_invoice)
        == [
            (LineKind.USAGE, "Basic calls: 100 calls (Jan 1, 2026 – Jan 22, 2026)", Decimal("1.0000")),
            (
                LineKind.CREDIT,
                "Credit for unused time: Basic fee (Jan 22, 2026 – Jan 31, 2026), prorated 10/31 days",
                Decimal("-9.6800"),
            ),
            (LineKind.FEE, "Pro fee (Jan 22, 2026 – Jan 31, 2026), prorated 10/31 days", Decimal("29.0300")),
        ]
    )
    assert invoice.total == twin_invoice.total == Decimal("20.35")
    subscription.refresh_from_db()
    assert (subscription.plan_id, subscription.plan_changed_at) == (pro.pk, JAN_22_NOON)
    change = SubscriptionPlanChange.objects.get(subscription=subscription)
    assert (change.kind, change.effective_at, change.applied_at, change.invoice_id) == (
        PlanChangeKind.UPGRADE,
        JAN_22_NOON,
        JAN_22_NOON,
        invoice.pk,
    )
    assert texts(response) == [
        f'Plan changed to Cloud · Pro. Plan-change invoice <a href="/admin/invoicing/invoice/{quote(invoice.pk)}'
        f'/change/">Draft {invoice.pk}</a>: $20.35.'
    ]


def test_a_plan_in_another_currency_is_not_offered_and_refused(billing_admin_client, seller, subscription, at):
    euro = make_plan(seller, "Euro", "90.00", "0.005", currency="EUR")
    at(JAN_22_NOON)

    response = billing_admin_client.post(action_url(subscription, "change-plan-now"), {"plan": euro.pk})

    assert response.status_code == 200
    assert response.context["form"].errors["plan"] == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    subscription.refresh_from_db()
    assert subscription.plan.name == "Basic"
    assert not Invoice.objects.filter(kind=InvoiceKind.PLAN_CHANGE).exists()


def test_a_service_refusal_is_shown_on_the_form_never_a_500(billing_admin_client, subscription, pro, at, monkeypatch):
    def refuse(**kwargs):
        raise SubscriptionChangeError(f"{subscription.pk} changed plan while being billed; the next run bills it.")

    monkeypatch.setattr("invoicing.services.subscription_upgrade", refuse)
    at(JAN_22_NOON)

    response = billing_admin_client.post(action_url(subscription, "change-plan-now"), {"plan": pro.pk})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        f"{subscription.pk} changed plan while being billed; the next run bills it."
    ]
    assert "Nothing was changed" in response.content.decode()


# -- change plan at period end (downgrade) ------------------------------------------------------------------


def test_downgrade_is_scheduled_for_the_period_end(billing_admin_client, subscription, pro, at):
    at(JAN_22_NOON)

    response = billing_admin_client.post(action_url(subscription, "change-plan-at-period-end"), {"plan": pro.pk})

    assert response.status_code == 302
    assert texts(response) == ["Cloud · Pro takes over on 2026-02-01 00:00 UTC (the end of this period)."]
    subscription.refresh_from_db()
    assert subscription.plan.name == "Basic"
    change = SubscriptionPlanChange.objects.get(subscription=subscription)
    assert (change.kind, change.effective_at, change.applied_at) == (PlanChangeKind.DOWNGRADE, FEB_1, None)
    assert not Invoice.objects.filter(kind=InvoiceKind.PLAN_CHANGE).exists()
    page = billing_admin_client.get(change_url(subscription)).content.decode()
    assert "Plan changes to Cloud · Pro on 2026-02-01 00:00 UTC." in page


# -- terminate ----------------------------------------------------------------------------------------------


def test_terminate_now_issues_the_same_final_invoice_as_the_service(
    billing_admin_client, seller, subscription, basic, at
):
    twin = subscription_start(customer=CustomerFactory(merchant=seller), plan=basic, started_at=JAN_1, now=JAN_1)
    for sub in (subscription, twin):
        record_usage(sub.customer, metric_of(basic), datetime(2026, 1, 5, tzinfo=UTC), 100)
    subscription_terminate(subscription=twin, now=JAN_22_NOON)
    at(JAN_22_NOON)

    response = billing_admin_client.post(
        action_url(subscription, "terminate"), {"when": "now", "reason": "Customer churned"}
    )

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.status, subscription.terminated_at) == (SubscriptionStatus.TERMINATED, JAN_22_NOON)
    assert (subscription.termination_reason, subscription.terminated_by) == ("Customer churned", "billing-admin")
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    twin_final = Invoice.objects.get(subscription=twin, kind=InvoiceKind.RECURRING)
    assert lines_of(final) == lines_of(twin_final)
    assert lines_of(final)[0] == (
        LineKind.USAGE,
        "Basic calls: 100 calls (Jan 1, 2026 – Jan 22, 2026)",
        Decimal("1.0000"),
    )
    assert final.total == twin_final.total


def test_the_terminate_page_shows_the_final_invoice_and_the_dates_and_its_total_is_what_is_billed(
    billing_admin_client, subscription, basic, at
):
    record_usage(subscription.customer, metric_of(basic), datetime(2026, 1, 5, tzinfo=UTC), 100)
    at(JAN_22_NOON)

    response = billing_admin_client.get(action_url(subscription, "terminate"))

    now_choice, end_choice = response.context["consequences"]
    assert now_choice["when"] == "Now (2026-01-22 12:00 UTC)"
    assert end_choice["when"] == "At the end of the current period (2026-02-01 00:00 UTC)"
    assert Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.RECURRING).count() == 0
    billing_admin_client.post(action_url(subscription, "terminate"), {"when": "now", "reason": "Customer churned"})
    final = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING)
    assert now_choice["lines"] == [
        (line.description, format_money(line.amount, "USD")) for line in final.lines.exclude(kind=LineKind.TAX)
    ]
    assert now_choice["total"] == format_money(final.total, "USD")
    assert "Final invoice total (as of now)" in response.content.decode()


def test_terminating_without_a_reason_is_refused_on_the_form_and_changes_nothing(
    billing_admin_client, subscription, at
):
    at(JAN_22_NOON)

    response = billing_admin_client.post(action_url(subscription, "terminate"), {"when": "now", "reason": " "})

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "reason": ["Give a reason: it is kept on the subscription and shown in its history."]
    }
    subscription.refresh_from_db()
    assert (subscription.status, subscription.terminated_at, subscription.ending_at) == (
        SubscriptionStatus.ACTIVE,
        None,
        None,
    )


def test_terminate_at_period_end_then_cancel_the_scheduled_end(billing_admin_client, subscription, at):
    at(JAN_22_NOON)

    response = billing_admin_client.post(
        action_url(subscription, "terminate"), {"when": "period_end", "reason": "Moving to annual"}
    )

    assert texts(response) == ["The subscription ends on 2026-02-01 00:00 UTC, at the end of this period."]
    subscription.refresh_from_db()
    assert (subscription.status, subscription.ending_at) == (SubscriptionStatus.ACTIVE, FEB_1)
    assert f'href="{action_url(subscription, "cancel-scheduled-end")}"' in (
        billing_admin_client.get(change_url(subscription)).content.decode()
    )

    response = billing_admin_client.post(action_url(subscription, "cancel-scheduled-end"), {})

    assert texts(response) == ["The scheduled end was canceled; the subscription keeps renewing."]
    subscription.refresh_from_db()
    assert (subscription.status, subscription.ending_at) == (SubscriptionStatus.ACTIVE, None)


def test_terminating_a_terminated_subscription_is_refused_with_a_message(billing_admin_client, subscription, at):
    subscription_terminate(subscription=subscription, now=JAN_22_NOON)
    at(JAN_22_NOON)

    response = billing_admin_client.post(action_url(subscription, "terminate"), {"when": "now", "reason": "again"})

    assert (response.status_code, response.url) == (302, change_url(subscription))
    assert texts(response) == ["“Terminate the subscription” is not possible: the subscription is terminated."]
    subscription.refresh_from_db()
    assert subscription.termination_reason == ""


def test_a_pending_payment_subscription_can_only_end_now(billing_admin_client, seller, basic, at):
    pending = subscription_create_with_upfront_payment(
        customer=CustomerFactory(merchant=seller), plan=basic, started_at=JAN_1, now=JAN_1
    )
    at(JAN_22_NOON)

    page = billing_admin_client.get(change_url(pending)).content.decode()
    form = billing_admin_client.get(action_url(pending, "terminate")).context["form"]
    refused = billing_admin_client.post(action_url(pending, "change-plan-now"), {})

    assert pending.status == SubscriptionStatus.PENDING_PAYMENT
    assert "change-plan-now" not in page and f'href="{action_url(pending, "terminate")}"' in page
    assert [value for value, _ in form.fields["when"].choices] == ["now"]
    assert texts(refused) == [
        "“Change plan now (upgrade, prorated)” is not possible: the subscription is pending payment."
    ]


# -- roles --------------------------------------------------------------------------------------------------


def test_a_viewer_sees_the_subscription_but_no_button_and_every_action_is_refused(viewer_client, subscription, pro, at):
    at(JAN_22_NOON)

    page = viewer_client.get(change_url(subscription))

    assert page.status_code == 200
    assert "subscription-action-" not in page.content.decode()
    for slug, data in (
        ("change-plan-now", {"plan": pro.pk}),
        ("change-plan-at-period-end", {"plan": pro.pk}),
        ("terminate", {"when": "now", "reason": "viewer"}),
        ("cancel-scheduled-end", {}),
    ):
        assert viewer_client.get(action_url(subscription, slug)).status_code == 403
        assert viewer_client.post(action_url(subscription, slug), data).status_code == 403
    assert viewer_client.post(change_url(subscription), {"name": "Viewer was here"}).status_code == 403
    subscription.refresh_from_db()
    assert (subscription.plan.name, subscription.status, subscription.name) == (
        "Basic",
        SubscriptionStatus.ACTIVE,
        "Acme · Basic",
    )
    assert SubscriptionPlanChange.objects.count() == 0


def test_a_start_beyond_the_backdating_horizon_is_refused_on_the_add_page(
    billing_admin_client, seller, basic, at, settings
):
    settings.METERLINE_BACKDATE_HORIZON_DAYS = 366
    at(datetime(2026, 2, 10, tzinfo=UTC))
    acme = CustomerFactory(merchant=seller)

    response = billing_admin_client.post(
        reverse("admin:catalog_subscription_add"), add_form(acme, basic, started_at_0="1000-01-01")
    )

    assert (response.status_code, response.url) == (302, reverse("admin:catalog_subscription_add"))
    assert texts(response) == [
        "The subscription was not started: The start may lie at most 366 days in the past"
        " (not before 2025-02-09T00:00:00+00:00)."
    ]
    assert (Subscription.objects.count(), Invoice.objects.count(), LogEntry.objects.count()) == (0, 0, 0)


def test_a_start_a_year_back_says_which_periods_the_background_run_invoices(
    billing_admin_client, seller, basic, at, settings, django_capture_on_commit_callbacks
):
    settings.METERLINE_INLINE_CATCHUP_PERIODS = 3
    settings.METERLINE_BACKDATE_HORIZON_DAYS = 366
    at(datetime(2026, 1, 1, tzinfo=UTC))  # twelve months after the start
    acme = CustomerFactory(merchant=seller)

    with django_capture_on_commit_callbacks(execute=True):
        response = billing_admin_client.post(
            reverse("admin:catalog_subscription_add"), add_form(acme, basic, started_at_0="2025-01-01")
        )

    run = BillingRun.objects.get(trigger="catch_up")
    assert (
        f'9 elapsed periods are being invoiced in the background by <a href="/admin/invoicing/billingrun/{run.pk}/change/">'
        in texts(response)[0]
    )
    added = Subscription.objects.get(customer=acme)
    assert Invoice.objects.filter(subscription=added, kind=InvoiceKind.RECURRING).count() == 12


def test_finance_overrides_the_plans_threshold_and_a_viewer_only_sees_it(
    billing_admin_client, viewer_client, subscription
):
    response = billing_admin_client.post(
        change_url(subscription),
        {
            "name": "Acme",
            "payment_term_days": "0",
            "version_policy": "floating",
            "metadata": "{}",
            "threshold_amount": "150",
            "threshold_ladder": '["400"]',
            "threshold_recurring": "true",
        },
    )
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.threshold_amount, subscription.threshold_recurring) == (Decimal("150"), True)
    assert subscription.effective_threshold == ((Decimal("150"), Decimal("400")), True)

    page = viewer_client.get(change_url(subscription))
    assert page.status_code == 200
    assert not {"threshold_amount", "threshold_ladder", "threshold_recurring"} & set(
        page.context["adminform"].form.fields
    )
    assert "Threshold billing" in page.content.decode()


def test_the_plan_page_offers_threshold_billing(billing_admin_client, basic):
    page = billing_admin_client.get(reverse("admin:catalog_plan_change", args=(quote(basic.pk),)))
    assert page.status_code == 200
    assert {"threshold_amount", "threshold_ladder", "threshold_recurring"} <= set(page.context["adminform"].form.fields)

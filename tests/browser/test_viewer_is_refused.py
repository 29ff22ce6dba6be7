"""A "Billing viewer" in a real browser: the invoice and periodic-task lists offer no action that changes
anything, and a hand-forged POST of those actions (what the defect report did) changes nothing either."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from catalog.models import PaymentTerm
from catalog.roles import BILLING_VIEWER
from invoicing.models import Invoice, InvoiceKind, InvoiceStatus
from invoicing.services import billing_run_execute, invoice_finalize, subscription_start
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, fee_price

from .admin_pages import log_in, staff_user_with_role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def action_labels(page) -> list[str]:
    return page.eval_on_selector_all("select[name=action] option", "els => els.map(e => e.textContent.trim())")


def forged_action_post(page, url: str, action: str, pk: str):
    """POST an action the page did not offer, with the session's CSRF token, as a hostile viewer would."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return page.request.post(
        url,
        form={"action": action, "_selected_action": pk, "index": "0", "post": "yes", "reason": "viewer"},
        headers={"X-CSRFToken": token, "Referer": url},
    )


def test_viewer_sees_no_changing_actions_and_forged_posts_change_nothing(page, live_server):
    base = live_server.url
    merchant = MerchantFactory(name="Neural Labs", invoice_number_prefix="NLE")
    plan = PlanFactory(merchant=merchant, product__merchant=merchant, name="Pro", default_tax_rate=Decimal("0"))
    fee_price(plan, "49.00", term=PaymentTerm.IN_ADVANCE, name="Platform fee")
    customer = CustomerFactory(merchant=merchant, name="Acme Corp")
    subscription = subscription_start(customer=customer, plan=plan, started_at=JAN_1, now=JAN_1)
    billing_run_execute(as_of=FEB_1)
    invoice = invoice_finalize(
        invoice=Invoice.objects.get(subscription=subscription, kind=InvoiceKind.RECURRING), now=FEB_1
    )
    task = PeriodicTask.objects.create(
        name="invoicing-close-billing-periods",
        task="invoicing.tasks.close_billing_periods",
        interval=IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES),
    )
    staff_user_with_role("vera", BILLING_VIEWER)

    log_in(page, base, "vera")
    invoices_url = f"{base}/admin/invoicing/invoice/"
    page.goto(invoices_url)
    assert action_labels(page) == ["---------", "Export selected invoices as CSV"]
    assert page.locator("text=Run billing now").count() == 0
    page.screens("viewer invoice list offers export only")

    for action in ("action_void", "action_mark_paid", "action_credit_note", "action_finalize"):
        forged_action_post(page, invoices_url, action, invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.void_reason, invoice.credit_notes.count()) == (InvoiceStatus.ISSUED, "", 0)
    assert page.request.post(f"{base}/admin/invoicing/invoice/run-billing/").status == 403

    tasks_url = f"{base}/admin/django_celery_beat/periodictask/"
    page.goto(tasks_url)
    assert action_labels(page) in ([], ["---------"])  # no action at all: Django leaves the menu out
    page.screens("viewer periodic tasks offer no action")
    for action in ("disable_tasks", "toggle_tasks", "run_tasks"):
        forged_action_post(page, tasks_url, action, str(task.pk))
    task.refresh_from_db()
    assert task.enabled is True

    page.goto(f"{base}/admin/django_celery_beat/periodictask/{task.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    page.screens("viewer periodic task page is read-only")

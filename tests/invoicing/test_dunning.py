"""Dunning: overdue invoices get a reminder per step of the merchant's schedule, at most once per step (a
constraint), only the latest when several are due, none once the invoice is paid, credited or voided; the
final notice sets off the merchant's chosen action; the reminder reaches the customer through a real SMTP
server (aiosmtpd on 127.0.0.1) with the invoice's PDF."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import BillingMode, Subscription
from invoicing.models import (
    DeliveryReason,
    DeliveryStatus,
    DocumentDelivery,
    DunningAfterFinal,
    DunningReminder,
    DunningReminderStatus,
    DunningSettings,
    InvoiceStatus,
    MailTemplate,
    PaymentMethod,
    validate_dunning_steps,
)
from invoicing.receivables import invoices_mark_overdue, payment_record
from invoicing.services import (
    credit_note_issue,
    document_delivery_send,
    dunning_reminder_send,
    dunning_reminders_send_due,
    invoice_void,
)
from invoicing.services.delivery import SETTLED_SKIP
from invoicing.services.dunning import PAST_DUE_ACTION, USAGE_BLOCKED_ACTION
from invoicing.tasks import dunning_reminders_send_due_task
from tests.invoicing.receivables import JAN_1, account, issued

pytestmark = pytest.mark.django_db

DUE = JAN_1 + timedelta(days=14)  # issued on Jan 1 with 14 days' terms


def day(n: int):
    """``n`` days after the due date (and an hour, so the step is clearly due)."""
    return DUE + timedelta(days=n, hours=1)


@pytest.fixture
def dunning(seller):
    return DunningSettings.objects.create(merchant=seller, steps=[3, 7, 14], final_notice_days=30)


@pytest.fixture
def invoice(seller, dunning):
    subscription = account(seller, payment_term_days=14)
    subscription.customer.billing_emails = "ap@acme.example"
    subscription.customer.save()
    return issued(subscription, "100.00")


def steps(invoice) -> list[tuple[int, str, str]]:
    """(step, status, e-mail reason) of the invoice's dunning rows."""
    return [
        (reminder.step, reminder.status, reminder.delivery.reason if reminder.delivery else "")
        for reminder in DunningReminder.objects.filter(invoice=invoice).select_related("delivery").order_by("step")
    ]


def reminder_deliveries(invoice) -> list[str]:
    return list(
        DocumentDelivery.objects.filter(invoice=invoice)
        .exclude(reason=DeliveryReason.ISSUED)
        .order_by("id")
        .values_list("reason", flat=True)
    )


def pay(invoice, amount: str, *, at) -> None:
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal(amount),
        method=PaymentMethod.BANK_TRANSFER,
        received_at=at,
        now=at,
        invoice_ids=[invoice.pk],
    )


# -- once per step ---------------------------------------------------------------------------------------


def test_each_step_is_sent_once_across_beat_runs(invoice):
    assert dunning_reminders_send_due(now=day(2)) == []  # before the first reminder day
    first = dunning_reminders_send_due(now=day(3))
    assert [(r.invoice_id, r.step, r.final) for r in first] == [(invoice.pk, 1, False)]
    assert dunning_reminders_send_due(now=day(3)) == []  # a beat retry
    assert dunning_reminders_send_due(now=day(6)) == []  # step 1 done, step 2 not due
    assert [r.step for r in dunning_reminders_send_due(now=day(7))] == [2]
    assert steps(invoice) == [(1, "queued", "reminder"), (2, "queued", "reminder")]
    assert reminder_deliveries(invoice) == ["reminder", "reminder"]


def test_the_task_passes_the_time_and_counts_what_it_queued(invoice):
    assert dunning_reminders_send_due_task(now=day(3).isoformat()) == 1
    assert dunning_reminders_send_due_task(now=day(3).isoformat()) == 0


def test_a_step_is_unique_per_invoice_in_the_database(invoice):
    dunning_reminders_send_due(now=day(3))
    with pytest.raises(IntegrityError), transaction.atomic():
        DunningReminder.objects.create(
            merchant=invoice.merchant,
            customer=invoice.customer,
            invoice=invoice,
            step=1,
            days_after_due=3,
            status=DunningReminderStatus.QUEUED,
            created_at=day(3),
        )


def test_a_worker_that_loses_the_insert_to_another_sends_nothing(invoice, dunning):
    # Another worker inserted step 1 between this worker's selection and its insert (its row is committed, its
    # e-mail is its own business): this worker's insert hits the constraint and it queues no second e-mail.
    DunningReminder.objects.create(
        merchant=invoice.merchant,
        customer=invoice.customer,
        invoice=invoice,
        step=1,
        days_after_due=3,
        status=DunningReminderStatus.QUEUED,
        created_at=day(3),
    )
    assert dunning_reminder_send(invoice_id=invoice.pk, dunning=dunning, now=day(3)) is None
    assert DunningReminder.objects.filter(invoice=invoice).count() == 1
    assert reminder_deliveries(invoice) == []


def test_only_the_latest_due_step_is_sent_when_several_are_due(invoice):
    queued = dunning_reminders_send_due(now=day(20))  # steps 1, 2 and 3 are all due
    assert [r.step for r in queued] == [3]
    assert steps(invoice) == [(1, "skipped", ""), (2, "skipped", ""), (3, "queued", "reminder")]
    assert reminder_deliveries(invoice) == ["reminder"]
    assert dunning_reminders_send_due(now=day(25)) == []  # the skipped steps never go out later
    final = dunning_reminders_send_due(now=day(30))
    assert [(r.step, r.final, r.days_after_due) for r in final] == [(4, True, 30)]
    assert reminder_deliveries(invoice) == ["reminder", "final"]
    assert dunning_reminders_send_due(now=day(90)) == []  # nothing after the final notice


def test_merchants_without_dunning_or_with_it_off_send_nothing(seller, dunning, invoice):
    dunning.enabled = False
    dunning.save()
    assert dunning_reminders_send_due(now=day(40)) == []
    dunning.delete()
    assert dunning_reminders_send_due(now=day(40)) == []
    assert DunningReminder.objects.count() == 0


def test_overdue_and_partly_paid_invoices_are_dunned_for_what_is_still_due(invoice):
    pay(invoice, "40.00", at=DUE)
    invoices_mark_overdue(now=day(0))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.OVERDUE, Decimal("60.0000"))
    assert [r.step for r in dunning_reminders_send_due(now=day(3))] == [1]


# -- stopped when settled --------------------------------------------------------------------------------


def test_dunning_stops_when_the_invoice_is_paid(invoice):
    dunning_reminders_send_due(now=day(3))
    pay(invoice, "100.00", at=day(4))
    assert dunning_reminders_send_due(now=day(7)) == []
    assert dunning_reminders_send_due(now=day(30)) == []
    assert steps(invoice) == [(1, "queued", "reminder")]


def test_dunning_stops_when_the_invoice_is_credited_in_full(invoice):
    dunning_reminders_send_due(now=day(3))
    credit_note_issue(invoice=invoice, now=day(4), reason="Goodwill")
    invoice.refresh_from_db()
    assert invoice.amount_due == 0
    assert dunning_reminders_send_due(now=day(30)) == []


def test_dunning_stops_when_the_invoice_is_voided(invoice):
    dunning_reminders_send_due(now=day(3))
    invoice_void(invoice=invoice, now=day(4), reason="Billed in error")
    assert dunning_reminders_send_due(now=day(30)) == []
    assert [r.step for r in DunningReminder.objects.filter(invoice=invoice)] == [1]


def test_a_reminder_queued_before_the_payment_is_not_e_mailed(invoice, smtp):
    (reminder,) = dunning_reminders_send_due(now=day(3))
    pay(invoice, "100.00", at=day(3))
    delivery = document_delivery_send(delivery_id=reminder.delivery_id, now=day(3) + timedelta(minutes=1))
    assert (delivery.status, delivery.error) == (DeliveryStatus.SKIPPED, SETTLED_SKIP)
    assert smtp.received == []


# -- after the final notice ------------------------------------------------------------------------------


def test_the_final_notice_marks_the_subscription_past_due_when_the_merchant_chose_so(invoice, dunning):
    dunning.after_final = DunningAfterFinal.MARK_PAST_DUE
    dunning.save()
    dunning_reminders_send_due(now=day(14))
    assert Subscription.objects.get(pk=invoice.subscription_id).past_due_since is None  # reminders do not
    (final,) = dunning_reminders_send_due(now=day(30))
    assert (final.final, final.action) == (True, PAST_DUE_ACTION)
    assert Subscription.objects.get(pk=invoice.subscription_id).past_due_since == day(30)
    pay(invoice, "100.00", at=day(31))
    assert Subscription.objects.get(pk=invoice.subscription_id).past_due_since is None


def blocks(subscription_id) -> tuple:
    subscription = Subscription.objects.get(pk=subscription_id)
    return (subscription.past_due_since, subscription.usage_blocked_since)


def test_mark_past_due_does_not_block_usage(invoice, dunning):
    dunning.after_final = DunningAfterFinal.MARK_PAST_DUE
    dunning.save()
    dunning_reminders_send_due(now=day(30))
    assert blocks(invoice.subscription_id) == (day(30), None)


def test_the_final_notice_blocks_real_time_usage_when_the_merchant_chose_so(invoice, dunning):
    dunning.after_final = DunningAfterFinal.BLOCK_USAGE
    dunning.save()
    dunning_reminders_send_due(now=day(14))
    assert blocks(invoice.subscription_id) == (None, None)  # reminders do not
    (final,) = dunning_reminders_send_due(now=day(30))
    assert (final.final, final.action) == (True, USAGE_BLOCKED_ACTION)
    assert blocks(invoice.subscription_id) == (day(30), day(30))
    assert Subscription.objects.get(pk=invoice.subscription_id).is_usage_blocked
    pay(invoice, "60.00", at=day(31))
    assert blocks(invoice.subscription_id) == (day(30), day(30))  # a part payment does not unblock
    pay(invoice, "40.00", at=day(32))
    assert blocks(invoice.subscription_id) == (None, None)


@pytest.mark.parametrize("settle", ["credit", "void"])
def test_crediting_or_voiding_the_invoice_unblocks_usage(invoice, dunning, settle):
    dunning.after_final = DunningAfterFinal.BLOCK_USAGE
    dunning.save()
    dunning_reminders_send_due(now=day(30))
    if settle == "credit":
        credit_note_issue(invoice=invoice, now=day(31), reason="Goodwill")
    else:
        invoice_void(invoice=invoice, now=day(31), reason="Billed in error")
    assert blocks(invoice.subscription_id) == (None, None)


def test_usage_stays_blocked_while_another_invoice_past_its_final_notice_is_open(seller, invoice, dunning):
    dunning.after_final = DunningAfterFinal.BLOCK_USAGE
    dunning.save()
    second = issued(invoice.subscription, "50.00")
    dunning_reminders_send_due(now=day(30))
    pay(invoice, "100.00", at=day(31))
    assert blocks(invoice.subscription_id) == (day(30), day(30))
    pay(second, "50.00", at=day(32))
    assert blocks(invoice.subscription_id) == (None, None)


def test_a_block_already_set_keeps_its_moment(invoice, dunning):
    dunning.after_final = DunningAfterFinal.BLOCK_USAGE
    dunning.save()
    second = issued(invoice.subscription, "50.00", day=3, now=JAN_1 + timedelta(days=3))
    dunning_reminders_send_due(now=day(30))
    dunning_reminders_send_due(now=day(33))  # the second invoice's final notice
    assert DunningReminder.objects.filter(invoice=second, final=True).exists()
    assert blocks(invoice.subscription_id) == (day(30), day(30))


def test_the_final_notice_changes_nothing_else_by_default(invoice, dunning):
    assert dunning.after_final == DunningAfterFinal.NOTHING
    (final,) = dunning_reminders_send_due(now=day(30))
    assert (final.final, final.action) == (True, "")
    subscription = Subscription.objects.get(pk=invoice.subscription_id)
    assert (subscription.past_due_since, subscription.status) == (None, "active")


# -- the e-mail ------------------------------------------------------------------------------------------


def test_the_reminder_reaches_the_customer_through_smtp_with_the_invoice(
    invoice, smtp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        (reminder,) = dunning_reminders_send_due(now=day(7))
    reminder.refresh_from_db()
    assert reminder.delivery.status == DeliveryStatus.SENT
    (received,) = smtp.received
    message = received.message
    assert received.rcpt_tos == ["ap@acme.example"]
    assert message["Subject"] == f"Reminder: invoice {invoice.number} from Neural Labs is 7 days overdue ($100.00)"
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "is now 7 days overdue" in text
    assert "https://billing.neural.example/" in text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "7 days overdue" in html
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content().startswith(b"%PDF")


def test_the_final_notice_uses_the_merchants_own_wording(invoice, smtp, django_capture_on_commit_callbacks):
    MailTemplate.objects.create(
        merchant=invoice.merchant,
        kind="final_notice",
        subject="LAST CALL {{ number }}: {{ amount_due }}",
        body_text="Pay {{ amount_due }} now ({{ days_overdue }} days late).",
        body_html="<p>Pay {{ amount_due }} now.</p>",
    )
    with django_capture_on_commit_callbacks(execute=True):
        dunning_reminders_send_due(now=day(31))
    (received,) = smtp.received
    assert received.message["Subject"] == f"LAST CALL {invoice.number}: $100.00"
    assert (
        received.message.get_body(preferencelist=("plain",)).get_content().strip() == "Pay $100.00 now (31 days late)."
    )


# -- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps_value", [[], [7, 3], [3, 3], [0], [400], ["3"], [True], "3,7", list(range(1, 12))])
def test_reminder_days_are_validated(steps_value):
    with pytest.raises(ValidationError):
        validate_dunning_steps(steps_value)


def test_the_final_notice_comes_after_the_last_reminder(seller):
    settings = DunningSettings(merchant=seller, steps=[3, 7, 14], final_notice_days=14)
    with pytest.raises(ValidationError) as error:
        settings.full_clean()
    assert "final_notice_days" in error.value.message_dict
    DunningSettings(merchant=seller, steps=[3, 7, 14], final_notice_days=15).full_clean()


# -- admin -----------------------------------------------------------------------------------------------


def test_finance_sets_the_schedule_as_comma_separated_days(superuser_client, seller):
    response = superuser_client.post(
        reverse("admin:invoicing_dunningsettings_add"),
        {
            "merchant": seller.pk,
            "enabled": "on",
            "steps": "5, 10, 20",
            "final_notice_days": "45",
            "after_final": "mark_past_due",
        },
    )
    assert response.status_code == 302
    saved = DunningSettings.objects.get(merchant=seller)
    assert (saved.steps, saved.final_notice_days, saved.after_final) == ([5, 10, 20], 45, "mark_past_due")
    page = superuser_client.get(reverse("admin:invoicing_dunningsettings_change", args=[seller.pk])).content.decode()
    assert 'value="5, 10, 20"' in page


def test_finance_may_choose_to_block_real_time_usage(superuser_client, seller):
    page = superuser_client.get(reverse("admin:invoicing_dunningsettings_add")).content.decode()
    assert "Mark the subscription past due and block its real-time usage" in page
    response = superuser_client.post(
        reverse("admin:invoicing_dunningsettings_add"),
        {"merchant": seller.pk, "enabled": "on", "steps": "3", "final_notice_days": "10", "after_final": "block_usage"},
    )
    assert response.status_code == 302
    assert DunningSettings.objects.get(merchant=seller).after_final == DunningAfterFinal.BLOCK_USAGE


def test_the_customer_and_subscription_pages_show_the_block(superuser_client, invoice, dunning):
    dunning.after_final = DunningAfterFinal.BLOCK_USAGE
    dunning.save()
    customer_url = reverse("admin:catalog_customer_change", args=[invoice.customer_id])
    assert "real-time usage blocked" not in superuser_client.get(customer_url).content.decode()
    dunning_reminders_send_due(now=day(30))
    customer_page = superuser_client.get(customer_url).content.decode()
    stamp = f"{day(30):%Y-%m-%d %H:%M}"
    # a post-paid subscription (this one) is flagged, but its usage is not refused: the page says so
    assert (
        f"{invoice.subscription.name}: past due since {stamp}; usage blocked since {stamp} (post-paid: its usage "
        "is still accepted and billed)"
    ) in customer_page
    Subscription.objects.filter(pk=invoice.subscription_id).update(billing_mode=BillingMode.REAL_TIME)
    real_time_page = superuser_client.get(customer_url).content.decode()
    assert (
        f"{invoice.subscription.name}: past due since {stamp}; real-time usage blocked since {stamp}" in real_time_page
    )
    subscription_page = superuser_client.get(
        reverse("admin:catalog_subscription_change", args=[invoice.subscription_id])
    ).content.decode()
    assert "Usage blocked since" in subscription_page


def test_a_schedule_out_of_order_or_with_an_early_final_notice_is_refused(superuser_client, seller):
    add = reverse("admin:invoicing_dunningsettings_add")
    base = {"merchant": seller.pk, "enabled": "on", "after_final": "nothing"}
    out_of_order = superuser_client.post(add, {**base, "steps": "7, 3", "final_notice_days": "30"})
    early_final = superuser_client.post(add, {**base, "steps": "3, 7", "final_notice_days": "7"})
    assert out_of_order.status_code == early_final.status_code == 200
    assert "ascending order" in out_of_order.content.decode()
    assert "The final notice comes after the last reminder day." in early_final.content.decode()
    assert not DunningSettings.objects.exists()


def test_the_invoice_and_customer_pages_show_the_dunning_history(superuser_client, invoice):
    dunning_reminders_send_due(now=day(20))
    invoice_page = superuser_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "Dunning (payment reminders)" in invoice_page
    assert invoice_page.count("Skipped (a later step was due)") == 2
    assert "Reminder 3" in invoice_page
    customer_page = superuser_client.get(
        reverse("admin:catalog_customer_change", args=[invoice.customer_id])
    ).content.decode()
    assert "Dunning (payment reminders)" in customer_page
    assert f"<td>{invoice.number}</td>" in customer_page
    assert "Reminder 3" in customer_page


def test_the_customer_page_reads_reminders_and_credit_once_each_and_only_when_there_are_some(superuser_client, invoice):
    url = reverse("admin:catalog_customer_change", args=[invoice.customer_id])

    def reads() -> tuple[int, int, str]:
        """Queries of the reminders and of the credit entries besides the customer's own row (its flags)."""
        with CaptureQueriesContext(connection) as captured:
            response = superuser_client.get(url)
        assert response.status_code == 200
        others = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith('SELECT "catalog_customer"')]
        return (
            sum('FROM "invoicing_dunningreminder"' in sql for sql in others),
            sum('FROM "invoicing_customercreditentry"' in sql for sql in others),
            response.content.decode(),
        )

    # given: no reminder and no credit yet
    before = reads()
    # when: the reminders go out, then a payment of $150 pays the $100 invoice and leaves $50 of credit
    dunning_reminders_send_due(now=day(20))
    payment_record(
        customer=invoice.customer,
        currency="USD",
        amount=Decimal("150.00"),
        method=PaymentMethod.BANK_TRANSFER,
        received_at=day(21),
        now=day(21),
        invoice_ids=[invoice.pk],
    )
    after = reads()

    # then: nothing to show costs no query; each panel with rows reads them in one
    assert before[:2] == (0, 0)
    assert "No reminders sent." in before[2]
    assert after[:2] == (1, 1)
    assert "Reminder 3" in after[2]
    assert '<div class="customer-credit-balance" data-currency="USD">$50.00</div>' in after[2]


# -- concurrent workers (PostgreSQL: row locks and concurrent transactions) ------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_each_step_once(seller):
    DunningSettings.objects.create(merchant=seller, steps=[3, 7, 14], final_notice_days=30)
    invoice = issued(account(seller, payment_term_days=14), "100.00")
    barrier = threading.Barrier(2)
    queued, failures = [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            queued.extend(dunning_reminders_send_due(now=day(3)))
        except Exception as error:  # surfaced below
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert [r.step for r in queued] == [1]
    assert steps(invoice) == [(1, "queued", "reminder")]
    assert reminder_deliveries(invoice) == ["reminder"]

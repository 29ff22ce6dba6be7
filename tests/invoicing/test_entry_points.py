"""The same close reached from the beat task (fanned out), the management command, and concurrent workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from catalog.models import PaymentTerm
from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceKind, InvoiceStatus
from invoicing.services import billing_run_execute
from invoicing.tasks import close_billing_periods_task, finalize_due_invoices_task
from tests.factories import MerchantFactory
from tests.invoicing.factories import CustomerFactory, PlanFactory, SubscriptionFactory, fee_price, metered_price

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)


def make_subscriptions(count):
    merchant = MerchantFactory()
    plan = PlanFactory(merchant=merchant, product__merchant=merchant)
    fee_price(plan, "20.00", term=PaymentTerm.IN_ARREARS)
    metered_price(plan, "0.01")
    return [
        SubscriptionFactory(plan=plan, merchant=merchant, customer=CustomerFactory(merchant=merchant), started_at=JAN_1)
        for _ in range(count)
    ]


@pytest.mark.django_db
def test_the_beat_task_fans_chunks_out_and_records_the_run(django_capture_on_commit_callbacks):
    make_subscriptions(5)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        run_id = close_billing_periods_task.delay(as_of=FEB_1.isoformat(), chunk_size=2).get()
    assert len(queued) == 3  # one chunk task per 2 subscriptions, queued after the run row commits
    run = BillingRun.objects.get(pk=run_id)
    assert (run.status, run.chunks_total, run.chunks_done, run.subscriptions_done, run.invoices_created) == (
        BillingRunStatus.SUCCEEDED,
        3,
        3,
        5,
        5,
    )
    assert run.progress_percent == 100
    assert finalize_due_invoices_task.delay(now="2026-02-02T00:00:00+00:00").get() == {"issued": 5, "failed": 0}
    assert Invoice.objects.filter(status=InvoiceStatus.ISSUED).count() == 5


@pytest.mark.django_db
def test_the_management_command_closes_synchronously():
    make_subscriptions(2)
    out = StringIO()
    call_command("close_billing_periods", "--at", "2026-02-01T00:00:00Z", "--finalize", stdout=out)
    assert out.getvalue().splitlines() == [
        f"Billing run {BillingRun.objects.get().pk} as of 2026-02-01T00:00:00+00:00: succeeded; 2 subscriptions, "
        "2 invoices created, 0 skipped, 0 failed.",
        "Issued 0 drafts (0 failed).",
    ]
    with pytest.raises(CommandError, match="aware"):
        call_command("close_billing_periods", "--at", "2026-02-01T00:00:00")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_make_each_invoice_once():
    subscriptions = make_subscriptions(30)
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait()
            billing_run_execute(as_of=FEB_1, chunk_size=7)
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Invoice.objects.filter(kind=InvoiceKind.RECURRING).count() == 30
    assert set(Invoice.objects.values_list("subscription_id", flat=True)) == {s.id for s in subscriptions}
    runs = list(BillingRun.objects.all())
    assert sum(run.invoices_created for run in runs) == 30
    assert sum(run.invoices_failed for run in runs) == 0
    assert all(run.status == BillingRunStatus.SUCCEEDED for run in runs)

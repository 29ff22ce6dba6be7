"""No scheduled work left unscheduled (issue #22): every Celery task of our apps is either in the beat
schedule or declared on demand, with a reason, in ``billing_site.celery.ON_DEMAND_TASKS``."""

from __future__ import annotations

from django.conf import settings

from billing_site.celery import ON_DEMAND_TASKS, app


def _our_tasks() -> set[str]:
    app.loader.import_default_modules()  # autodiscovers every installed app's tasks module
    return {name for name in app.tasks if not name.startswith("celery.")}


def _scheduled(schedule: dict) -> set[str]:
    return {entry["task"] for entry in schedule.values()}


def unscheduled_tasks(*, tasks: set[str], schedule: dict, on_demand: dict[str, str]) -> set[str]:
    return tasks - _scheduled(schedule) - set(on_demand)


def test_every_task_is_scheduled_by_beat_or_declared_on_demand_with_a_reason():
    assert (
        unscheduled_tasks(tasks=_our_tasks(), schedule=settings.CELERY_BEAT_SCHEDULE, on_demand=ON_DEMAND_TASKS)
        == set()
    )


def test_the_check_catches_a_task_dropped_from_the_schedule():
    # The leak of issue #22: the commitment shortfalls were trued up hourly but never billed.
    schedule = {
        key: entry
        for key, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if entry["task"] != "invoicing.bill_commitment_true_ups"
    }
    assert unscheduled_tasks(tasks=_our_tasks(), schedule=schedule, on_demand=ON_DEMAND_TASKS) == {
        "invoicing.bill_commitment_true_ups"
    }


def test_the_commitment_shortfalls_are_billed_hourly_after_the_true_up():
    entry = settings.CELERY_BEAT_SCHEDULE["invoicing-bill-commitment-true-ups"]
    true_up = settings.CELERY_BEAT_SCHEDULE["wallets-commitment-true-up-due"]
    assert entry["task"] == "invoicing.bill_commitment_true_ups"
    assert entry["schedule"].minute == {12} and true_up["schedule"].minute == {7}
    assert entry["schedule"].hour == set(range(24))


def test_every_scheduled_or_on_demand_task_exists_and_each_is_declared_once():
    tasks = _our_tasks()
    assert _scheduled(settings.CELERY_BEAT_SCHEDULE) <= tasks  # a typo in a task name schedules nothing
    assert set(ON_DEMAND_TASKS) <= tasks
    assert not _scheduled(settings.CELERY_BEAT_SCHEDULE) & set(ON_DEMAND_TASKS)
    assert all(reason.strip() for reason in ON_DEMAND_TASKS.values())


def test_the_scheduled_tasks_pass_the_time_in_by_default():
    # Beat sends no arguments: each scheduled task takes the real time itself (its ``now`` is optional).
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert not entry.get("args") and not entry.get("kwargs")


def test_failed_automatic_charges_are_retried_by_beat():
    # payments/README.md, "Retries and the customer's e-mails": the schedule is in days, a run every 5 minutes.
    entry = settings.CELERY_BEAT_SCHEDULE["payments-invoices-payment-retry-due"]
    assert entry["task"] == "payments.invoices_payment_retry_due" and entry["task"] in _our_tasks()
    assert entry["schedule"].minute == set(range(0, 60, 5))

"""The beat schedule runs the wallets sweeps."""


def test_the_beat_schedule_names_existing_tasks():
    from django.conf import settings

    from billing_site.celery import app

    app.loader.import_default_modules()
    wallets_entries = {k: v for k, v in settings.CELERY_BEAT_SCHEDULE.items() if k.startswith("wallets-")}
    assert sorted(v["task"] for v in wallets_entries.values()) == [
        "wallets.tasks.commitment_true_up_due_task",
        "wallets.tasks.credit_expire_due_task",
        "wallets.tasks.webhook_deliveries_retry_due_task",
    ]
    assert all(v["task"] in app.tasks for v in wallets_entries.values())
